import { type Db, transact, type Tx } from '../store/db.js';

type Item = { work: (tx: Tx) => Promise<unknown>; resolve: (v: unknown) => void; reject: (e: unknown) => void; at: number };

export type CommitBatcherOptions = {
  maxBatch?: number;
  /**
   * How many more callers are on their way (messages being analysed and sealed that will call the batcher next).
   * While some are and the batch is not full, the batcher waits for them, at most `gatherMs` after the oldest
   * queued caller arrived: on SQLite a commit is fast, so without waiting every message took its own.
   */
  arriving?: () => number;
  gatherMs?: number;
};

/**
 * Group commit: the writes of messages that arrive while a transaction is
 * running, or while the messages behind them are still being analysed (up to
 * `gatherMs`), go together into the next one (up to `maxBatch`), so many
 * messages share one BEGIN/COMMIT (one fsync on PostgreSQL; on SQLite the
 * hot index and head pages go to the WAL once per group, not once per
 * message). Each caller's promise settles only after the transaction holding
 * its writes committed, so no message is acknowledged before it is durable.
 * If a batch fails, each of its items is retried alone: one bad message never
 * fails the others.
 *
 * Each transaction is opened by `transact` (src/store/db.ts): work deferred to its commit (`deferToCommit`: the
 * domain events) is written once for the whole batch just before COMMIT (one head upsert per organisation and one
 * multi-row insert instead of both per message), in the same transaction, so it commits or rolls back with the
 * messages as before; a failed batch's deferred work is dropped with it and each item, run alone, defers its own.
 * Nothing in a message's own writes reads those events back before the commit.
 */
export const createCommitBatcher = (db: Db, opts: CommitBatcherOptions = {}) => {
  const maxBatch = opts.maxBatch ?? 32;
  const gatherMs = opts.gatherMs ?? 0;
  const arriving = opts.arriving ?? (() => 0);
  const queue: Item[] = [];
  let running = false;
  let timer: NodeJS.Timeout | null = null;

  const runAlone = async (it: Item) => {
    try {
      it.resolve(await transact(db, it.work));
    } catch (e) {
      it.reject(e);
    }
  };

  /** Milliseconds still worth waiting for callers on their way; 0: commit now. */
  const waitFor = () => {
    if (gatherMs <= 0 || queue.length === 0 || queue.length >= maxBatch || arriving() === 0) return 0;
    return Math.max(0, queue[0]!.at + gatherMs - performance.now());
  };

  const drain = async () => {
    running = true;
    try {
      while (queue.length > 0) {
        const wait = waitFor();
        if (wait > 0) {
          // Woken by the timer, or earlier by the caller that fills the batch or is the last on its way (enqueue).
          timer = setTimeout(kick, Math.ceil(wait));
          return;
        }
        const batch = queue.splice(0, maxBatch);
        if (batch.length === 1) {
          await runAlone(batch[0]!);
          continue;
        }
        let results: unknown[];
        try {
          results = await transact(db, async (tx) => {
            const out: unknown[] = [];
            for (const it of batch) out.push(await it.work(tx));
            return out;
          });
        } catch {
          for (const it of batch) await runAlone(it);
          continue;
        }
        for (const [i, it] of batch.entries()) it.resolve(results[i]);
      }
    } finally {
      running = false;
    }
  };

  const kick = () => {
    if (timer) clearTimeout(timer);
    timer = null;
    if (!running) void drain();
  };

  return <T>(work: (tx: Tx) => Promise<T>): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      queue.push({ work, resolve: resolve as (v: unknown) => void, reject, at: performance.now() });
      // A waiting batch is re-examined by each new caller: it may now be full, or nobody else may be coming.
      if (!running && (timer === null || waitFor() === 0)) kick();
    });
};
