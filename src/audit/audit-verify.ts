import { createPublicKey } from 'node:crypto';
import type { Db } from '../store/db.js';
import type { AuditCheckpointsTable } from '../store/schema.js';
import { type ChainedEvent, type EventRow, rowOfChained, GENESIS_HASH, recomputeRowHash } from './audit-chain.js';
import { readPublishedHashes, readPublishedNotes } from './checkpoint-publisher.js';
import { CHECKPOINT_EVERY_EVENTS, CHECKPOINT_EVERY_MS, checkStoredCheckpoint } from './checkpoint-service.js';
import os from 'node:os';
import { Worker } from 'node:worker_threads';
import { CompactRange, decompose, foldRange, leafHash, leafHashHex, MerkleError, verifyInclusion } from './merkle.js';
import type { VerifyChunk, VerifyJob, VerifySource } from './verify-worker.js';
import {
  type NoteVerifier,
  openNote,
  openWitnessSignature,
  parseCheckpointText,
  parseVerifierKey,
  rawPublicKey,
  verifierKey,
} from './signed-note.js';

/**
 * Verification of the whole audit log (45 CFR 164.312(c)(2); 21 CFR 11.10(e)):
 * gapless seq, every prev_hash link, every chain hash recomputed from the
 * event's content (RFC 8785), the RFC 6962 tree recomputed from the leaves
 * and compared with every signed checkpoint, and every checkpoint signature.
 * Stored Merkle nodes are never trusted here.
 */

export type VerifyProblem = { code: string; message: string; seq?: number; tree_size?: number };

export type VerifyReport = {
  ok: boolean;
  source: 'store' | 'file';
  events_checked: number;
  first_seq: number | null;
  last_seq: number;
  tree_size: number;
  root_hash: string;
  purged_through: number;
  checkpoints: { total: number; roots_checked: number; signatures_checked: number; before_retention: number };
  first_bad_seq: number | null;
  problems: VerifyProblem[];
  /** Threads that read and rehashed the events (1: this one). */
  threads: number;
  /** What the check could not rule out (store verification only): `ok` stays true, the CLI exits 3. */
  warnings?: VerifyProblem[];
  coverage?: Coverage;
};

export type StoreVerifyReport = VerifyReport & { warnings: VerifyProblem[]; coverage: Coverage };

/**
 * How much of the log signed checkpoints vouch for. Events after
 * `signed_through` are covered by no signed checkpoint: they could be cut or
 * rewritten without a trace unless a later checkpoint is kept outside the store.
 */
export type Coverage = {
  signed_through: number;
  unsigned_events: number;
  oldest_unsigned_at: string | null;
  newest_checkpoint_at: string | null;
  cadence: { every_events: number; every_ms: number };
  /** Checkpoints kept outside the store (given notes, URLs, the published directory). */
  external: { given: number; checked: number; newest_size: number | null; key_pinned: boolean; published_dir: string | null };
};

/** Checkpoints kept outside the store to check it against (CONTRACT: `audit verify --checkpoint FILE`). */
export type ExternalCheckpoints = {
  /** Signed notes given by the operator (files, URLs, a witness's cosigned note), already read. */
  notes?: { source: string; text: string }[];
  /** The directory checkpoints are published to (checkpoint-publisher.ts); missing is fine. */
  dir?: string | null;
  /** Pins the log's key (C2SP verifier key or JWKS) instead of trusting the keys in the store. */
  key?: string;
  /** C2SP verifier keys of witnesses: every given note must carry a cosignature by each. */
  witnessKeys?: string[];
};

/** The scheduler ticks every 10 s at most; a minute of slack keeps a busy or briefly stopped server from warning. */
const CADENCE_GRACE_MS = 60_000;

/** Where the verified log starts: after a purge or an export's prefix, else the genesis. */
export type StartPoint = { size: number; compact: Buffer[]; anchor: string };

export type Boundary = { size: number; compact_range: string[]; anchor_hash: string; anchor_proof: string[] };

/** A root to check the log against; `source` names a checkpoint kept outside the store (a file, URL or published note). */
type CheckpointRoot = { tree_size: number; root_hash: string; source?: string };

const mismatch = (cp: CheckpointRoot, from: number): VerifyProblem => ({
  code: cp.source ? 'external_mismatch' : 'checkpoint_mismatch',
  tree_size: cp.tree_size,
  message: `the events ${from}..${cp.tree_size} differ from what the checkpoint at size ${cp.tree_size}${cp.source ? ` kept outside the store (${cp.source})` : ''} signed`,
});

