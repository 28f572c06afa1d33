import { createPublicKey } from 'node:crypto';
import type { Db } from '../store/db.js';
import type { AuditCheckpointsTable } from '../store/schema.js';
import { GENESIS_HASH } from './audit-chain.js';
import { atOfStored, hexOfStored } from './audit-columns.js';
import { eventRows, selectChainRows } from './event-rows.js';
import { readPublishedHashes, readPublishedNotes } from './checkpoint-publisher.js';
import { CHECKPOINT_EVERY_EVENTS, CHECKPOINT_EVERY_MS, checkStoredCheckpoint } from './checkpoint-service.js';
import os from 'node:os';
import { Worker } from 'node:worker_threads';
import { CompactRange, leafHashHex, MerkleError } from './merkle.js';
import type { VerifyChunk, VerifyJob, VerifySource } from './verify-worker.js';
import { openNote, openWitnessSignature, parseCheckpointText, parseVerifierKey, rawPublicKey, verifierKey } from './signed-note.js';
import {
  type Boundary,
  type CheckpointRoot,
  type Coverage,
  checkBoundary,
  createChainVerifier,
  DEFAULT_CHUNK,
  type StartPoint,
  type StoreVerifyReport,
  type VerifyProblem,
} from './audit-chain-verifier.js';
import { verifiersFrom } from './audit-export-verify.js';

// The names the rest of the code reads from here: the chain verifier and the export-file verifier live beside this file, by role.
export type { Boundary, Coverage, StartPoint, StoreVerifyReport, VerifyProblem, VerifyReport } from './audit-chain-verifier.js';
export { checkBoundary, createChainVerifier } from './audit-chain-verifier.js';
export { type ExportEvent, rowOfExportEvent, verifiersFrom, verifyExportLines } from './audit-export-verify.js';

/**
 * Verification of the whole audit log (45 CFR 164.312(c)(2); 21 CFR 11.10(e)):
 * gapless seq, every chain hash recomputed from the previous event's hash and
 * the event's content (RFC 8785), the RFC 6962 tree recomputed from the leaves
 * and compared with every signed checkpoint, and every checkpoint signature.
 * Stored Merkle nodes are never trusted here.
 */

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

const BATCH = 10_000;
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
    let outcome: { error?: unknown } | null = null;
    // Workers that have opened their reader (posted `ready`) and workers still running at all.
    const ready = new Set<Worker>();
    let live = 0;
    const settle = () => {
      if (!outcome || live > 0) return;
      if (outcome.error) reject(outcome.error);
      else resolve();
    };
    /**
     * Stops every worker, then settles once all have exited. A worker that has not said `ready` is still loading its
     * native driver (better-sqlite3 or pg): terminating a thread inside an addon's registration aborts the whole
     * process (Node's "FATAL ERROR: Error::New napi_get_last_error_info", seen in CI when a tampered log made the
     * first chunk fail at once), so such a worker is terminated only when it says `ready` or fails on its own.
     */
    const end = (e?: unknown) => {
      if (finished) return;
      finished = true;
      outcome = e ? { error: e } : {};
      for (const w of ready) void w.terminate();
      settle();
    };
    const feed = () => {
      // Bounded look-ahead keeps memory flat whatever the log size.
      if (finished) return;
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
      live++;
      w.on('exit', () => {
        live--;
        ready.delete(w);
        if (!finished) end(new Error('audit verify worker exited'));
        settle();
      });
      w.on('error', end);
      w.on('message', (m: VerifyChunk | { ready: true } | { failed: string }) => {
        if ('failed' in m) {
          // Its reader is past loading (it failed after trying): safe to stop at once.
          void w.terminate();
          return end(new Error(m.failed));
        }
        if ('ready' in m) {
          ready.add(w);
          if (finished) return void w.terminate();
        } else {
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
      jobs.push({
        index,
        from,
        to,
        snapshotsAt: roots.map((r) => r.tree_size).filter((x) => x >= from && x <= to),
        prev: from === start.size + 1 ? start.anchor : null,
      });
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
    // The next batch is read while this one is hashed (the store works on another thread or process).
    const read = (from: number) => eventRows(selectChainRows(db).where('e.seq', '>', from).orderBy('e.seq').limit(BATCH));
    let next = read(after);
    for (;;) {
      const rows = await next;
      if (rows.length === 0) break;
      next = read(Number(rows.at(-1)!.seq));
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
      if (!go) {
        await next.catch(() => undefined);
        break;
      }
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
      if (Number(r.seq) !== seq || hexOfStored(r.hash) !== published[seq - start.size - 1]) break;
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
      for (const r of await db.selectFrom('audit_events').select(['seq', 'at', 'at_text']).where('seq', 'in', rows).execute())
        out.set(Number(r.seq), atOfStored(r.at, r.at_text));
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
