import { sql } from 'kysely';
import { newId } from '../kernel/ids.js';
import type { Db, Executor, Store } from '../store/db.js';
import { notifyOnCommit } from '../store/notify.js';
import type { Principal } from './principal.js';

export type CachedKey = { secretHash: Buffer; principal: Principal; lastUsedAt: string | null };

/**
 * Resolved API keys, cached per process so the hot path does no store query.
 * Correctness rests on one store-wide `auth_epoch`: every change that can
 * weaken a key (revocation, deactivation, a moved agent, changed roles)
 * writes a new epoch in its own transaction (`bump`) and clears this process's
 * cache on commit (`invalidate`); other processes hear of it after the commit
 * through the store's notifications (`listen`: LISTEN/NOTIFY, or SQLite's
 * doorbell file) and re-read the epoch, so an idle process asks the store
 * nothing. Without `listen` they re-read it every `pollMs`. An entry is also
 * re-checked against the store after `ttlMs`, which bounds the damage of a lost
 * notification. If the epoch cannot be read, the cache is dropped: fail closed.
 * `pollMs = 0` turns caching off.
 */
export const createAuthCache = ({
  db,
  pollMs,
  ttlMs = 30_000,
  listen,
}: {
  db: Db;
  pollMs: number;
  ttlMs?: number;
  listen?: Store['listen'];
}) => {
  const entries = new Map<string, { generation: number; at: number; value: CachedKey }>();
  let generation = 0;
  let knownEpoch: string | null | undefined;
  let timer: NodeJS.Timeout | undefined;
  let unlisten: (() => void) | undefined;
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
      await notifyOnCommit(tx, AUTH_EPOCH_NOTICE);
    },
    invalidate,
    start: async () => {
      if (!enabled) return;
      if (listen) {
        unlisten = listen((payload) => {
          // `*`: a listening connection was (re)opened, and anything may have been missed.
          if (payload === AUTH_EPOCH_NOTICE || payload === '*') void poll();
        });
        await poll();
        return;
      }
      await poll();
      timer = setInterval(() => void poll(), pollMs);
      timer.unref();
    },
    stop: () => {
      if (timer) clearInterval(timer);
      timer = undefined;
      unlisten?.();
      unlisten = undefined;
    },
  };
};

export type AuthCache = ReturnType<typeof createAuthCache>;

/** The store notification of a new auth epoch (not a domain event: `!`-prefixed). */
const AUTH_EPOCH_NOTICE = '!auth';