/** Streaming verifier: O(log n) memory, one pass. */
export const createChainVerifier = (start: StartPoint, checkpoints: CheckpointRoot[], chunk = DEFAULT_CHUNK) => {
  const problems: VerifyProblem[] = [];
  let firstBad: number | null = null;
  const fail = (p: VerifyProblem, bad: number | null) => {
    problems.push(p);
    if (bad !== null && (firstBad === null || bad < firstBad)) firstBad = bad;
  };
  const compact = new CompactRange(start.size, start.compact);
  const pending = checkpoints.filter((c) => c.tree_size > start.size).sort((a, b) => a.tree_size - b.tree_size);
  let lastGood = start.size;
  let prev = start.anchor;
  let expected = start.size + 1;
  let checked = 0;
  let rootsChecked = 0;
  let firstSeq: number | null = null;
  let stopped = false;

  for (const atStart of start.size > 0 ? checkpoints.filter((c) => c.tree_size === start.size) : []) {
    if (!atStart.source) rootsChecked++;
    if (!stopped && compact.root().toString('hex') !== atStart.root_hash) {
      fail(
        {
          code: 'boundary_mismatch',
          tree_size: start.size,
          message: `the retained log does not start from the checkpoint at size ${start.size}`,
        },
        start.size + 1,
      );
      stopped = true;
    }
  }

  const checkRoots = () => {
    while (pending[0] && pending[0].tree_size === compact.size) {
      const cp = pending.shift()!;
      if (!cp.source) rootsChecked++;
      if (compact.root().toString('hex') !== cp.root_hash) {
        fail(mismatch(cp, lastGood + 1), lastGood + 1);
        stopped = true;
        return;
      }
      lastGood = cp.tree_size;
    }
  };

  /** Feeds the next row; returns false once a problem stops the walk. */
  const push = (r: EventRow): boolean => {
    if (stopped) return false;
    const seq = Number(r.seq);
    firstSeq ??= seq;
    if (seq !== expected) {
      fail(
        { code: seq > expected ? 'missing_event' : 'out_of_order', seq: expected, message: `expected seq ${expected}, found ${seq}` },
        expected,
      );
      stopped = true;
      return false;
    }
    if (r.prev_hash !== prev) {
      fail({ code: 'broken_link', seq, message: `prev_hash of seq ${seq} is not the hash of seq ${seq - 1}` }, seq);
      stopped = true;
      return false;
    }
    const h = recomputeRowHash(r, prev);
    if (h !== r.hash || !/^[0-9a-f]{64}$/.test(r.hash)) {
      fail({ code: 'hash_mismatch', seq, message: `the content of seq ${seq} does not match its hash` }, seq);
      stopped = true;
      return false;
    }
    compact.append(leafHashHex(r.hash));
    prev = r.hash;
    expected++;
    checked++;
    checkRoots();
    return !stopped;
  };

  /**
   * Feeds a range already checked by a worker (verify-worker.ts): its rows are
   * gapless, linked and rehashed; here it is linked to the previous range and
   * its subtrees join the tree. Returns false once a problem stops the walk.
   */
  const pushChunk = (c: VerifyChunk): boolean => {
    if (stopped) return false;
    if (c.count > 0) {
      firstSeq ??= c.from;
      if (c.firstPrev !== prev) {
        fail({ code: 'broken_link', seq: c.from, message: `prev_hash of seq ${c.from} is not the hash of seq ${c.from - 1}` }, c.from);
        stopped = true;
        return false;
      }
    }
    const aligned = c.problem === null && compact.size === c.from - 1 && compact.size % chunk === 0;
    if (aligned) {
      // Roots of checkpoints inside the range: our right edge, then the range's own snapshot.
      const base = [...compact.hashes];
      const snaps = new Map(c.snapshots);
      while (pending[0] && pending[0].tree_size < c.from + c.count) {
        const cp = pending.shift()!;
        if (!cp.source) rootsChecked++;
        const local = (snaps.get(cp.tree_size) ?? []).map((u) => Buffer.from(u.buffer, u.byteOffset, u.byteLength));
        if (foldRange([...base, ...local]).toString('hex') !== cp.root_hash) {
          fail(mismatch(cp, lastGood + 1), lastGood + 1);
          stopped = true;
          return false;
        }
        lastGood = cp.tree_size;
      }
      const levels = decompose(0, c.count);
      for (const [i, u] of c.compact.entries()) compact.appendNode(levels[i]!.level, Buffer.from(u.buffer, u.byteOffset, u.byteLength));
    } else {
      const leaves = Buffer.from(c.leaves.buffer, c.leaves.byteOffset, c.leaves.byteLength);
      for (let i = 0; i < c.count; i++) {
        compact.append(leaves.subarray(i * 32, i * 32 + 32));
        checkRoots();
        if (stopped) return false;
      }
    }
    expected += c.count;
    checked += c.count;
    if (c.lastHash !== null) prev = c.lastHash;
    checkRoots();
    if (stopped) return false;
    if (c.problem && c.problem.code !== 'end') {
      const p = c.problem;
      const message =
        p.code === 'missing_event' || p.code === 'out_of_order'
          ? `expected seq ${p.seq}, found ${p.found}`
          : p.code === 'broken_link'
            ? `prev_hash of seq ${p.seq} is not the hash of seq ${p.seq - 1}`
            : `the content of seq ${p.seq} does not match its hash`;
      fail({ code: p.code, seq: p.seq, message }, p.seq);
      stopped = true;
    }
    return !stopped && c.problem === null;
  };

  /** Ends the walk: `head` is where the log claims to end (audit_head, or the export's last checkpoint). */
  const finish = (head: number | null) => {
    const last = expected - 1;
    if (!stopped) {
      if (head !== null && last < head) {
        fail({ code: 'truncated', seq: last + 1, message: `the log ends at seq ${last} but its head is ${head}` }, last + 1);
      } else if (pending[0]) {
        const cp = pending[0];
        fail(
          {
            code: 'truncated',
            seq: last + 1,
            tree_size: cp.tree_size,
            message: `a checkpoint${cp.source ? ` kept outside the store (${cp.source})` : ''} signed ${cp.tree_size} events but the log ends at seq ${last}`,
          },
          last + 1,
        );
      }
    }
    return {
      problems,
      firstBad: firstBad as number | null,
      /** The largest checkpoint size the log was found to match. */
      lastGood,
      checked,
      firstSeq,
      last,
      rootsChecked,
      treeSize: compact.size,
      root: compact.root().toString('hex'),
    };
  };

  const stop = (p: VerifyProblem, bad: number | null) => {
    fail(p, bad);
    stopped = true;
  };
  return { push, pushChunk, finish, fail: stop };
};

