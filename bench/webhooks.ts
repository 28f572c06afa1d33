/**
 * Benchmark: webhook deliveries. Events delivered per second to a loopback receiver (its own process)
 * with fan-out, Standard Webhooks signing, SSRF check, the delivery log and job state committed per
 * attempt, against a bare loop POSTing the same payloads with the same concurrency and keep-alive; and
 * the p99 from an event's commit to its arrival at 200 events/s. Targets (2 cores, SQLite): >= 50% of the
 * bare loop, p99 < 200 ms. Both phases are measured warm (each after a warm-up of its own, not measured).
 * `MAILWARD_BENCH_DIALECT=postgres` runs on PostgreSQL.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import { Session } from 'node:inspector/promises';
import Database from 'better-sqlite3';
import pg from 'pg';
import { loadConfig } from '../src/app/config.js';
import { createContainer } from '../src/app/container.js';
import { appendEvent } from '../src/events/events-log.js';
import { createLogger } from '../src/kernel/log.js';
import { signDelivery } from '../src/webhooks/webhook-signing.js';
import { benchStore, fmt, PG_ADMIN_URL, seconds, table } from './support/bench-kit.js';

const N = Number(process.env.MAILWARD_BENCH_EVENTS ?? 3000);
const RATE = 200;
const CONCURRENCY = Number(process.env.MAILWARD_BENCH_CONCURRENCY ?? 32);
const dialect = (process.env.MAILWARD_BENCH_DIALECT ?? 'sqlite') as 'sqlite' | 'postgres';

// The receiver: its own process, answers 200 at once, remembers when it first saw each webhook-id.
const receiverSource = `
const http = require('node:http');
const first = new Map(); let requests = 0; let waiting = [];
const s = http.createServer((req, res) => {
  const w = req.url.startsWith('/wait?n=') ? Number(req.url.slice(8)) : 0;
  if (req.method === 'GET' && w) { waiting.push({ n: w, res }); check(); return; }
  if (req.method === 'GET') { res.end(JSON.stringify({ requests, first: Object.fromEntries(first) })); return; }
  if (req.method === 'DELETE') { first.clear(); requests = 0; res.end('{}'); return; }
  req.resume();
  req.on('end', () => { requests++; const id = req.headers['webhook-id']; if (id && !first.has(id)) { first.set(id, Date.now()); check(); } res.end('ok'); });
});
const check = () => { if (waiting.length === 0) return; waiting = waiting.filter((x) => { if (first.size < x.n) return true; x.res.end(); return false; }); };
s.keepAliveTimeout = 60000;
s.listen(0, '127.0.0.1', () => process.stdout.write(String(s.address().port) + '\\n'));
`;
const rxProc = spawn(process.execPath, ['-e', receiverSource], { stdio: ['ignore', 'pipe', 'inherit'] });
const rxPort = await new Promise<number>((resolve) => rxProc.stdout!.once('data', (d) => resolve(Number(String(d).trim()))));
const rxStats = async () =>
  (await (await fetch(`http://127.0.0.1:${rxPort}/`)).json()) as { requests: number; first: Record<string, number> };
const rxReset = () => fetch(`http://127.0.0.1:${rxPort}/`, { method: 'DELETE' });
// One long-poll that the receiver answers once it has seen `n` distinct webhook-ids: watching it costs this
// process nothing while it runs (polling with fetch every 20 ms cost the measured phase about 5% of its CPU).
const waitReceived = async (n: number) => {
  const res = await fetch(`http://127.0.0.1:${rxPort}/wait?n=${n}`, { signal: AbortSignal.timeout(300_000) });
  await res.arrayBuffer();
  return rxStats();
};

/** Starts the V8 CPU profiler in this process; the returned function stops it and gives the profile. */
const startProfile = async () => {
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.start');
  return async () => (await session.post('Profiler.stop')).profile;
};

/*
 * Statements per event, and on SQLite the main thread's CPU inside them (better-sqlite3 runs each statement in
 * this thread): the store's share of the figure below, steadier than the whole when other jobs load the machine.
 * Counted by wrapping the drivers' statement methods (about 1 us per statement, in both phases' builds alike).
 */
