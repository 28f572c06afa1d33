import { hash as oneShotHash } from 'node:crypto';
import { parentPort, workerData } from 'node:worker_threads';
import { type EventRow, recomputeRowHash } from './audit-chain.js';
import { FlatCompactRange } from './audit-chain-verifier.js';
import { atOfStored, contentHashOfStored, EVENT_COLUMNS, EVENT_SELECT, hexOfStored, ID_COLUMNS, idOfStored } from './audit-columns.js';
import { createStoredEventHasher, type HexForm, hexDigitsOf } from './stored-event-hash.js';

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

const RANGE = 'where e.seq >= $1 and e.seq <= $2 order by e.seq limit $3';
const SELECT = `${EVENT_SELECT} ${RANGE}`;
const ONE = `${EVENT_SELECT} where e.seq = $1`;
const BATCH = 10_000;

/** Indexes in EVENT_SELECT's row of the columns stored as bytes: the ids, content_hash and hash (audit-columns.ts). */
const BINARY = new Set<string>([...ID_COLUMNS, 'content_hash', 'hash']);
const HASH = EVENT_COLUMNS.indexOf('hash');
/**
 * SQLite: the same select with every binary column as quote() text (stored-event-hash.ts HexForm), around
 * EVENT_SELECT as it is, so the stored layout stays audit-columns.ts's alone.
 */
const SQLITE_TEXT_SELECT = `select ${[...EVENT_COLUMNS, 'at_text']
  .map((c) => (BINARY.has(c) ? `quote(s.${c})` : `s.${c}`))
  .join(', ')} from (${SELECT.replaceAll(/\$[123]/g, '?')}) s order by s.seq`;
/** PostgreSQL: bytea handed over as the server's hex text (the form pg itself would parse into a Buffer). */
const PG_TEXT_TYPES = {
  getTypeParser: (oid: number, format?: string) =>
    oid === 17 ? (v: string) => v : (pg.types.getTypeParser as (o: number, f?: string) => unknown)(oid, format),
};

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

/**
 * `rows`: a seq range with the binary columns in text form (`form`); `rowAt`: one row as stored bytes (EVENT_SELECT as
 * it is), for the generic path; `hashAt`: one stored hash.
 */
type Reader = {
  form: HexForm;
  rows: (from: number, to: number) => Promise<unknown[][]>;
  rowAt: (seq: number) => Promise<unknown[] | null>;
  hashAt: (seq: number) => Promise<Buffer | null>;
};

const HASH_AT = 'select hash from audit_events where seq = $1';

// The driver of the other dialect is not loaded: each is a second or so of a worker's start-up under tsx.
let pg: typeof import('pg').default;

const openReader = async (src: VerifySource): Promise<Reader> => {
  if (src.kind === 'sqlite') {
    const SQLite = (await import('better-sqlite3')).default;
    const db = new SQLite(src.file, { readonly: true, fileMustExist: true });
    const stmt = db.prepare(SQLITE_TEXT_SELECT).raw();
    const row = db.prepare(ONE.replace('$1', '?')).raw();
    const one = db.prepare(HASH_AT.replace('$1', '?')).pluck();
    return {
      form: 'sqlite-quote',
      rows: async (from, to) => stmt.all(from, to, BATCH) as unknown[][],
      rowAt: async (seq) => (row.get(seq) as unknown[] | undefined) ?? null,
      hashAt: async (seq) => asBuffer(one.get(seq)),
    };
  }
  pg = (await import('pg')).default;
  const client = new pg.Client({ connectionString: src.url });
  await client.connect();
  // The hex form is what pg-hex reads (stored-event-hash.ts); the server's other form (escape) would be declined row by row.
  await client.query("set bytea_output = 'hex'");
  return {
    form: 'pg-hex',
    rows: async (from, to) =>
      (await client.query({ text: SELECT, values: [from, to, BATCH], rowMode: 'array', types: PG_TEXT_TYPES })).rows as unknown[][],
    rowAt: async (seq) => ((await client.query({ text: ONE, values: [seq], rowMode: 'array' })).rows[0] as unknown[] | undefined) ?? null,
    hashAt: async (seq) => asBuffer((await client.query({ text: HASH_AT, values: [seq], rowMode: 'array' })).rows[0]?.[0]),
  };
};