/** Checks a purge or export boundary: its anchor is the last leaf of the tree its compact range forms. */
export const checkBoundary = (b: Boundary): StartPoint => {
  const compact = b.compact_range.map((h) => Buffer.from(h, 'hex'));
  if (decompose(0, b.size).length !== compact.length) throw new MerkleError('boundary compact range does not match its size');
  if (b.size === 0) {
    if (b.anchor_hash !== GENESIS_HASH) throw new MerkleError('a log from the start anchors on the genesis hash');
    return { size: 0, compact: [], anchor: GENESIS_HASH };
  }
  const root = new CompactRange(b.size, compact).root();
  verifyInclusion(
    b.size - 1,
    b.size,
    leafHash(Buffer.from(b.anchor_hash, 'hex')),
    b.anchor_proof.map((h) => Buffer.from(h, 'hex')),
    root,
  );
  return { size: b.size, compact, anchor: b.anchor_hash };
};

const BATCH = 10_000;
/** Worker ranges are aligned on 2^16 leaves, so each one is a complete subtree of the whole tree. */
const DEFAULT_CHUNK = 2 ** 16;

/**
 * Runs `jobs` on worker threads and hands their results to `onChunk` in job
 * order; stops early when it returns false. Rejects if a worker fails.
 */
const runPool = (source: VerifySource, jobs: VerifyJob[], onChunk: (c: VerifyChunk) => boolean): Promise<void> =>
  new Promise((resolve, reject) => {
    // Dev and tests run the TypeScript sources through tsx; the build runs .js.
    const isTs = import.meta.url.endsWith('.ts');
    const url = new URL(isTs ? './verify-worker.ts' : './verify-worker.js', import.meta.url);
    const n = Math.max(1, Math.min(os.availableParallelism(), 4, jobs.length));
    const workers: Worker[] = [];
    const results = new Map<number, VerifyChunk>();
    const idle: Worker[] = [];
    let nextJob = 0;
    let nextDone = 0;
    let finished = false;
    const end = (e?: unknown) => {
      if (finished) return;
      finished = true;
      for (const w of workers) void w.terminate();
      if (e) reject(e);
      else resolve();
    };
    const feed = () => {
      // Bounded look-ahead keeps memory flat whatever the log size.
      while (idle.length && nextJob < jobs.length && nextJob - nextDone < n * 2) idle.pop()!.postMessage(jobs[nextJob++]);
    };
    for (let i = 0; i < n; i++) {
      // Node 20 does not apply --import loaders to a worker's entry module, so a .ts entry registers tsx first.
      const w = isTs
        ? new Worker(`import('tsx/esm/api').then((m) => { m.register(); return import(${JSON.stringify(url.href)}); })`, {
            eval: true,
            workerData: source,
          })
        : new Worker(url, { workerData: source });
      workers.push(w);
      w.on('error', end);
      w.on('message', (m: VerifyChunk | { ready: true } | { failed: string }) => {
        if ('failed' in m) return end(new Error(m.failed));
        if (!('ready' in m)) {
          results.set(m.index, m);
          while (!finished && results.has(nextDone)) {
            const c = results.get(nextDone)!;
            results.delete(nextDone);
            nextDone++;
            if (!onChunk(c) || nextDone === jobs.length) return end();
          }
        }
        idle.push(w);
        feed();
      });
    }
  });

