/**
 * Audit log at scale. Run: node --import tsx bench/audit-scale.ts
 * Env: MAILWARD_BENCH_SECONDS (load per run, default 8), BENCH_AUDIT_SIZE_EVENTS (default 20,000), BENCH_AUDIT_BYTES_ONLY=1,
 * MAILWARD_TEST_DATABASE_URL (PostgreSQL admin URL; "off" skips PostgreSQL).
 *
 * Reports, in one run:
 * - PostgreSQL appends/s (each in its own transaction, as a request's change would) from 1 process and from
 *   2 processes sharing one database, and client CPU per append (the peer: one process, same run);
 * - delay from commit to inclusion in the chain (p50, p99, max) while those appends run, and under a steady load of
 *   BENCH_AUDIT_STEADY_RATE appends/s (default 200) from one process, on SQLite and PostgreSQL;
 * - stored bytes per event on SQLite and PostgreSQL (table + indexes, divided by the events).
 * Verification against reading the rows is in bench/audit.ts.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import SQLite from 'better-sqlite3';
import pg from 'pg';
import { loadConfig } from '../src/app/config.js';
import type { Container } from '../src/app/container.js';
import { BENCH_AUDIT_ACTOR, openBenchContainer, PG_ADMIN_URL, repoRoot, seconds } from './support/bench-kit.js';

const SIZE_EVENTS = Number(process.env.BENCH_AUDIT_SIZE_EVENTS ?? 20_000);
const STEADY_RATE = Number(process.env.BENCH_AUDIT_STEADY_RATE ?? 200);
/** BENCH_AUDIT_BYTES_ONLY=1: only the bytes per event on both dialects (no load runs). */
const BYTES_ONLY = process.env.BENCH_AUDIT_BYTES_ONLY === '1';
const rows: [string, string][] = [];
const out = (k: string, v: string) => {
  rows.push([k, v]);
  process.stderr.write(`${k}: ${v}\n`);
};
const load = () => fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');

const open = openBenchContainer;

const actor = BENCH_AUDIT_ACTOR;
const event = (i: number) => ({
  action: 'email.read',
  actor,
  target: { type: 'message', id: `msg_${i.toString(16).padStart(32, '0')}` },
  requestId: `req_${i.toString(16).padStart(32, '0')}`,
  clientIp: '10.0.0.1',
  contentHash: 'ab'.repeat(32),
  details: { mailbox_id: 'mbx_0190f0f0f0f0f0f0f0f0f0f0f0f0f0f0', bytes: 1234 },
});

