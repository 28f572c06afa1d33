/**
 * Benchmark: POST /v1/vault/secrets/{name}/totp through the REST API (key check, rate limit, secret read, envelope
 * open, TOTP, audit write in the same transaction) at 50 connections, against two baselines in the same run: a bare
 * fastify GET /hello, and the minimal fastify route that does the same HMAC and one SQLite insert per code
 * (bench/support/bare-server.ts, POST /totp). Then on PostgreSQL with one server process, and with two server
 * processes on the same database (25 connections each), to see whether a second process adds throughput and what it
 * costs in CPU per code. Baseline and candidate runs alternate (MAILWARD_BENCH_ROUNDS rounds, 2 by default).
 * Targets: TOTP at least 0.7x the minimal HMAC + insert route; two PostgreSQL processes within 10% CPU per code of one,
 * and more codes per second. CPU per code (user + system of the server processes, from /proc) is the stable figure on
 * a shared machine. Runs the servers from source (tsx), so no build is needed, or with MAILWARD_BENCH_SERVER=dist the
 * compiled build; MAILWARD_BENCH_NODE_ARGS (e.g. `--cpu-prof --cpu-prof-dir=DIR`) goes to the Mailward servers (bench-kit
 * serveArgs). A 2-second warm-up precedes each load.
 * MAILWARD_BENCH_DIALECTS=sqlite,postgres picks stores (postgres runs both the one- and two-process rows).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  api,
  benchStore,
  pgBackendCpuMs,
  pgCpuSince,
  fmt,
  type LoadResult,
  load,
  type Proc,
  repoRoot,
  seconds,
  serveArgs,
  startProcess,
  table,
} from './support/bench-kit.js';

/**
 * CPU time (user + system, ms) a process has used, from /proc (Linux): on a
 * shared machine the server's CPU per request moves less than req/s does.
 */
const cpuMs = (pid: number | undefined): number => {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
};
const cpuOf = (procs: Proc[]) => procs.reduce((s, p) => s + cpuMs(p.child.pid), 0);

type Measured = { r: LoadResult; cpuUsPerReq: number; pgUsPerReq: number | null };

/**
 * Loads `targets` together (one autocannon per target, connections split), after a warm-up; CPU summed over `procs`
 * (every server process of the store, the idle one too: its background work for the other's commits is part of the
 * cost), and with `database` the CPU of that database's PostgreSQL backends, reported apart.
 */
const measure = async (
  procs: Proc[],
  targets: { url: string; method?: 'GET' | 'POST'; headers?: Record<string, string> }[],
  connections = 50,
  database?: string,
): Promise<Measured> => {
  const each = Math.floor(connections / targets.length);
  await Promise.all(targets.map((t) => load({ ...t, connections: each, duration: 2 })));
  const pg0 = database ? await pgBackendCpuMs(database) : null;
  const c0 = cpuOf(procs);
  const rs = await Promise.all(targets.map((t) => load({ ...t, connections: each })));
  const c1 = cpuOf(procs);
  const pg1 = database ? await pgBackendCpuMs(database) : null;
  const r: LoadResult = {
    rps: rs.reduce((s, x) => s + x.rps, 0),
    p50: Math.max(...rs.map((x) => x.p50)),
    p99: Math.max(...rs.map((x) => x.p99)),
    errors: rs.reduce((s, x) => s + x.errors, 0),
    non2xx: rs.reduce((s, x) => s + x.non2xx, 0),
  };
  return {
    r,
    cpuUsPerReq: (1000 * (c1 - c0)) / (r.rps * seconds),
    pgUsPerReq: pg0 && pg1 ? (1000 * pgCpuSince(pg0, pg1)) / (r.rps * seconds) : null,
  };
};

const bareScript = path.join(repoRoot, 'bench/support/bare-server.ts');
const rounds = Number(process.env.MAILWARD_BENCH_ROUNDS ?? 2);
const dialects = (process.env.MAILWARD_BENCH_DIALECTS ?? 'sqlite,postgres').split(',') as ('sqlite' | 'postgres')[];

const serverEnv = (store: { env: Record<string, string> }) => ({
  ...store.env,
  MAILWARD_LOG_LEVEL: 'warn',
  MAILWARD_RATE_LIMIT_PER_MINUTE: '100000000',
});