type KeyLookup = (kid: string) => Promise<{ public_key: string } | undefined>;

/**
 * Verifies the store. Never throws for tampering: the report says where.
 * Reads every event once in seq order (keyset batches).
 */
export const verifyStore = async ({
  db,
  keyByKid,
  onProgress,
  source,
  parallelFrom = 100_000,
  chunkSize = DEFAULT_CHUNK,
  external,
  allKeys,
  now,
  cadence,
}: {
  db: Db;
  keyByKid: KeyLookup;
  onProgress?: (done: number, total: number) => void;
  /** Where worker threads read from; without it (or below `parallelFrom` events) one thread verifies. */
  source?: VerifySource;
  parallelFrom?: number;
  /** Events per worker range, a power of two (tests use small ones). */
  chunkSize?: number;
  external?: ExternalCheckpoints;
  /** Every audit key, retired ones too (external notes may be signed by any); default: the keys of stored checkpoints. */
  allKeys?: () => Promise<{ public_key: string }[]>;
  now?: Date;
  cadence?: { everyEvents: number; everyMs: number };
}): Promise<StoreVerifyReport> => {
  const head = Number((await db.selectFrom('audit_head').select('seq').where('id', '=', 1).executeTakeFirstOrThrow()).seq);
  const checkpoints = (await db.selectFrom('audit_checkpoints').selectAll().orderBy('tree_size').execute()) as AuditCheckpointsTable[];
  const storedOrigin =
    (await db.selectFrom('settings').select('value').where('key', '=', 'audit_origin').executeTakeFirst())?.value ??
    checkpoints[0]?.origin ??
    null;
  const publicKeys = allKeys
    ? (await allKeys()).map((k) => k.public_key)
    : (await Promise.all([...new Set(checkpoints.map((c) => c.key_id))].map(keyByKid)))
        .filter((k) => k !== undefined)
        .map((k) => k.public_key);
  const ext = loadExternal(external ?? {}, storedOrigin, publicKeys);
  const purge = await db.selectFrom('audit_purges').selectAll().orderBy('through_seq', 'desc').limit(1).executeTakeFirst();
  const early: VerifyProblem[] = [];
  let start: StartPoint = { size: 0, compact: [], anchor: GENESIS_HASH };
  if (purge) {
    try {
      start = checkBoundary(JSON.parse(purge.boundary) as Boundary);
      if (start.size !== Number(purge.through_seq)) throw new MerkleError('purge boundary size differs from its record');
      if (!checkpoints.some((c) => Number(c.tree_size) === start.size)) throw new MerkleError('no signed checkpoint at the purge boundary');
    } catch (e) {
      early.push({ code: 'boundary_invalid', message: `retention purge boundary does not verify: ${(e as Error).message}` });
      start = { size: Number(purge.through_seq), compact: [], anchor: '' };
    }
  }

  let signatures = 0;
  const sigProblems: VerifyProblem[] = [];
  for (const cp of checkpoints) {
    const key = await keyByKid(cp.key_id);
    try {
      if (!key) throw new Error('signed by an unknown key');
      checkStoredCheckpoint(cp, key.public_key);
      signatures++;
    } catch (e) {
      sigProblems.push({
        code: 'bad_checkpoint',
        tree_size: Number(cp.tree_size),
        message: `checkpoint at size ${cp.tree_size}: ${(e as Error).message}`,
      });
    }
  }

  const roots: CheckpointRoot[] = [...checkpoints.map((c) => ({ tree_size: Number(c.tree_size), root_hash: c.root_hash })), ...ext.roots];
  // Checkpoint rows are append-only: a signed checkpoint kept outside with no row in the store was deleted.
  const stored = new Set(checkpoints.map((c) => Number(c.tree_size)));
  const missingRows = [...new Map(ext.roots.filter((r) => !stored.has(r.tree_size)).map((r) => [r.tree_size, r])).values()].map(
    (r): VerifyProblem => ({
      code: 'checkpoint_missing',
      tree_size: r.tree_size,
      message: `the store has no checkpoint at size ${r.tree_size}, though one was signed (${r.source}): checkpoints were deleted`,
    }),
  );
  const fresh = () =>
    createChainVerifier(early.length ? { size: start.size, compact: [], anchor: '' } : start, early.length ? [] : roots, chunkSize);
  let v = fresh();
  let after = start.size;
  let done = 0;
  let parallelDone = false;
  let threads = 1;
  if (early.length === 0 && source && head - start.size >= parallelFrom) {
    const jobs: VerifyJob[] = [];
    for (let from = start.size + 1, index = 0; from <= head; index++) {
      const to = Math.min(head, (Math.floor((from - 1) / chunkSize) + 1) * chunkSize);
      jobs.push({ index, from, to, snapshotsAt: roots.map((r) => r.tree_size).filter((x) => x >= from && x <= to) });
      from = to + 1;
    }
    let endAt: number | null = null;
    try {
      await runPool(source, jobs, (c) => {
        if (c.problem?.code === 'end') endAt = c.problem.seq;
        const go = v.pushChunk(c);
        done += c.count;
        onProgress?.(done, head - start.size);
        return go;
      });
      parallelDone = true;
      threads = Math.max(1, Math.min(os.availableParallelism(), 4, jobs.length));
      if (endAt !== null) {
        // Rows ran out inside a range: a gap if later rows exist, else a cut tail (finish reports it).
        const later = await db.selectFrom('audit_events').select('seq').where('seq', '>', endAt).orderBy('seq').limit(1).executeTakeFirst();
        if (later) v.fail({ code: 'missing_event', seq: endAt, message: `expected seq ${endAt}, found ${later.seq}` }, endAt);
      }
    } catch {
      // Workers unavailable (or one failed): verify on this thread instead.
      v = fresh();
      done = 0;
    }
  }
  if (early.length === 0 && !parallelDone) {
    for (;;) {
      const rows = (await db
        .selectFrom('audit_events')
        .selectAll()
        .where('seq', '>', after)
        .orderBy('seq')
        .limit(BATCH)
        .execute()) as EventRow[];
      if (rows.length === 0) break;
      let go = true;
      for (const r of rows) {
        if (!v.push(r)) {
          go = false;
          break;
        }
      }
      done += rows.length;
      onProgress?.(done, head - start.size);
      after = Number(rows.at(-1)!.seq);
      if (!go) break;
    }
  }
  // Events below the purge boundary that survived it would be a second, unchained history.
  const below = await db.selectFrom('audit_events').select('seq').where('seq', '<=', start.size).limit(1).executeTakeFirst();
  if (below) early.push({ code: 'unexpected_event', seq: Number(below.seq), message: `seq ${below.seq} lies below the purge boundary` });
  const f = v.finish(head);
  // The Merkle indexer never indexes past the committed head, so an index beyond the log's end is a cut tail.
  const indexed = Number((await db.selectFrom('audit_tree_state').select('size').where('id', '=', 1).executeTakeFirst())?.size ?? 0);
  if (early.length === 0 && f.problems.length === 0 && indexed > f.last) {
    f.problems.push({
      code: 'truncated',
      seq: f.last + 1,
      message: `the Merkle index covers ${indexed} events but the log ends at seq ${f.last}`,
    });
    f.firstBad = f.last + 1;
  }
  await nameFirstEdit(db, f, roots, start, external?.dir ?? null);
  const problems = [...early, ...f.problems, ...sigProblems, ...ext.problems, ...missingRows];
  const firstBad = [f.firstBad, ...early.map((p) => p.seq ?? null)].filter((x): x is number => x !== null);
  const coverage = await coverageOf(db, {
    f,
    start,
    checkpoints,
    ext,
    external: external ?? {},
    now: now ?? new Date(),
    cadence: cadence ?? { everyEvents: CHECKPOINT_EVERY_EVENTS, everyMs: CHECKPOINT_EVERY_MS },
    walkClean: early.length === 0 && f.problems.length === 0,
  });
  return {
    ok: problems.length === 0,
    source: 'store',
    events_checked: f.checked,
    first_seq: f.firstSeq,
    last_seq: f.last,
    tree_size: f.treeSize,
    root_hash: f.root,
    purged_through: start.size,
    checkpoints: {
      total: checkpoints.length,
      roots_checked: f.rootsChecked,
      signatures_checked: signatures,
      before_retention: checkpoints.filter((c) => Number(c.tree_size) < start.size).length,
    },
    first_bad_seq: firstBad.length ? Math.min(...firstBad) : null,
    problems,
    threads,
    warnings: coverage.warnings,
    coverage: coverage.coverage,
  };
};

