/**
 * Audit log benchmark. Run: node --import tsx bench/audit.ts
 * Env: BENCH_AUDIT_EVENTS (default 1,000,000), BENCH_AUDIT_PG_EVENTS (PostgreSQL verify size, default the same; 0 skips),
 * BENCH_AUDIT_ROUNDS (read/verify rounds, alternating, default 2), BENCH_PG_URL (default
 * postgres://postgres@127.0.0.1:5432/postgres; set to "off" to skip PostgreSQL), BENCH_AUDIT_VERIFY_ONLY=1 (only the
 * bulk loads and verify against reading: no appends, indexing or proofs).
 *
 * Reports: single-event appends/s inside a transaction (SQLite, PostgreSQL),
 * full verification of N events against reading the same rows and raw SHA-256 over the same bytes in the
 * same run (SQLite and PostgreSQL), tree indexing time, and inclusion-proof time at N events.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import SQLite from 'better-sqlite3';
import pg from 'pg';
import type { Container } from '../src/app/container.js';
import { canonicalOfRow, type EventRow } from '../src/audit/audit-chain.js';
import {
  STORED_EVENT_COLUMNS,
  STORED_EVENT_TABLE,
  storedOfAt,
  storedOfContentHash,
  storedOfId,
  storedOfIdOrNull,
} from '../src/audit/audit-columns.js';
import { canonicalJson } from '../src/audit/canonical.js';
import { eventRows, selectChainRows } from '../src/audit/event-rows.js';
import { systemActor } from '../src/identity/principal.js';
import { benchStore, openBenchContainer } from './support/bench-kit.js';

const N = Number(process.env.BENCH_AUDIT_EVENTS ?? 1_000_000);
const PG_URL = process.env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const rows: [string, string][] = [];
const out = (k: string, v: string) => {
  rows.push([k, v]);
  process.stderr.write(`${k}: ${v}\n`);
};
const secs = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e9;

const open = openBenchContainer;
const PG_N = Number(process.env.BENCH_AUDIT_PG_EVENTS ?? N);
const ROUNDS = Number(process.env.BENCH_AUDIT_ROUNDS ?? 2);
const VERIFY_ONLY = process.env.BENCH_AUDIT_VERIFY_ONLY === '1';

const load = () => fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');

/** The i-th bulk event after `head`, chained on `prev` (the shape record() writes). */
const bulkRow = (head: number, i: number, prev: string, chain: string): EventRow => {
  const base = Date.parse('2026-01-01T00:00:00Z');
  const r: EventRow = {
    seq: head + i + 1,
    id: `evt_${(i + 1).toString(16).padStart(32, '0')}`,
    at: new Date(base + i * 10).toISOString(),
    org_id: 'org_bench',
    action: i % 5 === 0 ? 'email.submitted' : 'email.read',
    actor_type: 'agent',
    actor_id: actor.id,
    delegation_chain: chain,
    target_type: 'message',
    target_id: `msg_${i.toString(16).padStart(32, '0')}`,
    outcome: 'success',
    request_id: `req_${i.toString(16).padStart(32, '0')}`,
    client_ip: '10.0.0.1',
    content_hash: 'ab'.repeat(32),
    details: canonicalJson({ mailbox_id: 'mbx_1', bytes: i }),
    prev_hash: prev,
    hash: '',
  };
  r.hash = createHash('sha256').update(Buffer.from(prev, 'hex')).update(canonicalOfRow(r), 'utf8').digest('hex');
  return r;
};
/**
 * Its stored form (migrations 0040, 0042, 0046, 0048): the chain and the kind by reference, hashes and ids as bytes,
 * no prev_hash, `at` as milliseconds; into `audit_event_rows` (`audit_events` is a view of it since 0048).
 */
const storedRow = (r: EventRow, chainId: number, kindId: number) => {
  const { delegation_chain: _, prev_hash: _prev, action: _a, actor_type: _t, target_type: _tt, outcome: _o, ...rest } = r;
  return {
    ...rest,
    id: storedOfId(r.id),
    at: storedOfAt(r.at).at,
    org_id: storedOfIdOrNull(r.org_id),
    actor_id: storedOfIdOrNull(r.actor_id),
    target_id: storedOfIdOrNull(r.target_id),
    request_id: storedOfIdOrNull(r.request_id),
    chain_id: chainId,
    kind_id: kindId,
    content_hash: storedOfContentHash(r.content_hash),
    hash: Buffer.from(r.hash, 'hex'),
  };
};
const COLS = STORED_EVENT_COLUMNS.join(', ');
/** The kind row of an event (audit_kinds, migration 0048), found or added as the integrator does. */
const KIND_FIND =
  'select id from audit_kinds where action = $1 and actor_type = $2 and target_type is not distinct from $3 and outcome = $4 and at_text = $5';
