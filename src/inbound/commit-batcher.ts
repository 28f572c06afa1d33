import type { Db, Tx } from '../store/db.js';

type Item = { work: (tx: Tx) => Promise<unknown>; resolve: (v: unknown) => void; reject: (e: unknown) => void };

/**
 * Group commit: the writes of messages that arrive while a transaction is
 * running go together into the next one (up to `maxBatch`), so many messages
 * share one BEGIN/COMMIT (one fsync on PostgreSQL). Each caller's promise
 * settles only after the transaction holding its writes committed, so no
 * message is acknowledged before it is durable. If a batch fails, each of
 * its items is retried alone: one bad message never fails the others.
 */
export const createCommitBatcher = (db: Db, opts: { maxBatch?: number } = {}) => {
  const maxBatch = opts.maxBatch ?? 32;
  const queue: Item[] = [];
  let running = false;

  const runAlone = async (it: Item) => {
    try {
      it.resolve(await db.transaction().execute(it.work));
    } catch (e) {
      it.reject(e);
    }
  };

  const drain = async () => {
    running = true;
    try {
      while (queue.length > 0) {
        const batch = queue.splice(0, maxBatch);
        if (batch.length === 1) {
          await runAlone(batch[0]!);
          continue;
        }
        let results: unknown[];
        try {
          results = await db.transaction().execute(async (tx) => {
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

  return <T>(work: (tx: Tx) => Promise<T>): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      queue.push({ work, resolve: resolve as (v: unknown) => void, reject });
      if (!running) void drain();
    });
};
