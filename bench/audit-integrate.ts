/**
 * The audit integrator's cost per event. Run: node --import tsx bench/audit-integrate.ts [postgres|sqlite] [N]
 * Records N events (default 20,000; transactions of 200, the bench/audit-scale.ts event) with no integrator running,
 * so all of them are pending, then times one sync: the process's CPU per integrated event (sequencing, hashing, the
 * stored row's conversion and insert, the pending rows' deletion) and events per second. Compare builds by running it
 * in each checkout, alternately. Then times the Merkle tree's catch-up over them (src/audit/tree-store.ts) as this
 * process runs it (the chain hashes its integrator committed, folded from memory), or with
 * MAILWARD_BENCH_TREE=read-back as another process runs it (every row read back and its chain hash checked).
 * MAILWARD_TEST_DATABASE_URL: the PostgreSQL admin URL.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { createAuditService } from '../src/audit/audit-service.js';
import { createTreeStore } from '../src/audit/tree-store.js';
import { systemClock } from '../src/kernel/clock.js';
import { openStore } from '../src/store/db.js';
import { migrateToLatest } from '../src/store/migrate.js';
import { BENCH_AUDIT_ACTOR, PG_ADMIN_URL } from './support/bench-kit.js';

const dialect = (process.argv[2] ?? 'postgres') as 'postgres' | 'sqlite';
const N = Number(process.argv[3] ?? 20_000);
const readBack = process.env.MAILWARD_BENCH_TREE === 'read-back';
const name = `mw_bench_integ_${Date.now().toString(36)}`;
const admin = async (q: string) => {
  const a = new pg.Client({ connectionString: PG_ADMIN_URL });
  await a.connect();
  await a.query(q);
  await a.end();
};
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mw-bench-integ-'));
let url = '';
if (dialect === 'postgres') {
  await admin(`create database ${name}`);
  const u = new URL(PG_ADMIN_URL);
  u.pathname = `/${name}`;
  url = u.toString();
}
const store = openStore(
  dialect === 'postgres' ? { kind: 'postgres', url } : { kind: 'sqlite', file: path.join(dir, 'mailward.db'), checkpointEveryMs: 0 },
);
try {
  await migrateToLatest(store);
  const audit = createAuditService({ db: store.db, dialect, clock: systemClock });
  const tree = createTreeStore({ db: store.db, dialect });
  if (!readBack) audit.onIntegrated(tree.noteIntegrated);
  for (let i = 0; i < N; i += 200)
    await store.db.transaction().execute(async (tx) => {
      for (let k = i; k < Math.min(N, i + 200); k++)
        await audit.record(tx, {
          action: k % 7 ? 'email.read' : 'email.submitted',
          actor: BENCH_AUDIT_ACTOR,
          target: { type: 'message', id: `msg_${k.toString(16).padStart(32, '0')}` },
          requestId: `req_${k.toString(16).padStart(32, '0')}`,
          clientIp: '10.0.0.1',
          contentHash: 'ab'.repeat(32),
          details: { mailbox_id: 'mbx_0190f0f0f0f0f0f0f0f0f0f0f0f0f0f0', bytes: 1234 },
        });
    });
  const pending = await audit.pendingCount();
  const cpu = process.cpuUsage();
  const t0 = performance.now();
  await audit.sync();
  const u = process.cpuUsage(cpu);
  const wall = performance.now() - t0;
  const load = fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  process.stdout.write(
    `${dialect}: integrated ${pending} pending events, ${((u.user + u.system) / pending).toFixed(1)} us CPU per event, ${((pending / wall) * 1000).toFixed(0)} events/s (load ${load})\n`,
  );
  const c0 = process.cpuUsage();
  const size = await tree.catchUp();
  const c = process.cpuUsage(c0);
  process.stdout.write(
    `${dialect}: tree catch-up (${readBack ? "another process's chain: rows read back" : "this process's chain"}), ${((c.user + c.system) / size).toFixed(1)} us CPU per event over ${size}\n`,
  );
} finally {
  await store.destroy();
  if (dialect === 'postgres') await admin(`drop database if exists ${name} with (force)`);
  fs.rmSync(dir, { recursive: true, force: true });
}