type Walk = ReturnType<ReturnType<typeof createChainVerifier>['finish']>;

/**
 * Reads, checks and opens the external notes. A note that does not verify is
 * a problem, not something to skip: the store's keys may have been replaced.
 */
const loadExternal = (external: ExternalCheckpoints, storedOrigin: string | null, publicKeys: string[]) => {
  const given = external.notes ?? [];
  const published = external.dir ? readPublishedNotes(external.dir) : [];
  const roots: CheckpointRoot[] = [];
  const problems: VerifyProblem[] = [];
  const all = [...given.map((n) => ({ ...n, witnessed: true })), ...published.map((n) => ({ ...n, witnessed: false }))];
  for (const n of all) {
    try {
      // The note names its log on its first line; the key ID binds that name (C2SP signed-note).
      const origin = n.text.slice(0, n.text.indexOf('\n'));
      if (storedOrigin !== null && origin !== storedOrigin) throw new Error(`it is a checkpoint of another log (${origin || 'no origin'})`);
      const verifiers = external.key
        ? verifiersFrom(external.key, origin)
        : publicKeys.map((k) => parseVerifierKey(verifierKey(origin, rawPublicKey(createPublicKey(k)))));
      let text: string | null = null;
      for (const ver of verifiers) {
        try {
          text = openNote(n.text, ver).text;
          break;
        } catch {
          /* try the next key */
        }
      }
      if (text === null)
        throw new Error(external.key ? 'it is not signed by the given key' : "it is not signed by any of the store's audit keys");
      if (n.witnessed) for (const w of external.witnessKeys ?? []) openWitnessSignature(n.text, w);
      const cp = parseCheckpointText(text);
      roots.push({ tree_size: cp.size, root_hash: cp.root.toString('hex'), source: n.source });
    } catch (e) {
      problems.push({ code: 'external_invalid', message: `checkpoint ${n.source} does not verify: ${(e as Error).message}` });
    }
  }
  return { roots, problems, given: all.length, keyPinned: !!external.key };
};

