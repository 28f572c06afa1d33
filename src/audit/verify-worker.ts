import { parentPort, workerData } from 'node:worker_threads';
import SQLite from 'better-sqlite3';
import pg from 'pg';
import { createHash } from 'node:crypto';
import { canonicalOfRow, type EventRow, recomputeRowHash } from './audit-chain.js';
import { contentHashOfStored, EVENT_SELECT, hexOfStored } from './audit-columns.js';
import { CompactRange, leafHash } from './merkle.js';

/**
 * Worker thread of `audit verify`: reads one seq range straight from the
 * store (read-only), recomputes every chain hash and its RFC 6962 leaf hash,
 * and hashes the range's own subtrees. The main thread checks the links
 * between ranges and every checkpoint root (audit-verify.ts).
 */

export type VerifySource = { kind: 'sqlite'; file: string } | { kind: 'postgres'; url: string };
export type VerifyJob = { index: number; from: number; to: number; snapshotsAt: number[] };
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

/**
 * Whether a row's content hashes to `stored` after `prevBytes`: the spliced canonical form, compared as bytes; only
 * when that disagrees, the generic parse-and-canonicalize path of recomputeRowHash (rows stored before the JSON
 * columns were canonical) decides.
 */
const chainOk = (r: EventRow, prevBytes: Buffer, stored: Buffer): boolean => {
  if (createHash('sha256').update(prevBytes).update(canonicalOfRow(r), 'utf8').digest().equals(stored)) return true;
  const hash = stored.toString('hex');
  return recomputeRowHash({ ...r, hash }, prevBytes.toString('hex')) === hash;
};

/** The row's columns; `prev_hash` and `hash` are left empty (the loop works on their bytes). */
const toRow = (a: unknown[]): EventRow => ({
  seq: Number(a[0]),
  id: a[1] as string,
  at: a[2] as string,
  org_id: a[3] as string | null,
  action: a[4] as string,
  actor_type: a[5] as string,
  actor_id: a[6] as string | null,
  delegation_chain: (a[7] as string | null) ?? 'null',
  target_type: a[8] as string | null,
  target_id: a[9] as string | null,
  outcome: a[10] as string,
  request_id: a[11] as string | null,
  client_ip: a[12] as string | null,
  content_hash: contentHashOfStored(a[13]),
  details: a[14] as string,
  prev_hash: '',
  hash: '',
});

const openReader = async (src: VerifySource): Promise<(from: number, to: number) => Promise<unknown[][]>> => {
  if (src.kind === 'sqlite') {
    const db = new SQLite(src.file, { readonly: true, fileMustExist: true });
    const stmt = db.prepare(SELECT.replace('$1', '?').replace('$2', '?').replace('$3', '?')).raw();
    return async (from, to) => stmt.all(from, to, BATCH) as unknown[][];
  }
  const client = new pg.Client({ connectionString: src.url });
  await client.connect();
  return async (from, to) => (await client.query({ text: SELECT, values: [from, to, BATCH], rowMode: 'array' })).rows as unknown[][];
};

const run = async () => {
  const read = await openReader(workerData as VerifySource);
  parentPort!.on('message', async (job: VerifyJob) => {
    const leaves = Buffer.allocUnsafe((job.to - job.from + 1) * 32);
    const compact = new CompactRange();
    const wanted = new Set(job.snapshotsAt);
    const snapshots: [number, Uint8Array[]][] = [];
    let expected = job.from;
    let prev: Buffer | null = null;
    let firstPrev: string | null = null;
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
        const r = toRow(a);
        const storedPrev = asBuffer(a[15]);
        const stored = asBuffer(a[16]);
        if (r.seq !== expected) {
          problem = { code: r.seq > expected ? 'missing_event' : 'out_of_order', seq: expected, found: r.seq };
          break outer;
        }
        if (prev === null) firstPrev = hexOfStored(a[15]);
        else if (storedPrev === null || !storedPrev.equals(prev)) {
          problem = { code: 'broken_link', seq: r.seq };
          break outer;
        }
        if (stored === null || stored.length !== 32 || storedPrev === null || !chainOk(r, storedPrev, stored)) {
          problem = { code: 'hash_mismatch', seq: r.seq };
          break outer;
        }
        // RFC 6962 2.1: leaf hash = SHA-256(0x00 || event hash bytes).
        const leaf = leafHash(stored);
        leaf.copy(leaves, (expected - job.from) * 32);
        compact.append(leaf);
        if (wanted.has(expected)) snapshots.push([expected, compact.hashes.map((h) => Buffer.from(h))]);
        prev = stored;
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
      lastHash: prev === null ? null : prev.toString('hex'),
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