const store0 = { statements: 0, cpuUs: 0 };
/** MAILWARD_BENCH_STATEMENTS=1 (PostgreSQL): count and wall time of each statement text in the measured phase. */
let byText: Map<string, { n: number; ms: number }> | null = null;
{
  const probe = new Database(':memory:');
  const proto = Object.getPrototypeOf(probe.prepare('select 1')) as Record<string, (...a: unknown[]) => unknown>;
  probe.close();
  for (const m of ['run', 'all', 'get', 'iterate']) {
    const inner = proto[m]!;
    proto[m] = function (this: unknown, ...a: unknown[]) {
      store0.statements++;
      const t = process.threadCpuUsage();
      try {
        return inner.apply(this, a);
      } finally {
        const u = process.threadCpuUsage(t);
        store0.cpuUs += u.user + u.system;
      }
    };
  }
  const query = pg.Client.prototype.query as (...a: unknown[]) => unknown;
  pg.Client.prototype.query = function (this: unknown, ...a: unknown[]) {
    store0.statements++;
    const r = query.apply(this, a);
    const times = byText;
    if (times && r instanceof Promise) {
      const text = typeof a[0] === 'string' ? a[0] : String((a[0] as { text?: unknown })?.text ?? '');
      const t = performance.now();
      void r.finally(() => {
        // A statement that commits asynchronously (webhooks-repo.ts TAKE_ONLY_PG) is counted apart from its synchronous twin.
        const k = `${text.includes("set_config('synchronous_commit', 'off'") ? '[async] ' : ''}${text.replace(/\s+/g, ' ')}`.slice(0, 90);
        const v = times.get(k) ?? { n: 0, ms: 0 };
        v.n++;
        v.ms += performance.now() - t;
        times.set(k, v);
      });
    }
    return r;
  } as never;
}

/** CPU seconds (user + system, every thread of this process: the SQLite checkpointer's too) from a cpuUsage delta. */
const cpuSecs = (u: NodeJS.CpuUsage) => (u.user + u.system) / 1e6;

const store = await benchStore(dialect);

/*
 * PostgreSQL: the CPU its backends for this bench's database spent (user + system from /proc/<pid>/stat, in clock
 * ticks of 10 ms), read through a connection to another database so that reading it costs them nothing. The
 * other half of the work on a shared 2-core machine: the server's CPU is not in this process's figures.
 */
const admin = dialect === 'postgres' ? new pg.Client({ connectionString: PG_ADMIN_URL }) : null;
await admin?.connect();
const backendTicks = async (): Promise<Map<number, number>> => {
  const out = new Map<number, number>();
  if (!admin) return out;
  const r = await admin.query('select pid from pg_stat_activity where datname = $1', [store.database]);
  for (const { pid } of r.rows as { pid: number }[]) {
    try {
      // Fields after the command's closing parenthesis: utime and stime are the 12th and 13th.
      const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
      out.set(pid, Number(f[11]) + Number(f[12]));
    } catch {
      /* gone */
    }
  }
  return out;
};
/** Backend CPU seconds between two readings (a backend started in between counts from zero). */
const backendSecs = (a: Map<number, number>, b: Map<number, number>) => {
  let ticks = 0;
  for (const [pid, t] of b) ticks += t - (a.get(pid) ?? 0);
  return ticks / 100;
};
const config = loadConfig({
  ...store.env,
  MAILWARD_LOG_LEVEL: 'silent',
  MAILWARD_WEBHOOK_ALLOW_HOSTS: `127.0.0.1:${rxPort}`,
  MAILWARD_WEBHOOK_CONCURRENCY: String(CONCURRENCY),
});
const c = await createContainer(config, { createMasterKey: true, logger: createLogger({ level: 'silent' }) });
const init = await c.init({ orgName: 'Bench Hospital', domain: 'bench.example' });
if (!init) throw new Error('init failed');
const ctx = {
  principal: (await c.apiKeys.authenticate(init.admin_api_key, { requestId: null, clientIp: null })) as never,
  requestId: null,
  clientIp: null,
};
const endpoint = await c.webhooks.webhooks.create(ctx, { url: `http://127.0.0.1:${rxPort}/hook` });

/** N events committed in transactions of 100 (the log as the lifecycle writes it). */
const commitEvents = async (n: number, from = 0) => {
  for (let i = from; i < from + n; i += 100) {
    await c.store.db.transaction().execute(async (tx) => {
      for (let j = i; j < Math.min(from + n, i + 100); j++)
        await appendEvent(tx, {
          orgId: init.org_id,
          type: 'email.delivered',
          at: new Date().toISOString(),
          emailId: `msg_${String(j).padStart(32, '0')}`,
          data: { n: j },
        });
    });
  }
};