type ChildResult = { label: string; ops: number; cpuMs: number; wallMs: number };
const child = (env: Record<string, string>, lanes: number, startAt: number, label: string, rate = 0) =>
  new Promise<ChildResult>((resolve, reject) => {
    const p = spawn(
      process.execPath,
      ['--import', 'tsx', 'bench/support/audit-scale-child.ts', String(lanes), String(seconds), String(startAt), label, String(rate)],
      {
        cwd: repoRoot,
        env: { ...process.env, ...env },
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    let s = '';
    p.stdout.on('data', (d) => {
      s += d;
    });
    p.on('exit', (code) =>
      code === 0 ? resolve(JSON.parse(s.trim().split('\n').at(-1)!) as ChildResult) : reject(new Error(`child ${code}`)),
    );
  });

/** Polls the chain head every 5 ms and notes when each new event's seq appeared: commit-to-inclusion delays. */
const watchInclusion = (c: Container) => {
  const delays: number[] = [];
  let after = 0;
  let stop = false;
  const run = (async () => {
    after = Number((await c.store.db.selectFrom('audit_head').select('seq').executeTakeFirstOrThrow()).seq);
    while (!stop) {
      const got = await c.store.db.selectFrom('audit_events').select(['seq', 'at']).where('seq', '>', after).orderBy('seq').execute();
      // `at` is stored as milliseconds (migration 0046).
      const now = Date.now();
      // `at` is the commit-side timestamp (taken in the writer's transaction just before its commit).
      for (const r of got) delays.push(now - Number(r.at));
      if (got.length) after = Number(got.at(-1)!.seq);
      await new Promise((r) => setTimeout(r, 5));
    }
  })();
  return async () => {
    stop = true;
    await run;
    return delays.sort((a, b) => a - b);
  };
};
/** A steady write load (one process, STEADY_RATE appends/s from 4 lanes) and its commit-to-inclusion delays. */
const steady = async (env: Record<string, string>, c: Container, label: string) => {
  const stopWatch = watchInclusion(c);
  const r = await child(env, 4, Date.now() + 3000, 'steady', STEADY_RATE);
  await c.audit.sync();
  const delays = await stopWatch();
  out(
    `${label}: commit to inclusion at a steady ${STEADY_RATE} appends/s, 1 process (MAILWARD_AUDIT_INTEGRATE_MS=${loadConfig({ ...env }).auditIntegrateMs}, load ${load()})`,
    `p50 ${pct(delays, 50)} ms, p99 ${pct(delays, 99)} ms, max ${delays.at(-1)} ms over ${delays.length} events (${((r.ops / r.wallMs) * 1000).toFixed(0)}/s done)`,
  );
};
const pct = (xs: number[], p: number) => xs[Math.min(xs.length - 1, Math.floor((xs.length * p) / 100))] ?? Number.NaN;

/**
 * Records SIZE_EVENTS events (transactions of 200, as the bytes phases always did) and integrates them, and reports
 * this process's CPU per event (recording writes audit_pending only; the difference between two layouts is the
 * integrator's, which this process runs) and events per second.
 */
const fillTimed = async (c: Container, label: string) => {
  const cpu = process.cpuUsage();
  const t0 = performance.now();
  for (let i = 0; i < SIZE_EVENTS; i += 200) {
    await c.store.db.transaction().execute(async (tx) => {
      for (let k = i; k < Math.min(SIZE_EVENTS, i + 200); k++) await c.audit.record(tx, event(k));
    });
  }
  await c.audit.sync();
  const used = process.cpuUsage(cpu);
  out(
    `${label}: record and integrate ${SIZE_EVENTS} events, 1 process (load ${load()})`,
    `${((used.user + used.system) / SIZE_EVENTS).toFixed(0)} us CPU per event, ${((SIZE_EVENTS / (performance.now() - t0)) * 1000).toFixed(0)} events/s`,
  );
};

const bytesSqlite = async (c: Container, file: string) => {
  await fillTimed(c, 'SQLite');
  const raw = new SQLite(file, { readonly: true });
  // The stored rows' table: `audit_event_rows` since migration 0048 (`audit_events` is a view of it), before it `audit_events`.
  const rowsTable = raw.prepare("select 1 from sqlite_master where name = 'audit_event_rows'").get() ? 'audit_event_rows' : 'audit_events';
  const n = Number((raw.prepare('select count(*) as n from audit_events').get() as { n: number }).n);
  try {
    const b = raw
      .prepare(
        "select name, sum(pgsize) as b from dbstat where name in (?, 'audit_kinds', 'audit_chains') or name in (select name from sqlite_master where tbl_name = ? and type = 'index') group by name",
      )
      .all(rowsTable, rowsTable) as { name: string; b: number }[];
    // The stored rows (migration 0048: `audit_events` is a view of them) and their indexes; the kinds and chains
    // tables (one row per distinct kind or delegation chain) are shown apart.
    const dict = (name: string) => Number(b.find((r) => r.name === name)?.b ?? 0);
    const total = b.reduce((s, r) => s + Number(r.b), 0) - dict('audit_kinds') - dict('audit_chains');
    const table = dict(rowsTable);
    out('SQLite bytes per event (table + indexes; table alone)', `${(total / n).toFixed(0)} (${(table / n).toFixed(0)}) over ${n} events`);
    out('  SQLite kinds and chains tables', `${dict('audit_kinds')} and ${dict('audit_chains')} bytes in all`);
    out(
      '  SQLite bytes per event by b-tree',
      b
        .sort((x, y) => Number(y.b) - Number(x.b))
        .map((r) => `${r.name} ${(Number(r.b) / n).toFixed(0)}`)
        .join(', '),
    );
  } catch (e) {
    out('SQLite bytes per event', `dbstat unavailable (${(e as Error).message})`);
  }
  raw.close();
};

const bytesPg = async (c: Container) => {
  await fillTimed(c, 'PostgreSQL');
  const kysely = await import('kysely');
  const { rows: t } = await kysely.sql<{ t: string | null }>`select to_regclass('audit_event_rows')::text as t`.execute(c.store.db);
  const rowsTable = t[0]?.t ? 'audit_event_rows' : 'audit_events';
  const { rows: r } = await (await import('kysely')).sql<{ n: string; total: string; heap: string; kinds: string; chains: string }>`
    select (select count(*) from audit_events) as n, pg_total_relation_size(${rowsTable}) as total, pg_relation_size(${rowsTable}) as heap,
      coalesce(pg_total_relation_size(to_regclass('audit_kinds')), 0) as kinds, pg_total_relation_size('audit_chains') as chains`.execute(
    c.store.db,
  );
  const x = r[0]!;
  const { rows: idx } = await (await import('kysely')).sql<{ name: string; b: string }>`
    select indexrelid::regclass::text as name, pg_relation_size(indexrelid) as b from pg_index where indrelid = ${rowsTable}::regclass order by 2 desc`.execute(
    c.store.db,
  );
  out('  PostgreSQL bytes per event by index', idx.map((i) => `${i.name} ${(Number(i.b) / Number(x.n)).toFixed(0)}`).join(', '));
  out(
    'PostgreSQL bytes per event (table + indexes + toast; heap alone)',
    `${(Number(x.total) / Number(x.n)).toFixed(0)} (${(Number(x.heap) / Number(x.n)).toFixed(0)}) over ${x.n} events`,
  );
  out('  PostgreSQL kinds and chains tables (with their indexes)', `${x.kinds} and ${x.chains} bytes in all`);
};

const main = async () => {
  // Bytes per event, SQLite.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mw-bench-audit-scale-'));
  const s = await open({ MAILWARD_DATA_DIR: dir });
  await bytesSqlite(s, path.join(dir, 'mailward.db'));
  if (!BYTES_ONLY) await steady({ MAILWARD_DATA_DIR: dir }, s, 'SQLite');
  await s.close();
  fs.rmSync(dir, { recursive: true, force: true });

  if (PG_ADMIN_URL === 'off') return report();
  const admin = new pg.Client({ connectionString: PG_ADMIN_URL });
  await admin.connect();
  const dbs: string[] = [];
  const fresh = async () => {
    const name = `mw_bench_${randomBytes(4).toString('hex')}`;
    await admin.query(`create database ${name}`);
    dbs.push(name);
    const u = new URL(PG_ADMIN_URL);
    u.pathname = `/${name}`;
    const pdir = fs.mkdtempSync(path.join(os.tmpdir(), 'mw-bench-audit-scale-pg-'));
    const env = { MAILWARD_DATA_DIR: pdir, DATABASE_URL: u.toString() };
    return { env, c: await open(env), pdir };
  };
  try {
    // Bytes per event, PostgreSQL.
    {
      const { c, pdir } = await fresh();
      await bytesPg(c);
      await c.close();
      fs.rmSync(pdir, { recursive: true, force: true });
    }
    if (BYTES_ONLY) return report();
    // 1 process, then 2 processes on one database; 8 lanes each. The watcher measures inclusion delays.
    const { env, c, pdir } = await fresh();
    await steady(env, c, 'PostgreSQL');
    const results: Record<string, { rate: number; cpuPerOp: number }> = {};
    for (const procs of [1, 2]) {
      const startAt = Date.now() + 4000;
      const stopWatch = watchInclusion(c);
      const ran = await Promise.all(Array.from({ length: procs }, (_, i) => child(env, 8, startAt, `p${i}`)));
      await c.audit.sync();
      const delays = await stopWatch();
      const ops = ran.reduce((a, r) => a + r.ops, 0);
      const wall = Math.max(...ran.map((r) => r.wallMs));
      const cpu = ran.reduce((a, r) => a + r.cpuMs, 0);
      results[procs] = { rate: (ops / wall) * 1000, cpuPerOp: cpu / ops };
      out(
        `PostgreSQL appends/s, ${procs} process(es) x 8 lanes (load ${load()})`,
        `${results[procs]!.rate.toFixed(0)}/s, client CPU ${(results[procs]!.cpuPerOp * 1000).toFixed(0)} us per append`,
      );
      out(
        `  commit to inclusion, ${procs} process(es) (MAILWARD_AUDIT_INTEGRATE_MS=${loadConfig({ ...env }).auditIntegrateMs})`,
        `p50 ${pct(delays, 50)} ms, p99 ${pct(delays, 99)} ms, max ${delays.at(-1)} ms over ${delays.length} events`,
      );
    }
    out(
      '2 processes against 1 (same run)',
      `${(results[2]!.rate / results[1]!.rate).toFixed(2)}x appends/s, ${(results[2]!.cpuPerOp / results[1]!.cpuPerOp).toFixed(2)}x CPU per append`,
    );
    const v = await c.auditLog.verify();
    if (!v.ok) throw new Error('the bench log does not verify');
    await c.close();
    fs.rmSync(pdir, { recursive: true, force: true });
  } finally {
    for (const n of dbs) await admin.query(`drop database if exists ${n} with (force)`);
    await admin.end();
  }
  report();
};

const report = () => {
  const w = Math.max(...rows.map(([k]) => k.length));
  process.stdout.write(`\nAudit log at scale (${os.cpus().length} CPUs, Node ${process.version}, load ${load()})\n`);
  for (const [k, v] of rows) process.stdout.write(`${k.padEnd(w)}  ${v}\n`);
};

await main();
