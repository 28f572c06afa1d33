import { sql } from 'kysely';
import { AppError } from '../kernel/errors.js';
import { batchInsert, paddedIn } from '../store/batch.js';
import type { Db, Dialect, Executor } from '../store/db.js';
import { type EventRow, GENESIS_HASH, recomputeRowHash } from './audit-chain.js';
import { hexOfStored } from './audit-columns.js';
import { eventRows, selectChainRows, selectEventRows } from './event-rows.js';
import type { IntegratedRun } from './integrator.js';
import {
  CompactRange,
  consistencyRanges,
  decompose,
  foldRange,
  inclusionRanges,
  leafHash,
  leafHashHex,
  type NodeId,
  nodeKey,
  nodesFor,
  rangeHash,
  type Range,
  rootOfLeaves,
} from './merkle.js';

/**
 * Stored Merkle subtrees over the audit leaves, so that a proof at a million
 * events reads O(log n) rows instead of rehashing every leaf.
 *
 * Appends stay cheap: `record` writes no tree rows. The indexer (`catchUp`)
 * later hashes whole blocks of 2^BASE_LEVEL leaves and stores each complete
 * subtree of level >= BASE_LEVEL; nodes below that level are recomputed from
 * at most two blocks of event hashes per proof. Stored nodes are derived data:
 * `audit verify` never trusts them, and a proof built from a bad node fails
 * against the signed checkpoint.
 */
export const BASE_LEVEL = 4;
export const BLOCK = 2 ** BASE_LEVEL;
const BATCH_BLOCKS = 1024;
/** Most chain hashes `noteIntegrated` keeps ahead of the tree (64 Ki, about 8 MB); older ones are read back instead. */
const MAX_NOTED = 1 << 16;

const fromHex = (h: string) => Buffer.from(h, 'hex');
const hex = (b: Buffer) => b.toString('hex');

export const chainBroken = (seq: number) =>
  new AppError('audit_chain_broken', 500, `The audit chain does not verify at seq ${seq}; run mailward audit verify.`, {
    extra: { first_bad_seq: seq },
  });

type Deps = { db: Db; dialect: Dialect };

// A fixed set of statement shapes (power-of-two row and value counts): SQLite keeps one prepared statement per SQL text.
const insertNodes = batchInsert('audit_tree_nodes', ['level', 'idx', 'hash']);