/**
 * After a rewrite that recomputed the chain, the first mismatching checkpoint
 * only bounds the damage (from the last good checkpoint on). The published
 * event hashes, once they fold to that checkpoint's signed root (RFC 6962
 * 2.1), name the first event that differs.
 */
const nameFirstEdit = async (db: Db, f: Walk, roots: CheckpointRoot[], start: StartPoint, dir: string | null) => {
  const p = f.problems.find((x) => x.code === 'checkpoint_mismatch' || x.code === 'external_mismatch');
  if (!p || !dir || p.tree_size === undefined || start.anchor === '') return;
  const size = p.tree_size;
  const published = readPublishedHashes(dir, start.size + 1, size);
  if (!published) return;
  const tree = new CompactRange(start.size, start.compact);
  for (const h of published) tree.append(leafHashHex(h));
  const root = tree.root().toString('hex');
  if (!roots.some((r) => r.tree_size === size && r.root_hash === root)) return;
  let seq = f.lastGood + 1;
  while (seq <= size) {
    const rows = await db
      .selectFrom('audit_events')
      .select(['seq', 'hash'])
      .where('seq', '>=', seq)
      .where('seq', '<=', size)
      .orderBy('seq')
      .limit(BATCH)
      .execute();
    for (const r of rows) {
      if (Number(r.seq) !== seq || r.hash !== published[seq - start.size - 1]) break;
      seq++;
    }
    if (rows.length === 0 || seq <= Number(rows.at(-1)!.seq)) break;
  }
  if (seq > size) return;
  p.seq = seq;
  p.message += `; seq ${seq} is the first event that differs from the published hashes the checkpoint signed`;
  f.firstBad = seq;
};

