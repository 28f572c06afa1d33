import { parentPort, workerData } from 'node:worker_threads';
import SQLite from 'better-sqlite3';
import pg from 'pg';
import { type EventRow, recomputeRowHash } from './audit-chain.js';
import { atOfStored, contentHashOfStored, EVENT_SELECT, hexOfStored, idOfStored } from './audit-columns.js';
import { CompactRange, leafHash } from './merkle.js';
import { createStoredEventHasher } from './stored-event-hash.js';

/**
 * Worker thread of `audit verify`: reads one seq range straight from the
 * store (read-only), recomputes every chain hash and its RFC 6962 leaf hash,
 * and hashes the range's own subtrees. The main thread checks the links
 * between ranges and every checkpoint root (audit-verify.ts).
 */

export type VerifySource = { kind: 'sqlite'; file: string } | { kind: 'postgres'; url: string };
/** `prev`: the hash the range chains from when known (the first range: the log's start); else the row before `from`'s. */
export type VerifyJob = { index: number; from: number; to: number; snapshotsAt: number[]; prev: string | null };
export type VerifyChunk = {
  index: number;
  from: number;
  count: number;
  leaves: Uint8Array;
  firstPrev: string | null;
  lastHash: string | null;
  /** The range's own compact range (its subtrees, largest first) and snapshots at the asked sizes. */
  compact: Uint8Array[];
  snapshots: [number, Uint8Array[]][];
  problem: { code: 'missing_event' | 'out_of_order' | 'broken_link' | 'hash_mismatch' | 'end'; seq: number; found?: number } | null;
};

const SELECT = `${EVENT_SELECT} where e.seq >= $1 and e.seq <= $2 order by e.seq limit $3`;
const BATCH = 10_000;

const asBuffer = (b: unknown): Buffer | null => (b instanceof Uint8Array ? Buffer.from(b.buffer, b.byteOffset, b.byteLength) : null);

const hasher = createStoredEventHasher();

/**
 * Whether a row's content hashes to `stored` after `prevBytes`: the canonical form written from the stored bytes
 * (stored-event-hash.ts), compared as bytes; only when that disagrees or cannot be written, the generic
 * parse-and-canonicalize path of recomputeRowHash (rows stored before the JSON columns were canonical) decides.
 */
const chainOk = (a: unknown[], prevBytes: Buffer, stored: Buffer): boolean => {
  if (hasher.hash(prevBytes, a)?.equals(stored)) return true;
  const hash = stored.toString('hex');
  return recomputeRowHash({ ...toRow(a), hash }, prevBytes.toString('hex')) === hash;
};

/** The row's columns in the chain's terms; `prev_hash` and `hash` are left empty (the loop works on their bytes). */
const toRow = (a: unknown[]): EventRow => ({
  seq: Number(a[0]),
  id: idOfStored(a[1]) ?? '!null',
  at: atOfStored(a[2], a[16]),
  org_id: idOfStored(a[3]),
  action: a[4] as string,
  actor_type: a[5] as string,
  actor_id: idOfStored(a[6]),
  delegation_chain: (a[7] as string | null) ?? 'null',
  target_type: a[8] as string | null,
  target_id: idOfStored(a[9]),
  outcome: a[10] as string,
  request_id: idOfStored(a[11]),
  client_ip: a[12] as string | null,
  content_hash: contentHashOfStored(a[13]),
  details: a[14] as string,
  prev_hash: '',
  hash: '',
});

type Reader = { rows: (from: number, to: number) => Promise<unknown[][]>; hashAt: (seq: number) => Promise<Buffer | null> };

const HASH_AT = 'select hash from audit_events where seq = $1';