// Warm-up of Mailward, not measured (as the bare loop's below): WARMUP events delivered by the same worker,
// which then stops, so both measured phases run on JIT-compiled code and neither pays the other's warm-up
// (without it, the Mailward phase compiled its claim, outcome and signing paths while being measured).
// MAILWARD_BENCH_WARMUP=0 measures a cold worker.
const WARMUP = Number(process.env.MAILWARD_BENCH_WARMUP ?? 500);
if (WARMUP > 0) {
  await commitEvents(WARMUP, N);
  c.webhooks.worker.start();
  await waitReceived(WARMUP);
  await c.webhooks.worker.stop();
  await rxReset();
}

// N events committed while no worker runs; the first serves as the baseline's payload.
await commitEvents(N);
const events = await c.webhooks.events.list(ctx, { order: 'asc', limit: 500, cursor: undefined } as never);
const sample = events.events[0]!;
// The baseline's request: the same payloads (signed headers precomputed), same concurrency, keep-alive.
const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY });
const secret = endpoint.secret;
const bodies = Array.from({ length: N }, (_, i) => {
  const body = JSON.stringify({ ...sample, id: `evt_${String(i).padStart(32, '0')}`, seq: i + 1 });
  return { body, headers: signDelivery([secret], `evt_${String(i).padStart(32, '0')}`, new Date(), body) };
});
const post = (b: (typeof bodies)[number]) =>
  new Promise<void>((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port: rxPort,
        path: '/hook',
        method: 'POST',
        agent,
        headers: { 'content-type': 'application/json', ...b.headers },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve());
      },
    );
    req.on('error', reject);
    req.end(b.body);
  });
/** POSTs `list` with CONCURRENCY requests in flight, each waiting for its answer. */
const postAll = async (list: typeof bodies) => {
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < list.length) await post(list[next++]!);
    }),
  );
};
// The bare loop's warm-up, not measured: its HTTP code is JIT-compiled too (it ran second, warmed by Mailward).
await postAll(bodies.slice(0, 500).map((b, i) => ({ ...b, headers: { ...b.headers, 'webhook-id': `warm_${i}` } })));
await rxReset();

// 1. Mailward: the N events waiting in the log, then the worker starts: fan-out, sign, POST, log, commit.
// MAILWARD_BENCH_PROFILE=file.cpuprofile: a CPU profile of this phase only (what the worker spends its time on).
const profile = process.env.MAILWARD_BENCH_PROFILE ? await startProfile() : null;
const b0 = await backendTicks();
const st0 = { ...store0 };
if (process.env.MAILWARD_BENCH_STATEMENTS) byText = new Map();
const c0 = process.cpuUsage();
const m0 = process.threadCpuUsage();
const t0 = performance.now();
c.webhooks.worker.start();
await waitReceived(N);
const mailwardSecs = (performance.now() - t0) / 1000;
const mailwardCpu = cpuSecs(process.cpuUsage(c0));
const mailwardMain = cpuSecs(process.threadCpuUsage(m0));
const storeStatements = (store0.statements - st0.statements) / N;
const storeCpuUs = (store0.cpuUs - st0.cpuUs) / N;
const mailwardBackend = backendSecs(b0, await backendTicks());
const statementTimes = byText;
byText = null;
if (profile) fs.writeFileSync(process.env.MAILWARD_BENCH_PROFILE!, JSON.stringify(await profile()));

// 2. Baseline: the bare loop.
await rxReset();
const bareProfile = process.env.MAILWARD_BENCH_PROFILE ? await startProfile() : null;
const c1 = process.cpuUsage();
const m1 = process.threadCpuUsage();
const t1 = performance.now();
await postAll(bodies);
const bareSecs = (performance.now() - t1) / 1000;
const bareCpu = cpuSecs(process.cpuUsage(c1));
const bareMain = cpuSecs(process.threadCpuUsage(m1));
if (bareProfile) fs.writeFileSync(`${process.env.MAILWARD_BENCH_PROFILE}.bare`, JSON.stringify(await bareProfile()));