/** Coverage by signed checkpoints and the cadence warnings (checkpoint-service.ts signs every 1,000 events or 5 minutes). */
const coverageOf = async (
  db: Db,
  o: {
    f: Walk;
    start: StartPoint;
    checkpoints: AuditCheckpointsTable[];
    ext: ReturnType<typeof loadExternal>;
    external: ExternalCheckpoints;
    now: Date;
    cadence: { everyEvents: number; everyMs: number };
    walkClean: boolean;
  },
): Promise<{ coverage: Coverage; warnings: VerifyProblem[] }> => {
  const { f, start, checkpoints, ext, now, cadence } = o;
  const warnings: VerifyProblem[] = [];
  const signedThrough = f.lastGood;
  const last = Math.max(f.last, start.size);
  const unsigned = o.walkClean ? last - signedThrough : 0;
  const atOf = async (seqs: number[]) => {
    const out = new Map<number, string>();
    for (let i = 0; i < seqs.length; i += 500) {
      const rows = seqs.slice(i, i + 500);
      if (rows.length === 0) continue;
      for (const r of await db.selectFrom('audit_events').select(['seq', 'at']).where('seq', 'in', rows).execute())
        out.set(Number(r.seq), r.at);
    }
    return out;
  };
  const kept = checkpoints.filter((c) => Number(c.tree_size) > start.size && Number(c.tree_size) <= last);
  const firstAfter = await atOf(
    [...new Set([start.size + 1, signedThrough + 1, ...kept.map((c) => Number(c.tree_size) + 1)])].filter((s) => s <= last),
  );
  const oldestUnsigned = unsigned > 0 ? (firstAfter.get(signedThrough + 1) ?? null) : null;
  const late = (waited: number, events: number) =>
    waited > cadence.everyMs + CADENCE_GRACE_MS || (events > cadence.everyEvents && waited > CADENCE_GRACE_MS);
  if (oldestUnsigned !== null && late(now.getTime() - Date.parse(oldestUnsigned), unsigned)) {
    warnings.push({
      code: 'checkpoint_overdue',
      seq: signedThrough + 1,
      message: `the ${unsigned} newest event(s), seq ${signedThrough + 1}..${last}, are covered by no signed checkpoint, though one is due every ${cadence.everyEvents} events or ${cadence.everyMs / 60_000} minutes: checkpoints were deleted or none was signed`,
    });
  }
  if (o.walkClean) {
    // Between two stored checkpoints: the first event after the older one waited longer than the cadence for the newer one.
    let prev = start.size;
    let gaps = 0;
    for (const c of kept) {
      const size = Number(c.tree_size);
      const firstAt = firstAfter.get(prev + 1);
      if (size > prev && firstAt && late(Date.parse(c.at) - Date.parse(firstAt), size - prev)) {
        if (++gaps <= 5) {
          warnings.push({
            code: 'checkpoint_gap',
            seq: prev + 1,
            tree_size: size,
            message: `events ${prev + 1}..${size} waited longer than the checkpoint cadence for a signed checkpoint: checkpoints between them are missing`,
          });
        }
      }
      prev = Math.max(prev, size);
    }
    if (gaps > 5) warnings.push({ code: 'checkpoint_gap', message: `${gaps - 5} more gap(s) in the checkpoint cadence` });
  }
  if (ext.roots.length === 0 && last > start.size) {
    warnings.push({
      code: 'no_external_checkpoint',
      message:
        'no checkpoint kept outside the store was checked, so a tail cut or rewritten together with its checkpoints cannot be ruled out: pass --checkpoint FILE|URL or keep the published checkpoint directory',
    });
  }
  const newest = checkpoints.at(-1);
  return {
    warnings,
    coverage: {
      signed_through: signedThrough,
      unsigned_events: unsigned,
      oldest_unsigned_at: oldestUnsigned,
      newest_checkpoint_at: newest?.at ?? null,
      cadence: { every_events: cadence.everyEvents, every_ms: cadence.everyMs },
      external: {
        given: ext.given,
        checked: ext.roots.length,
        newest_size: ext.roots.length ? Math.max(...ext.roots.map((r) => r.tree_size)) : null,
        key_pinned: ext.keyPinned,
        published_dir: o.external.dir ?? null,
      },
    },
  };
};

/** One line of an export file (JSONL), see audit-export.ts. */
export type ExportEvent = ChainedEvent & { type: 'event'; prev_hash: string; hash: string };

export const rowOfExportEvent = (e: ExportEvent): EventRow => rowOfChained(e, e.prev_hash, e.hash);

/** Accepts a C2SP verifier key string or a JWKS document (its Ed25519 keys), for a given origin. */
export const verifiersFrom = (keyText: string, origin: string): NoteVerifier[] => {
  const t = keyText.trim();
  if (t.startsWith('{')) {
    const jwks = JSON.parse(t) as { keys?: { kty?: string; crv?: string; x?: string }[] };
    return (jwks.keys ?? [])
      .filter((k) => k.kty === 'OKP' && k.crv === 'Ed25519' && k.x)
      .map((k) =>
        parseVerifierKey(
          verifierKey(origin, rawPublicKey(createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: k.x! }, format: 'jwk' }))),
        ),
      );
  }
  return [parseVerifierKey(t)];
};

