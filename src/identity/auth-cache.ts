import { sql } from 'kysely';
import { newId } from '../kernel/ids.js';
import type { Db, Executor } from '../store/db.js';
import type { Principal } from './principal.js';

export type CachedKey = { secretHash: Buffer; principal: Principal; lastUsedAt: string | null };

/**
 * Resolved API keys, cached per process so the hot path does no store query.
 * Correctness rests on one store-wide `auth_epoch`: every change that can
 * weaken a key (revocation, deactivation, a moved agent, changed roles)
 * writes a new epoch in its own transaction (`bump`) and clears this process's
 * cache on commit (`invalidate`); other processes see the new epoch within
 * `pollMs` and clear theirs. If the epoch cannot be read, the cache is
 * dropped: fail closed. `pollMs = 0` turns caching off.
 */
export const createAuthCache = ({ db, pollMs, ttlMs = 30_000 }: { db: Db; pollMs: number; ttlMs?: number }) => {
  const entries = new Map<string, { generation: number; at: number; value: CachedKey }>();
  let generation = 0;
  let knownEpoch: string | null | undefined;
  let timer: NodeJS.Timeout | undefined;
  const enabled = pollMs > 0;

  const invalidate = () => {
    generation++;
    entries.clear();
  };

  const readEpoch = async () =>
    (await db.selectFrom('settings').select('value').where('key', '=', 'auth_epoch').executeTakeFirst())?.value ?? null;

  const poll = async () => {
    try {
      const e = await readEpoch();
      if (e !== knownEpoch) {
        invalidate();
        knownEpoch = e;
      }
    } catch {
      invalidate();
      knownEpoch = undefined;
    }
  };

  return {
    enabled,
    generation: () => generation,
    get: (keyId: string): CachedKey | undefined => {
      if (!enabled || knownEpoch === undefined) return undefined;
      const e = entries.get(keyId);
      if (!e || e.generation !== generation || Date.now() - e.at > ttlMs) return undefined;
      return e.value;
    },
    /** Stores a lookup that began at `startedGeneration`; dropped if an invalidation happened meanwhile. */
    put: (keyId: string, startedGeneration: number, value: CachedKey) => {
      if (enabled && startedGeneration === generation) entries.set(keyId, { generation, at: Date.now(), value });
    },
    /** Inside the changing transaction: tell every process that keys may have weakened. */
    bump: async (tx: Executor) => {
      const v = newId('event');
      await sql`insert into settings (key, value) values ('auth_epoch', ${v})
                on conflict (key) do update set value = ${v}`.execute(tx);
    },
    invalidate,
    start: async () => {
      if (!enabled) return;
      await poll();
      timer = setInterval(() => void poll(), pollMs);
      timer.unref();
    },
    stop: () => {
      if (timer) clearInterval(timer);
      timer = undefined;
    },
  };
};

export type AuthCache = ReturnType<typeof createAuthCache>;