// 3. Latency: one event per transaction at RATE events/s for `seconds`; commit time -> first arrival.
await rxReset();
const committed = new Map<string, number>();
const total = RATE * seconds;
const start = performance.now();
for (let i = 0; i < total; i++) {
  const due = start + (i * 1000) / RATE;
  const wait = due - performance.now();
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  let id = '';
  await c.store.db.transaction().execute(async (tx) => {
    await appendEvent(tx, { orgId: init.org_id, type: 'email.queued', at: new Date().toISOString(), data: { i } });
    id = String(i);
  });
  committed.set(id, Date.now());
}
const stats = await waitReceived(total);
// Receiver ids are event ids; map them back through the log (seq order = commit order here).
const log = [];
let cursor: string | undefined;
for (;;) {
  const p = await c.webhooks.events.list(ctx, { order: 'asc', limit: 500, cursor, types: ['email.queued'] } as never);
  log.push(...p.events);
  cursor = p.next_cursor ?? undefined;
  if (p.events.length < 500) break;
}
const lat = log
  .map((e) => stats.first[e.id]! - committed.get(String((e.data as { i: number }).i))!)
  .filter((x) => Number.isFinite(x))
  .sort((a, b) => a - b);
const pct = (p: number) => lat[Math.min(lat.length - 1, Math.floor((p / 100) * lat.length))]!;

table(`webhook deliveries to a loopback receiver (${dialect}, ${N} events, ${CONCURRENCY} in flight)`, [
  {
    path: 'Mailward: fan-out, sign, SSRF check, POST, delivery log',
    'events/s': fmt(N / mailwardSecs),
    'vs bare': `${fmt((100 * bareSecs) / mailwardSecs)}%`,
    // Per CPU-second of this process: steadier than events/s when other jobs share the cores (PostgreSQL's own CPU is not in it).
    'events/CPU-s': fmt(N / mailwardCpu),
    'CPU vs bare': `${fmt((100 * bareCpu) / mailwardCpu)}%`,
    // With the PostgreSQL backends' CPU added (the bare loop has no server).
    'CPU+server vs bare': dialect === 'postgres' ? `${fmt((100 * bareCpu) / (mailwardCpu + mailwardBackend))}%` : '-',
    // The main thread only (threadCpuUsage): what each loop itself did, without CPU that other threads (V8's
    // compiler and GC helpers, the SQLite checkpointer) spent during its phase on work of the phase before.
    'main-thread us/event': fmt((1e6 * mailwardMain) / N),
    'main vs bare': `${fmt((100 * bareMain) / mailwardMain)}%`,
    'statements/event': storeStatements.toFixed(3),
    'SQLite CPU us/event': dialect === 'sqlite' ? storeCpuUs.toFixed(1) : '-',
    // PostgreSQL's backends for this database (10 ms ticks: coarse over a short phase).
    'backend CPU us/event': dialect === 'postgres' ? fmt((1e6 * mailwardBackend) / N) : '-',
  },
  {
    path: 'bare loop POSTing the same signed payloads',
    'events/s': fmt(N / bareSecs),
    'vs bare': '100%',
    'events/CPU-s': fmt(N / bareCpu),
    'CPU vs bare': '100%',
    'CPU+server vs bare': '-',
    'main-thread us/event': fmt((1e6 * bareMain) / N),
    'main vs bare': '100%',
    'statements/event': '-',
    'SQLite CPU us/event': '-',
    'backend CPU us/event': '-',
  },
]);
if (statementTimes) {
  const rows = [...statementTimes].sort((a, b) => b[1].ms - a[1].ms).slice(0, 25);
  table(
    'statements of the Mailward phase by text (wall time from send to answer, overlapping ones each counted)',
    rows.map(([text, v]) => ({
      statement: text,
      count: String(v.n),
      'per event': (v.n / N).toFixed(3),
      'ms each': (v.ms / v.n).toFixed(2),
    })),
  );
}
table(`commit to delivery at ${RATE} events/s for ${seconds} s (${lat.length} events)`, [
  { p50: `${pct(50)} ms`, p90: `${pct(90)} ms`, p99: `${pct(99)} ms`, max: `${lat.at(-1)} ms`, target: 'p99 < 200 ms' },
]);

await c.close();
await admin?.end();
rxProc.kill();
await store.drop();
process.exit(0);