/** Whether the 32 bytes of `b` are the 32 characters of a 'binary' (latin1) digest string. */
const sameBytes = (digest: string, b: Buffer): boolean => {
  for (let i = 0; i < 32; i++) if (digest.charCodeAt(i) !== b[i]) return false;
  return true;
};

const run = async () => {
  const reader = await openReader(workerData as VerifySource);
  const read = reader.rows;
  const form = reader.form;
  // Scratch: the previous and the current stored hash as bytes, and RFC 6962 2.1's leaf input 0x00 || hash.
  let prev = Buffer.alloc(32);
  let cur = Buffer.alloc(32);
  const leafIn = Buffer.alloc(33);
  parentPort!.on('message', async (job: VerifyJob) => {
    // Its own memory, handed over to the main thread (transferred, not copied).
    const leaves = Buffer.from(new ArrayBuffer((job.to - job.from + 1) * 32));
    const compact = new FlatCompactRange();
    const wanted = new Set(job.snapshotsAt);
    const snapshots: [number, Uint8Array[]][] = [];
    let expected = job.from;
    // What the range chains from: the given start, else the previous row's hash (prev_hash is not stored, 0042).
    // The main thread checks it against the previous range's last hash.
    const startPrev = job.prev !== null ? Buffer.from(job.prev, 'hex') : await reader.hashAt(job.from - 1);
    const firstPrev: string | null = job.prev ?? (startPrev ? hexOfStored(startPrev) : null);
    let hasPrev = startPrev !== null && startPrev.length === 32;
    if (hasPrev) startPrev!.copy(prev);
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
        // Hashes stay bytes in scratch buffers and 'binary' strings: nothing is allocated per row but short strings.
        const seq = Number(a[0]);
        if (seq !== expected) {
          problem = { code: seq > expected ? 'missing_event' : 'out_of_order', seq: expected, found: seq };
          break outer;
        }
        const digits = hexDigitsOf(a[HASH], form);
        if (digits === null || digits.length !== 64 || cur.write(digits, 0, 'hex') !== 32 || !hasPrev) {
          problem = { code: 'hash_mismatch', seq };
          break outer;
        }
        const digest = hasher.hashText(prev, a, form, 'binary');
        if (digest === null || !sameBytes(digest, cur)) {
          // The generic path decides on the row as stored bytes, read again (rows stored before the JSON columns were
          // canonical, and tampered values); it must agree on the stored hash too.
          const b = await reader.rowAt(seq);
          const stored = b === null ? null : asBuffer(b[HASH]);
          if (b === null || stored === null || !stored.equals(cur) || !chainOk(b, prev, stored)) {
            problem = { code: 'hash_mismatch', seq };
            break outer;
          }
        }
        // RFC 6962 2.1: leaf hash = SHA-256(0x00 || event hash bytes).
        cur.copy(leafIn, 1);
        const at = (expected - job.from) * 32;
        leaves.write(oneShotHash('sha256', leafIn, 'binary'), at, 'latin1');
        compact.append(leaves, at);
        if (wanted.has(expected)) snapshots.push([expected, compact.hashes()]);
        [prev, cur] = [cur, prev];
        hasPrev = true;
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
      lastHash: count === 0 ? null : prev.toString('hex'),
      compact: compact.hashes(),
      snapshots,
      problem,
    };
    parentPort!.postMessage(out, [leaves.buffer as ArrayBuffer]);
  });
  parentPort!.postMessage({ ready: true });
};

void run().catch((e) => {
  parentPort!.postMessage({ failed: String((e as Error)?.message ?? e) });
});