const KIND_ADD =
  'insert into audit_kinds (id, action, actor_type, target_type, outcome, at_text) select coalesce(max(id), 0) + 1, $1, $2, $3, $4, $5 from audit_kinds returning id';
const kindParams = (r: EventRow) => [r.action, r.actor_type, r.target_type, r.outcome, storedOfAt(r.at).at_text];
const kindKeyOf = (r: EventRow) => JSON.stringify(kindParams(r));
const sqliteText = (q: string) => q.replace(/\$\d/g, '?').replace('is not distinct from', 'is');

const bulkLoadSqlite = async (c: Container, file: string, n: number): Promise<number> => {
  // The chain's head, after integrating what start-up appended (the Merkle tree may still be behind it).
  await c.audit.sync();
  const headRow = await c.store.db.selectFrom('audit_head').select(['seq', 'hash']).where('id', '=', 1).executeTakeFirstOrThrow();
  const head = Number(headRow.seq);
  const raw = new SQLite(file);
  raw.pragma('journal_mode = WAL');
  raw.pragma('synchronous = NORMAL');
  const ins = raw.prepare(
    `insert into ${STORED_EVENT_TABLE} (${COLS}) values (${COLS.split(', ')
      .map((k) => `@${k}`)
      .join(', ')})`,
  );
  let prev = headRow.hash;
  const chain = canonicalJson(actor.chain);
  // The chain is stored once (audit_chains) and referred to by id, as the integrator does.
  const known = raw.prepare('select id from audit_chains where chain = ?').get(chain) as { id: number } | undefined;
  const chainId =
    known?.id ??
    Number(
      raw.prepare('insert into audit_chains (id, chain) select coalesce(max(id), 0) + 1, ? from audit_chains').run(chain).lastInsertRowid,
    );
  const kinds = new Map<string, number>();
  const findKind = raw.prepare(sqliteText(KIND_FIND)).pluck();
  const addKind = raw.prepare(sqliteText(KIND_ADD)).pluck();
  const kindId = (r: EventRow): number => {
    const k = kindKeyOf(r);
    let id = kinds.get(k);
    if (id === undefined) {
      id = Number(findKind.get(...kindParams(r)) ?? addKind.get(...kindParams(r)));
      kinds.set(k, id);
    }
    return id;
  };
  for (let start = 0; start < n; start += 50_000) {
    raw.transaction(() => {
      for (let i = start; i < Math.min(n, start + 50_000); i++) {
        const r = bulkRow(head, i, prev, chain);
        prev = r.hash;
        ins.run(storedRow(r, chainId, kindId(r)));
      }
    })();
  }
  raw.prepare('update audit_head set seq = ?, hash = ? where id = 1').run(head + n, prev);
  raw.close();
  return head + n;
};

const bulkLoadPg = async (c: Container, url: string, n: number): Promise<number> => {
  // The chain's head, after integrating what start-up appended (the Merkle tree may still be behind it).
  await c.audit.sync();
  const headRow = await c.store.db.selectFrom('audit_head').select(['seq', 'hash']).where('id', '=', 1).executeTakeFirstOrThrow();
  const head = Number(headRow.seq);
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  const chain = canonicalJson(actor.chain);
  const known = await client.query<{ id: number }>('select id from audit_chains where chain = $1', [chain]);
  const chainId =
    known.rows[0]?.id ??
    (
      await client.query<{ id: number }>(
        'insert into audit_chains (id, chain) select coalesce(max(id), 0) + 1, $1 from audit_chains returning id',
        [chain],
      )
    ).rows[0]!.id;
  const cols = COLS.split(', ');
  const kinds = new Map<string, number>();
  const kindId = async (r: EventRow): Promise<number> => {
    const k = kindKeyOf(r);
    let id = kinds.get(k);
    if (id === undefined) {
      const found = await client.query<{ id: number }>(KIND_FIND, kindParams(r));
      id = Number(found.rows[0]?.id ?? (await client.query<{ id: number }>(KIND_ADD, kindParams(r))).rows[0]!.id);
      kinds.set(k, id);
    }
    return id;
  };
  let prev = headRow.hash;
  const per = 1000;
  for (let start = 0; start < n; start += per) {
    const values: unknown[] = [];
    const tuples: string[] = [];
    for (let i = start; i < Math.min(n, start + per); i++) {
      const r = bulkRow(head, i, prev, chain);
      prev = r.hash;
      const s = storedRow(r, chainId, await kindId(r)) as Record<string, unknown>;
      tuples.push(`(${cols.map((_, k) => `$${values.length + k + 1}`).join(', ')})`);
      for (const k of cols) values.push(s[k]);
    }
    await client.query(`insert into ${STORED_EVENT_TABLE} (${COLS}) values ${tuples.join(', ')}`, values);
  }
  await client.query('update audit_head set seq = $1, hash = $2 where id = 1', [head + n, prev]);
  await client.query(`vacuum analyze ${STORED_EVENT_TABLE}`);
  await client.end();
  return head + n;
};