/** One agent with a TOTP secret; returns the code URL and headers for every server of the store. */
const seed = async (server: Proc, dataDir: string) => {
  const base = `http://127.0.0.1:${server.port}`;
  const admin = api(base, fs.readFileSync(path.join(dataDir, 'bootstrap-admin.key'), 'utf8').trim());
  const dep = await admin('POST', '/v1/departments', { name: 'Bench' });
  const hum = await admin('POST', '/v1/humans', { name: 'Bench Reviewer', email: 'bench@mailward.localhost', roles: ['reviewer'] });
  const agent = await admin('POST', '/v1/agents', { name: 'Bench Agent', department_id: dep.id, responsible_human_id: hum.id });
  const { key } = await admin('POST', `/v1/agents/${agent.id}/api-keys`, {});
  await api(base, key)('PUT', '/v1/vault/secrets/bench-otp', { kind: 'totp', value: 'GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ' });
  return { headers: { authorization: `Bearer ${key}` } };
};
const totpUrl = (p: Proc) => `http://127.0.0.1:${p.port}/v1/vault/secrets/bench-otp/totp`;

type Sample = { target: string; m: Measured };
const samples: Sample[] = [];
const bare = await startProcess(['--import', 'tsx', bareScript], {});
// Two PostgreSQL servers on one database: the second starts after the first has initialised the store.
const stores: { dialect: string; store: Awaited<ReturnType<typeof benchStore>>; procs: Proc[]; headers: Record<string, string> }[] = [];
try {
  for (const dialect of dialects) {
    const store = await benchStore(dialect);
    const first = await startProcess(serveArgs(), serverEnv(store));
    const { headers } = await seed(first, store.dataDir);
    const procs = [first];
    if (dialect === 'postgres') procs.push(await startProcess(serveArgs(), serverEnv(store)));
    stores.push({ dialect, store, procs, headers });
  }
  for (let round = 1; round <= rounds; round++) {
    samples.push({ target: 'bare fastify GET /hello', m: await measure([bare], [{ url: `http://127.0.0.1:${bare.port}/hello` }]) });
    samples.push({
      target: 'minimal fastify POST /totp (HMAC + 1 SQLite insert)',
      m: await measure([bare], [{ url: `http://127.0.0.1:${bare.port}/totp`, method: 'POST' }]),
    });
    for (const s of stores) {
      const one = s.procs[0]!;
      samples.push({
        target: `mailward POST .../totp (${s.dialect}${s.dialect === 'postgres' ? ', 1 process' : ''})`,
        m: await measure(s.procs, [{ url: totpUrl(one), method: 'POST', headers: s.headers }], 50, s.store.database),
      });
      if (s.procs.length === 2)
        samples.push({
          target: `mailward POST .../totp (${s.dialect}, 2 processes)`,
          m: await measure(
            s.procs,
            s.procs.map((p) => ({ url: totpUrl(p), method: 'POST' as const, headers: s.headers })),
            50,
            s.store.database,
          ),
        });
    }
  }
} finally {
  await bare.stop();
  for (const s of stores) {
    for (const p of s.procs) await p.stop();
    await s.store.drop();
  }
}

// Per target: the mean of its rounds (each round's figure is printed too, so the spread is visible).
const targets = [...new Set(samples.map((s) => s.target))];
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const summary = new Map(
  targets.map((t) => {
    const ms = samples.filter((s) => s.target === t).map((s) => s.m);
    return [t, { rps: mean(ms.map((m) => m.r.rps)), cpu: mean(ms.map((m) => m.cpuUsPerReq)), ms }];
  }),
);
const hmac = summary.get('minimal fastify POST /totp (HMAC + 1 SQLite insert)')!;
const pgOne = summary.get('mailward POST .../totp (postgres, 1 process)');
const rows = targets.map((t) => {
  const s = summary.get(t)!;
  return {
    target: t,
    'req/s': fmt(s.rps),
    'req/s by round': s.ms.map((m) => fmt(m.r.rps)).join(' / '),
    'p50 ms': s.ms.at(-1)!.r.p50,
    'p99 ms': s.ms.at(-1)!.r.p99,
    'server CPU us/req': fmt(s.cpu),
    'CPU by round': s.ms.map((m) => fmt(m.cpuUsPerReq)).join(' / '),
    'PostgreSQL us/req': s.ms[0]!.pgUsPerReq === null ? '-' : s.ms.map((m) => fmt(m.pgUsPerReq ?? 0)).join(' / '),
    'of HMAC route (req/s, CPU)': `${fmt(s.rps / hmac.rps, 2)}x, ${fmt(hmac.cpu / s.cpu, 2)}x`,
    'of 1 PG process (req/s, CPU)': pgOne && t.includes('postgres') ? `${fmt(s.rps / pgOne.rps, 2)}x, ${fmt(s.cpu / pgOne.cpu, 2)}x` : '-',
    errors: s.ms.reduce((n, m) => n + m.r.errors + m.r.non2xx, 0),
  };
});
table(
  `TOTP codes through REST (incl. audit write) vs a minimal HMAC + insert route and bare fastify, 50 connections, ${rounds} alternating rounds of ${seconds} s; load average ${os
    .loadavg()
    .map((l) => l.toFixed(1))
    .join(' ')}`,
  rows,
);
