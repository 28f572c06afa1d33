import { sql } from 'kysely';
import type { Clock } from '../kernel/clock.js';
import type { Db } from '../store/db.js';

export type RateDecision = { allowed: boolean; limit: number; remaining: number; resetSeconds: number };

/**
 * Fixed-window request counter per API key, kept in the store so that every
 * process sharing the database enforces one limit. One upsert per request.
 */
export const createRateLimiter = ({ db, clock, limitPerMinute }: { db: Db; clock: Clock; limitPerMinute: number }) => {
  const WINDOW_MS = 60_000;
  let sinceSweep = 0;

  const hit = async (subject: string): Promise<RateDecision> => {
    const t = clock.now().getTime();
    const windowStart = t - (t % WINDOW_MS);
    const bucket = `${subject}:${windowStart}`;
    const expiresAt = new Date(windowStart + WINDOW_MS).toISOString();
    const r = await sql<{ count: number }>`
      insert into rate_limit_buckets (bucket, count, expires_at) values (${bucket}, 1, ${expiresAt})
      on conflict (bucket) do update set count = rate_limit_buckets.count + 1
      returning count`.execute(db);
    const count = Number(r.rows[0]?.count ?? 1);
    if (++sinceSweep >= 5000) {
      sinceSweep = 0;
      await db.deleteFrom('rate_limit_buckets').where('expires_at', '<', new Date(t).toISOString()).execute();
    }
    return {
      allowed: count <= limitPerMinute,
      limit: limitPerMinute,
      remaining: Math.max(0, limitPerMinute - count),
      resetSeconds: Math.ceil((windowStart + WINDOW_MS - t) / 1000),
    };
  };

  return { hit };
};

export type RateLimiter = ReturnType<typeof createRateLimiter>;