/**
 * Reads every row (the query and row conversion verify's own thread uses) and hashes the same bytes, then verifies,
 * alternately for BENCH_AUDIT_ROUNDS rounds. CPU seconds of the whole process (worker threads included) are the stable
 * figure on a shared machine; wall time is given beside them.
 */
const verifyVsRead = async (c: Container, label: string, total: number) => {
  const cpuNow = () => {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1e6;
  };
  for (let round = 1; round <= ROUNDS; round++) {
    let hashTime = 0;
    let after = 0;
    const r0 = process.hrtime.bigint();
    const c0 = cpuNow();
    let hashCpu = 0;
    let prev = Buffer.alloc(32);
    for (;;) {
      const batch = await eventRows(selectChainRows(c.store.db).where('e.seq', '>', after).orderBy('e.seq').limit(5000));
      if (batch.length === 0) break;
      const h0 = process.hrtime.bigint();
      const hc = cpuNow();
      for (const r of batch) {
        createHash('sha256').update(prev).update(canonicalOfRow(r), 'utf8').digest();
        prev = Buffer.from(r.hash, 'hex');
      }
      hashCpu += cpuNow() - hc;
      hashTime += secs(h0);
      after = Number(batch.at(-1)!.seq);
    }
    const readCpu = cpuNow() - c0 - hashCpu;
    const readTime = secs(r0) - hashTime;
    // The same reads with nothing between the batches: the garbage of reading is then collected while reading, not
    // while hashing (in the pass above part of it lands in the hashing's CPU). Shown beside; the ratios below are
    // against the pass above, as in earlier rounds.
    const a0 = cpuNow();
    for (let at = 0; ; ) {
      const batch = await eventRows(selectChainRows(c.store.db).where('e.seq', '>', at).orderBy('e.seq').limit(5000));
      if (batch.length === 0) break;
      at = Number(batch.at(-1)!.seq);
    }
    const aloneCpu = cpuNow() - a0;
    out(`${label} round ${round}: raw SHA-256 of the same ${total.toLocaleString('en')} events' bytes`, `${hashCpu.toFixed(2)} s CPU`);
    out(
      `${label} round ${round}: reading the rows (keyset batches of 5,000; load ${load()})`,
      `${readCpu.toFixed(2)} s CPU (${readTime.toFixed(2)} s wall)`,
    );
    out(`${label} round ${round}: reading the rows alone, no hashing between batches (load ${load()})`, `${aloneCpu.toFixed(2)} s CPU`);
    for (const [name, opts] of [
      ['worker threads', {}],
      ['1 thread', { parallelFrom: Number.POSITIVE_INFINITY }],
    ] as const) {
      const v0 = process.hrtime.bigint();
      const vc = cpuNow();
      const report = await c.auditLog.verify(undefined, opts);
      const vCpu = cpuNow() - vc;
      const vt = secs(v0);
      if (!report.ok) throw new Error(`bench log does not verify: ${JSON.stringify(report.problems[0])}`);
      out(
        `${label} round ${round}: audit verify, ${name} (${report.threads}): read + chain + tree + checkpoints (load ${load()})`,
        `${vCpu.toFixed(2)} s CPU = ${(vCpu / readCpu).toFixed(2)}x reading, ${(vCpu / aloneCpu).toFixed(2)}x reading alone (${vt.toFixed(2)} s wall = ${(vt / readTime).toFixed(2)}x)`,
      );
    }
  }
};

const actor = {
  ...systemActor('org_bench'),
  type: 'agent' as const,
  id: 'agt_0190f0f0f0f0f0f0f0f0f0f0f0f0f0f0',
  chain: [
    { type: 'organization', id: 'org_bench', name: 'Bench Hospital' },
    { type: 'agent', id: 'agt_0190f0f0f0f0f0f0f0f0f0f0f0f0f0f0', name: 'Scheduler' },
  ],
};