/**
 * Verifies an export file with nothing but its lines and a public key
 * (`key`: verifier key string or JWKS). Without `key`, the key named in the
 * file is used and the report says so (a forger could replace both).
 * `open` is called twice: once for the header and checkpoints, once to
 * stream the events, so memory stays O(log n).
 */
export const verifyExportLines = async (
  open: () => AsyncIterable<string> | Iterable<string>,
  key?: string,
): Promise<VerifyReport & { key_pinned: boolean }> => {
  type Header = { format?: string; origin?: string; verifier_key?: string; prefix?: Boundary };
  let header: Header | null = null;
  const problems: VerifyProblem[] = [];
  const checkpoints: { tree_size: number; root_hash: string; note: string }[] = [];
  let start: StartPoint = { size: 0, compact: [], anchor: GENESIS_HASH };
  let lineNo = 0;
  for await (const raw of open()) {
    lineNo++;
    // Cheap pre-filter: events are most lines and are parsed in the second pass.
    if (!raw.startsWith('{"type":"header"') && !raw.startsWith('{"type":"checkpoint"')) continue;
    try {
      const obj = JSON.parse(raw) as { type: string };
      if (obj.type === 'header' && !header) header = obj as Header;
      else if (obj.type === 'checkpoint') checkpoints.push(obj as unknown as (typeof checkpoints)[number]);
    } catch {
      problems.push({ code: 'malformed_line', message: `line ${lineNo} is not JSON` });
    }
  }
  if (!header?.prefix) problems.push({ code: 'no_header', message: 'the file has no header line' });
  else {
    try {
      start = checkBoundary(header.prefix);
    } catch (e) {
      problems.push({ code: 'boundary_invalid', message: `export prefix does not verify: ${(e as Error).message}` });
    }
  }
  const origin = header?.origin ?? '';
  let verifiers: NoteVerifier[] = [];
  try {
    verifiers = key ? verifiersFrom(key, origin) : header?.verifier_key ? [parseVerifierKey(header.verifier_key)] : [];
  } catch (e) {
    problems.push({ code: 'bad_key', message: `public key: ${(e as Error).message}` });
  }
  let signatures = 0;
  const good: CheckpointRoot[] = [];
  for (const cp of checkpoints) {
    let okSig = false;
    for (const ver of verifiers) {
      try {
        const { text } = openNote(cp.note, ver);
        const body = parseCheckpointText(text);
        if (body.origin !== origin || body.size !== cp.tree_size || body.root.toString('hex') !== cp.root_hash)
          throw new Error('checkpoint fields differ from the signed note');
        okSig = true;
        break;
      } catch {
        /* try the next key */
      }
    }
    if (okSig) {
      signatures++;
      good.push({ tree_size: cp.tree_size, root_hash: cp.root_hash });
    } else
      problems.push({
        code: 'bad_checkpoint',
        tree_size: cp.tree_size,
        message: `checkpoint at size ${cp.tree_size} is not signed by the given key`,
      });
  }
  const v = createChainVerifier(start, good);
  if (problems.length === 0) {
    lineNo = 0;
    for await (const raw of open()) {
      lineNo++;
      if (!raw.startsWith('{"type":"event"')) continue;
      let row: EventRow;
      try {
        row = rowOfExportEvent(JSON.parse(raw) as ExportEvent);
      } catch {
        v.fail({ code: 'malformed_line', message: `line ${lineNo} is not an event` }, null);
        break;
      }
      if (!v.push(row)) break;
    }
  }
  const lastSigned = good.length ? Math.max(...good.map((c) => c.tree_size)) : 0;
  const f = v.finish(lastSigned);
  if (f.problems.length === 0 && problems.length === 0 && lastSigned !== f.last) {
    problems.push({ code: 'unsigned_tail', seq: lastSigned + 1, message: `no signed checkpoint covers seq ${lastSigned + 1}..${f.last}` });
  }
  const all = [...problems, ...f.problems];
  const bad = [f.firstBad, ...problems.map((p) => p.seq ?? null)].filter((x): x is number => x !== null);
  return {
    ok: all.length === 0,
    source: 'file',
    key_pinned: !!key,
    events_checked: f.checked,
    first_seq: f.firstSeq,
    last_seq: f.last,
    tree_size: f.treeSize,
    root_hash: f.root,
    purged_through: start.size,
    checkpoints: { total: checkpoints.length, roots_checked: f.rootsChecked, signatures_checked: signatures, before_retention: 0 },
    first_bad_seq: bad.length ? Math.min(...bad) : null,
    problems: all,
    threads: 1,
  };
};
