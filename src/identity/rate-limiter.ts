import { sql } from 'kysely';
import type { Clock } from '../kernel/clock.js';
import type { Db } from '../store/db.js';

export type RateDecision = { allowed: boolean; limit: number; remaining: number; resetSeconds: number };

const WINDOW_MS = 60_000;

/**
 * Fixed-window request counter per API key, kept in the store so that every
 * process sharing the database enforces one limit.
 * - `syncMs = 0`: one upsert per request; exact across processes.
 * - `syncMs > 0` (default): counts accumulate in memory and are added to the
 *   store every `syncMs`, which answers with the store-wide total. Exact within
 *   one process; across N processes a key can exceed its limit by at most what
 *   the others admitted during one sync interval.
 */
export const createRateLimiter = ({
  db,
  clock,
  limitPerMinute,
  syncMs = 0,
}: {
  db: Db;
  clock: Clock;
  limitPerMinute: number;
  syncMs?: number;
}) => {
  const buckets = new Map<string, { synced: number; pending: number; expiresAt: string; windowEnd: number }>();
  let sinceSweep = 0;
  let timer: NodeJS.Timeout | undefined;
  let flushing: Promise<void> | undefined;

  const add = async (bucket: string, n: number, expiresAt: string): Promise<number> => {
    const r = await sql<{ count: number }>`
      insert into rate_limit_buckets (bucket, count, expires_at) values (${bucket}, ${n}, ${expiresAt})
      on conflict (bucket) do update set count = rate_limit_buckets.count + ${n}
      returning count`.execute(db);
    return Number(r.rows[0]?.count ?? n);
  };

  const sweep = async (t: number) => {
    if (++sinceSweep < 5000) return;
    sinceSweep = 0;
    await db.deleteFrom('rate_limit_buckets').where('expires_at', '<', new Date(t).toISOString()).execute();
  };

  const decide = (count: number, windowEnd: number, t: number): RateDecision => ({
    allowed: count <= limitPerMinute,
    limit: limitPerMinute,
    remaining: Math.max(0, limitPerMinute - count),
    resetSeconds: Math.ceil((windowEnd - t) / 1000),
  });

  const flush = async () => {
    const t = clock.now().getTime();
    for (const [bucket, b] of buckets) {
      if (b.pending > 0) {
        const n = b.pending;
        b.pending -= n;
        b.synced = await add(bucket, n, b.expiresAt);
      }
      if (b.windowEnd < t && b.pending === 0) buckets.delete(bucket);
    }
    await sweep(t);
  };

  const hit = async (subject: string): Promise<RateDecision> => {
    const t = clock.now().getTime();
    const windowStart = t - (t % WINDOW_MS);
    const windowEnd = windowStart + WINDOW_MS;
    const bucket = `${subject}:${windowStart}`;
    if (syncMs <= 0) {
      const count = await add(bucket, 1, new Date(windowEnd).toISOString());
      await sweep(t);
      return decide(count, windowEnd, t);
    }
    let b = buckets.get(bucket);
    if (!b) {
      b = { synced: 0, pending: 0, expiresAt: new Date(windowEnd).toISOString(), windowEnd };
      buckets.set(bucket, b);
    }
    b.pending++;
    return decide(b.synced + b.pending, windowEnd, t);
  };

  return {
    hit,
    start: () => {
      if (syncMs <= 0 || timer) return;
      timer = setInterval(() => {
        if (!flushing)
          flushing = flush()
            .catch(() => {})
            .finally(() => (flushing = undefined));
      }, syncMs);
      timer.unref();
    },
    stop: async () => {
      if (timer) clearInterval(timer);
      timer = undefined;
      await flushing;
      await flush().catch(() => {});
    },
  };
};

export type RateLimiter = ReturnType<typeof createRateLimiter>;