/** Single-event appends, each in its own transaction, from `lanes` concurrent callers. */
const appends = async (c: Container, count: number, lanes: number) => {
  const t0 = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: lanes }, async () => {
      for (let i = 0; i < count / lanes; i++) {
        await c.store.db.transaction().execute((tx) =>
          c.audit.record(tx, {
            action: 'email.read',
            actor,
            target: { type: 'message', id: `msg_${i}` },
            requestId: 'req_bench',
            clientIp: '10.0.0.1',
            contentHash: 'ab'.repeat(32),
            details: { mailbox_id: 'mbx_1', bytes: 1234 },
          }),
        );
      }
    }),
  );
  return count / secs(t0);
};

/** Tree indexing of the bulk-loaded events (once, amortised over appends) and proofs at that size. */
const treeAndProofs = async (c: Container) => {
  const i0 = process.hrtime.bigint();
  await c.auditLog.tree.catchUp();
  out('Merkle indexing of the new events (once)', `${secs(i0).toFixed(1)} s`);
  const cp = await c.auditLog.checkpoints.current();
  const p0 = process.hrtime.bigint();
  const proofs = 500;
  for (let i = 0; i < proofs; i++) await c.auditLog.tree.inclusionProof(Math.floor(Math.random() * cp.tree_size), cp.tree_size);
  out(
    `inclusion proof at ${cp.tree_size.toLocaleString('en')} events (mean of ${proofs})`,
    `${((secs(p0) / proofs) * 1000).toFixed(2)} ms`,
  );
  const q0 = process.hrtime.bigint();
  for (let i = 0; i < 100; i++) await c.auditLog.tree.consistencyProof(1 + Math.floor(Math.random() * (cp.tree_size - 1)), cp.tree_size);
  out(`consistency proof at ${cp.tree_size.toLocaleString('en')} events (mean of 100)`, `${((secs(q0) / 100) * 1000).toFixed(2)} ms`);
};

const main = async () => {
  // 1. Appends on SQLite.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mw-bench-audit-'));
  const c = await open({ MAILWARD_DATA_DIR: dir });
  if (!VERIFY_ONLY) {
    await appends(c, 500, 1); // warm-up
    out('SQLite appends/s (1 caller, own transaction each)', (await appends(c, 10_000, 1)).toFixed(0));
  }

  // 2. Appends on PostgreSQL.
  if (PG_URL !== 'off' && !VERIFY_ONLY) {
    const store = await benchStore('postgres', PG_URL);
    const p = await open(store.env);
    await appends(p, 300, 1);
    out('PostgreSQL appends/s (1 caller)', (await appends(p, 3000, 1)).toFixed(0));
    out('PostgreSQL appends/s (8 concurrent callers)', (await appends(p, 8000, 8)).toFixed(0));
    await p.close();
    await store.drop();
  }

  // 3. Bulk-load N chained events (same shape record() writes) straight into SQLite.
  const t0 = process.hrtime.bigint();
  const total = await bulkLoadSqlite(c, path.join(dir, 'mailward.db'), N);
  out(`SQLite bulk load of ${N.toLocaleString('en')} events (setup)`, `${secs(t0).toFixed(1)} s`);
  // 4-5. Reading the rows, raw hashing and full verification, in the same run.
  await verifyVsRead(c, 'SQLite', total);
  // 6. Tree indexing (once, amortised over appends) and proofs.
  if (!VERIFY_ONLY) await treeAndProofs(c);
  await c.close();
  fs.rmSync(dir, { recursive: true, force: true });

  // 7. The same verification against reading on PostgreSQL (BENCH_AUDIT_PG_EVENTS, default N).
  if (PG_URL !== 'off' && PG_N > 0) {
    const store = await benchStore('postgres', PG_URL);
    try {
      const p = await open(store.env);
      const l0 = process.hrtime.bigint();
      const pgTotal = await bulkLoadPg(p, store.env.DATABASE_URL!, PG_N);
      out(`PostgreSQL bulk load of ${PG_N.toLocaleString('en')} events (setup)`, `${secs(l0).toFixed(1)} s`);
      await verifyVsRead(p, 'PostgreSQL', pgTotal);
      await p.close();
    } finally {
      await store.drop();
    }
  }

  const w = Math.max(...rows.map(([k]) => k.length));
  process.stdout.write(`\nAudit log benchmark (${os.cpus().length} CPUs, Node ${process.version})\n`);
  for (const [k, v] of rows) process.stdout.write(`${k.padEnd(w)}  ${v}\n`);
};

await main();
