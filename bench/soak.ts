/**
 * Soak: 200 concurrent writers against a real `mailward serve` (the compiled server, bin/mailward.js) for 10 minutes.
 * The writers are vault traffic of five agents, each with its own key: three TOTP codes (secret read, HMAC and an
 * audit event in one transaction) to one secret write (a new sealed version and its audit event). Prints latency
 * (p50, p99, max, how many over 2 s), 503 answers (the admission queue's `server_busy` and the store's `store_busy`),
 * and the server's resident and heap memory after the warm-up, every minute of the soak and at the end (after the warm-up
 * and at the end after a full garbage collection, asked for over the server's loopback inspector).
 * Targets (issue "Speed at hospital scale"): p99 under 2 s, RSS at the end within 10% of after the warm-up.
 *
 * Alone: `node --import tsx bench/soak.ts [--seconds 600] [--warmup 60] [--connections 200] [--dialect sqlite|postgres]`
 * (or MAILWARD_BENCH_SOAK_SECONDS, MAILWARD_BENCH_SOAK_WARMUP, MAILWARD_BENCH_CONNECTIONS, MAILWARD_BENCH_DIALECTS).
 * `npm run bench` runs it with the defaults. MAILWARD_BENCH_BIN runs another build's `bin/mailward.js` (a copy of an
 * earlier revision's bin/, dist/ and package.json with a node_modules link), to compare revisions in the same conditions.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import { api, benchStore, fmt, freePort, repoRoot, startProcess, table } from './support/bench-kit.js';

const { values: flags } = parseArgs({
  options: {
    seconds: { type: 'string' },
    warmup: { type: 'string' },
    connections: { type: 'string' },
    dialect: { type: 'string' },
  },
});
const soakSeconds = Number(flags.seconds ?? process.env.MAILWARD_BENCH_SOAK_SECONDS ?? 600);
const warmupSeconds = Number(flags.warmup ?? process.env.MAILWARD_BENCH_SOAK_WARMUP ?? 60);
const connections = Number(flags.connections ?? process.env.MAILWARD_BENCH_CONNECTIONS ?? 200);
const dialect = (flags.dialect ?? process.env.MAILWARD_BENCH_DIALECTS?.split(',')[0] ?? 'sqlite') as 'sqlite' | 'postgres';
const AGENTS = 5;

/** Anonymous and file-backed resident memory of `pid` (MB), from /proc (Linux): where a growing RSS lives. */
const smaps = (pid: number | undefined) => {
  try {
    const text = fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
    const kb = (k: string) => Number(text.match(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm'))?.[1] ?? Number.NaN) / 1024;
    return { anon: kb('Anonymous'), file: kb('Rss') - kb('Anonymous') };
  } catch {
    return { anon: Number.NaN, file: Number.NaN };
  }
};

const sumOf = (text: string, le: string) =>
  [
    ...text.matchAll(new RegExp(`^mailward_http_request_duration_seconds_bucket\\{le="${le.replace('+', '\\+')}",[^}]*\\} (\\S+)$`, 'gm')),
  ].reduce((n, m) => n + Number(m[1]), 0);

/** A full garbage collection in the server, through the Chrome DevTools Protocol (HeapProfiler.collectGarbage). */
const collectGarbage = async () => {
  const [target] = (await (await fetch(`http://127.0.0.1:${inspectPort}/json/list`)).json()) as { webSocketDebuggerUrl: string }[];
  const ws = new WebSocket(target!.webSocketDebuggerUrl);
  await new Promise((resolve, reject) => {
    ws.onerror = reject;
    ws.onopen = () => ws.send(JSON.stringify({ id: 1, method: 'HeapProfiler.collectGarbage' }));
    ws.onmessage = (e) => {
      if ((JSON.parse(String(e.data)) as { id?: number }).id === 1) resolve(undefined);
    };
  });
  ws.close();
};

const memory = async (port: number, gc = false) => {
  if (gc) await collectGarbage();
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const metric = (name: string) => Number(text.match(new RegExp(`^${name} (\\S+)`, 'm'))?.[1] ?? Number.NaN);
  return {
    ...smaps(server.child.pid),
    rss: metric('mailward_process_resident_memory_bytes') / 2 ** 20,
    heap: metric('mailward_nodejs_heap_size_used_bytes') / 2 ** 20,
    heapTotal: metric('mailward_nodejs_heap_size_total_bytes') / 2 ** 20,
    external: metric('mailward_nodejs_external_memory_bytes') / 2 ** 20,
    // The server's own request-duration histogram: requests over 2.5 s inside the server (from the first byte fastify
    // reads to the reply), apart from waits the client and the kernel add before that (connection set-up).
    serverOver2_5s: sumOf(text, '+Inf') - sumOf(text, '2.5'),
    rejected: Number(text.match(/^mailward_http_rejected_total\{reason="queue_full"\} (\S+)/m)?.[1] ?? 0),
    expired: Number(text.match(/^mailward_http_rejected_total\{reason="wait_expired"\} (\S+)/m)?.[1] ?? 0),
  };
};

const store = await benchStore(dialect);
// The server's inspector (loopback only) lets the bench run a full garbage collection before reading memory, so
// what is compared is memory still in use, not garbage the collector has not reached yet.
const inspectPort = await freePort();
const server = await startProcess(
  [`--inspect=127.0.0.1:${inspectPort}`, process.env.MAILWARD_BENCH_BIN ?? path.join(repoRoot, 'bin/mailward.js'), 'serve'],
  {
    ...store.env,
    MAILWARD_LOG_LEVEL: 'error',
    MAILWARD_RATE_LIMIT_PER_MINUTE: '100000000',
  },
);
const base = `http://127.0.0.1:${server.port}`;
const rows: Record<string, string | number>[] = [];
try {
  const admin = api(base, fs.readFileSync(path.join(store.dataDir, 'bootstrap-admin.key'), 'utf8').trim());
  const dep = await admin('POST', '/v1/departments', { name: 'Soak' });
  const hum = await admin('POST', '/v1/humans', { name: 'Soak Reviewer', email: 'soak@mailward.localhost', roles: ['reviewer'] });
  const requests: autocannon.Request[] = [];
  for (let i = 0; i < AGENTS; i++) {
    const agent = await admin('POST', '/v1/agents', { name: `Soak Agent ${i}`, department_id: dep.id, responsible_human_id: hum.id });
    const { key } = await admin('POST', `/v1/agents/${agent.id}/api-keys`, {});
    await api(base, key)('PUT', '/v1/vault/secrets/portal-otp', { kind: 'totp', value: 'GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ' });
    const headers = { authorization: `Bearer ${key}` };
    const totp = { method: 'POST' as const, path: '/v1/vault/secrets/portal-otp/totp', headers };
    requests.push(totp, totp, totp, {
      method: 'PUT',
      path: '/v1/vault/secrets/portal-password',
      headers: { ...headers, 'content-type': 'application/json' },
      // Constant body: autocannon keeps a template's Content-Length. Every PUT is still a new sealed version.
      body: JSON.stringify({ kind: 'password', value: 'correct horse battery staple', username: 'soak' }),
    });
  }

  const run = async (duration: number, onTick?: () => void) => {
    let over2s = 0;
    const instance = autocannon({
      url: base,
      requests,
      connections,
      duration,
      timeout: 60,
      setupClient: (client) => {
        client.on('response', (_status: number, _bytes: number, ms: number) => {
          if (ms > 2000) over2s++;
        });
      },
    });
    const ticker = onTick ? setInterval(onTick, 60_000) : null;
    const r = await instance;
    if (ticker) clearInterval(ticker);
    return { r, over2s };
  };
  const settle = () => new Promise((res) => setTimeout(res, 3000));
  const row = (phase: string, m: Awaited<ReturnType<typeof memory>>, extra: Record<string, string | number> = {}) => {
    const r: Record<string, string | number> = {
      phase,
      'req/s': '-',
      'p50 ms': '-',
      'p99 ms': '-',
      'max ms': '-',
      '> 2 s': '-',
      'HTTP 503': '-',
      errors: '-',
    };
    for (const [k, v] of Object.entries(extra)) r[k] = v;
    r['rss MB'] = fmt(m.rss);
    r['anon / file MB'] = `${fmt(m.anon)} / ${fmt(m.file)}`;
    r['heap used / total MB'] = `${fmt(m.heap)} / ${fmt(m.heapTotal)}`;
    r['external MB'] = fmt(m.external);
    r.load = os
      .loadavg()
      .map((l) => l.toFixed(1))
      .join(' ');
    rows.push(r);
  };
  const busy = (r: autocannon.Result) => r.statusCodeStats?.['503']?.count ?? 0;

  const w = await run(warmupSeconds);
  await settle();
  const afterWarmup = await memory(server.port, true);
  row(`after ${warmupSeconds} s warm-up, full GC`, afterWarmup, {
    'req/s': fmt(w.r.requests.average),
    'p99 ms': w.r.latency.p99,
    'HTTP 503': busy(w.r),
  });
  let minute = 0;
  const samples: Promise<void>[] = [];
  const s = await run(soakSeconds, () => {
    minute++;
    const at = minute;
    samples.push(memory(server.port).then((m) => void row(`soak minute ${at}`, m)));
  });
  await Promise.all(samples);
  await settle();
  const end = await memory(server.port, true);
  row(`end (${soakSeconds} s), full GC`, end, {
    'req/s': fmt(s.r.requests.average),
    'p50 ms': s.r.latency.p50,
    'p99 ms': s.r.latency.p99,
    'max ms': s.r.latency.max,
    '> 2 s': `${s.over2s} (${fmt((100 * s.over2s) / Math.max(1, s.r.requests.total), 2)}%); in the server > 2.5 s: ${end.serverOver2_5s - afterWarmup.serverOver2_5s}`,
    'HTTP 503': `${busy(s.r)} (queue_full ${end.rejected - afterWarmup.rejected}, wait_expired ${end.expired - afterWarmup.expired})`,
    errors: s.r.errors + s.r.timeouts + (s.r.non2xx - busy(s.r)),
  });
  rows.push({
    ...Object.fromEntries(Object.keys(rows[0]!).map((k) => [k, ''])),
    phase: 'end / after warm-up',
    'rss MB': `${fmt((100 * end.rss) / afterWarmup.rss, 1)}%`,
    'heap used / total MB': `${fmt((100 * end.heap) / afterWarmup.heap, 1)}% / ${fmt((100 * end.heapTotal) / afterWarmup.heapTotal, 1)}%`,
  });
} finally {
  await server.stop();
  await store.drop();
}
table(
  `Soak (${dialect}): ${connections} concurrent writers, ${AGENTS} agents, 3 TOTP codes : 1 secret write, ${soakSeconds} s after ${warmupSeconds} s warm-up; load = load average 1/5/15 min`,
  rows,
);