export const createTreeStore = ({ db, dialect }: Deps) => {
  /**
   * The chain hashes this process's integrator committed and the tree has not indexed yet: one contiguous run
   * (seq `from`.., chained from `prev`). The integrator computed each of them from the committed pending row,
   * under the chain head's lock, as SHA-256(prev_hash || canonical event) (integrator.ts), and tells them only
   * after the batch's commit; so catch-up can fold them into the tree without reading the rows back and hashing
   * each again (about a third of the server's CPU per audited request was that re-read). Rows this process did not
   * chain (another process's batches, rows from before it started, a run that was cut) are read and checked as
   * before. What gets signed is then the chain the integrator computed; a row changed in the store after its
   * integration no longer matches the signed root, and `audit verify` names it (it never trusts the tree).
   */
  let noted: IntegratedRun | null = null;
  const noteIntegrated = (run: IntegratedRun): void => {
    if (run.hashes.length === 0) return;
    const last = noted ? (noted.hashes.at(-1) ?? noted.prev) : null;
    if (noted && run.from === noted.from + noted.hashes.length && run.prev === last) noted.hashes.push(...run.hashes);
    else noted = { from: run.from, prev: run.prev, hashes: [...run.hashes] };
    dropNotedThrough(noted.from - 1 + noted.hashes.length - MAX_NOTED);
  };
  /** Forgets noted hashes at or below seq `seq` (the one at `seq` becomes the run's `prev`). */
  const dropNotedThrough = (seq: number) => {
    if (!noted || seq < noted.from) return;
    const n = seq - noted.from + 1;
    if (n >= noted.hashes.length) {
      noted = null;
      return;
    }
    noted = { from: seq + 1, prev: noted.hashes[n - 1]!, hashes: noted.hashes.slice(n) };
  };
  /** The noted chain hashes of seq size+1..end and the hash they chain from, if the run covers all of them. */
  const notedRange = (size: number, end: number): { prev: string; hashes: string[] } | null => {
    if (!noted || noted.from > size + 1 || noted.from + noted.hashes.length - 1 < end) return null;
    const i = size + 1 - noted.from;
    return { prev: i === 0 ? noted.prev : noted.hashes[i - 1]!, hashes: noted.hashes.slice(i, i + end - size) };
  };

  const headSeq = async (ex: Executor = db): Promise<number> => {
    const h = await ex.selectFrom('audit_head').select('seq').where('id', '=', 1).executeTakeFirstOrThrow();
    return Number(h.seq);
  };

  /** Retention boundary: events at or below it are gone (src/audit/retention.ts). */
  const purgedThrough = async (ex: Executor = db): Promise<number> => {
    const r = await ex.selectFrom('audit_purges').select(sql<number | null>`max(through_seq)`.as('p')).executeTakeFirst();
    return Number(r?.p ?? 0);
  };

  /** Rows with seq in [from, to], in order, without prev_hash (each chains from the row before it). */
  const rows = (ex: Executor, from: number, to: number): Promise<EventRow[]> =>
    eventRows(selectChainRows(ex).where('e.seq', '>=', from).where('e.seq', '<=', to).orderBy('e.seq'));

  /** Leaf hashes of leaf indexes [lo, hi) (seq lo+1..hi). Throws if any is missing. */
  const leafHashes = async (ex: Executor, lo: number, hi: number): Promise<Buffer[]> => {
    if (hi <= lo) return [];
    const r = await ex
      .selectFrom('audit_events')
      .select(['seq', 'hash'])
      .where('seq', '>', lo)
      .where('seq', '<=', hi)
      .orderBy('seq')
      .execute();
    if (r.length !== hi - lo) {
      throw new AppError('proof_unavailable', 422, 'Events this proof needs are past retention and purged.');
    }
    return r.map((x) => leafHash(x.hash));
  };

  /**
   * Hashes new complete blocks into stored subtrees, up to the committed head.
   * Rows this process's integrator chained come from memory (noteIntegrated),
   * linked to the stored hash at the tree's edge; every other row is read and
   * its chain hash checked on the way, so nothing is ever signed over a broken
   * chain (fail closed). Several processes may run it: the state row is
   * locked, and each batch commits on its own.
   */
  const catchUp = async (): Promise<number> => {
    for (;;) {
      const done = await db.transaction().execute(async (tx) => {
        let stateQuery = tx.selectFrom('audit_tree_state').select('size').where('id', '=', 1);
        if (dialect === 'postgres') stateQuery = stateQuery.forUpdate();
        const size = Number((await stateQuery.executeTakeFirstOrThrow()).size);
        const target = Math.floor((await headSeq(tx)) / BLOCK) * BLOCK;
        if (size >= target) return { size, done: true };
        const end = Math.min(target, size + BATCH_BLOCKS * BLOCK);
        const blockLevel = await frontier(tx, size);
        const nodes: { level: number; idx: number; hash: string }[] = [];
        let leaves = new CompactRange();
        const fold = (hash: string) => {
          leaves.append(leafHashHex(hash));
          if (leaves.size === BLOCK) {
            const block = leaves.root();
            const blockIndex = blockLevel.size;
            nodes.push({ level: BASE_LEVEL, idx: blockIndex, hash: hex(block) });
            blockLevel.append(block, (n, h) => nodes.push({ level: n.level + BASE_LEVEL, idx: n.index, hash: hex(h) }));
            leaves = new CompactRange();
          }
        };
        const commit = async () => {
          await insertNodes(tx, nodes);
          await tx.updateTable('audit_tree_state').set({ size: end }).where('id', '=', 1).execute();
          return { size: end, done: end >= target };
        };
        // Chained by this process's integrator (noteIntegrated): linked to the indexed tree at `size`, then folded.
        const mine = notedRange(size, end);
        if (mine) {
          const at = size === 0 ? null : await tx.selectFrom('audit_events').select('hash').where('seq', '=', size).executeTakeFirst();
          if (size === 0 ? mine.prev === GENESIS_HASH : at !== undefined && hexOfStored(at!.hash) === mine.prev) {
            for (const h of mine.hashes) fold(h);
            return commit();
          }
        }
        const batch = await rows(tx, size, end);
        // The row at `size` (if kept) links the batch to what is already indexed.
        let prev: string | null = size === 0 ? GENESIS_HASH : null;
        let start = 0;
        if (size > 0 && batch[0] && Number(batch[0].seq) === size) {
          prev = batch[0].hash;
          start = 1;
        }
        const events = batch.slice(start);
        // Right after a retention purge the row at `size` is gone: the first row's prev_hash is the boundary's anchor.
        if (prev === null && events[0])
          prev = (await eventRows(selectEventRows(tx).where('e.seq', '=', Number(events[0].seq))))[0]!.prev_hash;
        if (events.length !== end - size) throw chainBroken(size + 1 + events.findIndex((r, i) => Number(r.seq) !== size + 1 + i));
        for (const [i, r] of events.entries()) {
          if (Number(r.seq) !== size + 1 + i) throw chainBroken(size + 1 + i);
          if (prev === null || recomputeRowHash(r, prev) !== r.hash) throw chainBroken(Number(r.seq));
          prev = r.hash;
          fold(r.hash);
        }
        return commit();
      });
      // Indexed and committed: the noted hashes up to here are not needed again (the last one links the next batch).
      dropNotedThrough(done.size);
      if (done.done) return done.size;
    }
  };

  /** The stored right edge at `size` leaves (a multiple of BLOCK), in block units. */
  const frontier = async (ex: Executor, size: number): Promise<CompactRange> => {
    const ids = decompose(0, size / BLOCK).map((n) => ({ level: n.level + BASE_LEVEL, index: n.index }));
    const got = await storedNodes(ex, ids);
    return new CompactRange(
      size / BLOCK,
      ids.map((n) => got.get(nodeKey(n))!),
    );
  };

  const storedNodes = async (ex: Executor, ids: NodeId[]): Promise<Map<string, Buffer>> => {
    const out = new Map<string, Buffer>();
    for (let i = 0; i < ids.length; i += 128) {
      const chunk = paddedIn(ids.slice(i, i + 128));
      const found = await ex
        .selectFrom('audit_tree_nodes')
        .select(['level', 'idx', 'hash'])
        .where((eb) => eb.or(chunk.map((n) => eb.and([eb('level', '=', n.level), eb('idx', '=', n.index)]))))
        .execute();
      for (const f of found) out.set(`${f.level}:${Number(f.idx)}`, fromHex(f.hash));
    }
    const missing = ids.find((n) => !out.has(nodeKey(n)));
    if (missing) throw new AppError('audit_tree_incomplete', 500, `Merkle node ${nodeKey(missing)} is missing from the store.`);
    return out;
  };

  /**
   * Resolves complete subtrees: level >= BASE_LEVEL from the store, lower
   * ones by hashing their block's leaves. The caller has run catchUp past them.
   */
  const resolve = async (ids: NodeId[]): Promise<(n: NodeId) => Buffer> => {
    const high = ids.filter((n) => n.level >= BASE_LEVEL);
    const low = ids.filter((n) => n.level < BASE_LEVEL);
    const table = await storedNodes(db, high);
    const blocks = new Map<number, NodeId[]>();
    for (const n of low) {
      const b = Math.floor((n.index * 2 ** n.level) / BLOCK);
      blocks.set(b, [...(blocks.get(b) ?? []), n]);
    }
    // One read per block: the leaves up to the furthest subtree wanted in it.
    for (const [b, wanted] of blocks) {
      const lo = b * BLOCK;
      const hi = Math.max(...wanted.map((n) => (n.index + 1) * 2 ** n.level));
      const leaves = await leafHashes(db, lo, hi);
      for (const n of wanted) {
        const start = n.index * 2 ** n.level - lo;
        table.set(nodeKey(n), rootOfLeaves(leaves.slice(start, start + 2 ** n.level)));
      }
    }
    return (n) => {
      const h = table.get(nodeKey(n));
      if (!h) throw new AppError('audit_tree_incomplete', 500, `Merkle node ${nodeKey(n)} was not resolved.`);
      return h;
    };
  };

  const hashesOf = async (ranges: Range[]): Promise<Buffer[]> => {
    const lookup = await resolve(nodesFor(ranges));
    return ranges.map((r) => rangeHash(r, lookup));
  };

  const checkSize = async (size: number) => {
    const head = await headSeq();
    if (size > head) throw new AppError('tree_size_too_large', 422, `The log holds ${head} events.`);
    // A tree of exactly BLOCK leaves is one stored level-BASE_LEVEL node: it needs the catch-up as much as a larger one.
    if (size >= BLOCK) await catchUp();
  };

  /** RFC 6962 root of the first `size` leaves. */
  const rootAt = async (size: number): Promise<Buffer> => {
    await checkSize(size);
    if (size === 0) return foldRange([]);
    const [root] = await hashesOf([[0, size]]);
    return root!;
  };

  /** The complete subtrees making up the first `size` leaves (the compact range), largest first. */
  const compactRangeAt = async (size: number): Promise<Buffer[]> => {
    await checkSize(size);
    const ids = decompose(0, size);
    const lookup = await resolve(ids);
    return ids.map(lookup);
  };

  /** RFC 6962 2.1.1 audit path of leaf `index` in the tree of `size` leaves. */
  const inclusionProof = async (index: number, size: number): Promise<Buffer[]> => {
    await checkSize(size);
    return hashesOf(inclusionRanges(index, size));
  };

  /** RFC 6962 2.1.2 consistency proof from `first` to `second` leaves. */
  const consistencyProof = async (first: number, second: number): Promise<Buffer[]> => {
    await checkSize(second);
    return hashesOf(consistencyRanges(first, second));
  };

  return { catchUp, noteIntegrated, headSeq, purgedThrough, rootAt, compactRangeAt, inclusionProof, consistencyProof };
};

export type TreeStore = ReturnType<typeof createTreeStore>;