const openReader = async (src: VerifySource): Promise<Reader> => {
  if (src.kind === 'sqlite') {
    const db = new SQLite(src.file, { readonly: true, fileMustExist: true });
    const stmt = db.prepare(SELECT.replace('$1', '?').replace('$2', '?').replace('$3', '?')).raw();
    const one = db.prepare(HASH_AT.replace('$1', '?')).pluck();
    return {
      rows: async (from, to) => stmt.all(from, to, BATCH) as unknown[][],
      hashAt: async (seq) => asBuffer(one.get(seq)),
    };
  }
  const client = new pg.Client({ connectionString: src.url });
  await client.connect();
  return {
    rows: async (from, to) => (await client.query({ text: SELECT, values: [from, to, BATCH], rowMode: 'array' })).rows as unknown[][],
    hashAt: async (seq) => asBuffer((await client.query({ text: HASH_AT, values: [seq], rowMode: 'array' })).rows[0]?.[0]),
  };
};

const run = async () => {
  const reader = await openReader(workerData as VerifySource);
  const read = reader.rows;
  parentPort!.on('message', async (job: VerifyJob) => {
    const leaves = Buffer.allocUnsafe((job.to - job.from + 1) * 32);
    const compact = new CompactRange();
    const wanted = new Set(job.snapshotsAt);
    const snapshots: [number, Uint8Array[]][] = [];
    let expected = job.from;
    // What the range chains from: the given start, else the previous row's hash (prev_hash is not stored, 0042).
    // The main thread checks it against the previous range's last hash.
    const startPrev = job.prev !== null ? Buffer.from(job.prev, 'hex') : await reader.hashAt(job.from - 1);
    const firstPrev: string | null = job.prev ?? (startPrev ? hexOfStored(startPrev) : null);
    let prev: Buffer | null = startPrev && startPrev.length === 32 ? startPrev : null;
    let last: Buffer | null = null;
    let problem: VerifyChunk['problem'] = null;
    // The next batch is read while this one is hashed (PostgreSQL answers meanwhile; SQLite reads synchronously).
    let next: Promise<unknown[][]> | null = read(expected, job.to);
    outer: while (next) {
      const rows: unknown[][] = await next;
      next = null;
      if (rows.length === 0) {
        problem = { code: 'end', seq: expected };
        break;
      }
      const lastSeq = Number(rows.at(-1)![0]);
      if (rows.length === BATCH && lastSeq < job.to) next = read(lastSeq + 1, job.to);
      for (const a of rows) {
        // Hashes stay bytes (as stored): no hex strings per row, which at a million rows is mostly garbage collection.
        const seq = Number(a[0]);
        const stored = asBuffer(a[15]);
        if (seq !== expected) {
          problem = { code: seq > expected ? 'missing_event' : 'out_of_order', seq: expected, found: seq };
          break outer;
        }
        if (stored === null || stored.length !== 32 || prev === null || !chainOk(a, prev, stored)) {
          problem = { code: 'hash_mismatch', seq };
          break outer;
        }
        // RFC 6962 2.1: leaf hash = SHA-256(0x00 || event hash bytes).
        const leaf = leafHash(stored);
        leaf.copy(leaves, (expected - job.from) * 32);
        compact.append(leaf);
        if (wanted.has(expected)) snapshots.push([expected, compact.hashes.map((h) => Buffer.from(h))]);
        prev = stored;
        last = stored;
        expected++;
      }
    }
    // A read left in flight by a problem is drained before the answer; rows that ran out inside the range end it.
    if (next) await (next as Promise<unknown[][]>).catch(() => []);
    if (problem === null && expected <= job.to) problem = { code: 'end', seq: expected };
    const count = expected - job.from;
    const out: VerifyChunk = {
      index: job.index,
      from: job.from,
      count,
      leaves: leaves.subarray(0, count * 32),
      firstPrev,
      lastHash: last === null ? null : last.toString('hex'),
      compact: compact.hashes,
      snapshots,
      problem,
    };
    parentPort!.postMessage(out);
  });
  parentPort!.postMessage({ ready: true });
};

void run().catch((e) => {
  parentPort!.postMessage({ failed: String((e as Error)?.message ?? e) });
});
