import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { sql } from 'kysely';
import { isStoreBusy, type Store } from './db.js';

/**
 * What the store can do now: `ok` (reads and writes), `read_only` (it answers but cannot write: disk full,
 * SQLite's max_page_count reached, a read-only PostgreSQL such as a standby after failover), `busy` (another
 * process held the SQLite writer past busy_timeout), `unreachable` (it does not answer at all).
 */
export type StoreHealth = 'ok' | 'read_only' | 'busy' | 'unreachable';

type Options = {
  /** A probe result is reused this long: /healthz is polled, and the probe takes the writer for a moment. */
  reuseMs?: number;
  /** Below this much free space on the SQLite file's filesystem, a commit's WAL append can fail: report read_only. */
  minFreeBytes?: number;
  now?: () => number;
};

class ProbeRollback extends Error {}

/** Large enough that SQLite must allocate new pages for it (4 KiB pages), small enough to be cheap. */
const PROBE_BYTES = 16 * 1024;

/**
 * A cheap, rate-limited check that the store can write, for /healthz. A query that only reads passes on a full
 * disk; this one writes: in one transaction it creates a table, inserts a small blob and rolls back, so nothing
 * remains (DDL is transactional on both SQLite and PostgreSQL). SQLite keeps uncommitted pages in its cache, so
 * a full filesystem shows at the next commit, not in the probe: the free space of the database's filesystem is
 * checked as well. Concurrent callers share one probe.
 */
export const createStoreHealth = (store: Store, opts: Options = {}) => {
  const reuseMs = opts.reuseMs ?? 2000;
  const minFreeBytes = opts.minFreeBytes ?? 1024 * 1024;
  const now = opts.now ?? Date.now;
  let last: { at: number; health: StoreHealth } | null = null;
  let running: Promise<StoreHealth> | null = null;

  const probe = async (): Promise<StoreHealth> => {
    try {
      await sql`select 1`.execute(store.db);
    } catch (e) {
      return isStoreBusy(e) ? 'busy' : 'unreachable';
    }
    if (store.file) {
      try {
        const st = await fs.promises.statfs(path.dirname(store.file));
        if (st.bavail * st.bsize < minFreeBytes) return 'read_only';
      } catch {
        // statfs unsupported here: the write probe below still runs.
      }
    }
    try {
      await store.db.transaction().execute(async (tx) => {
        await sql`create table mailward_write_probe (b ${sql.raw(store.dialect === 'postgres' ? 'bytea' : 'blob')})`.execute(tx);
        // Random bytes: zeros would be compressed (PostgreSQL TOAST) and allocate nothing.
        await sql`insert into mailward_write_probe (b) values (${randomBytes(PROBE_BYTES)})`.execute(tx);
        throw new ProbeRollback();
      });
    } catch (e) {
      if (e instanceof ProbeRollback) return 'ok';
      // It answered the read above but cannot complete a write: disk full (SQLITE_FULL, 53100), a read-only file
      // or database (SQLITE_READONLY, SQLSTATE 25006), an I/O error.
      return isStoreBusy(e) ? 'busy' : 'read_only';
    }
    return 'ok';
  };

  /** The store's health, probed at most once per `reuseMs`; never throws. */
  const check = async (): Promise<StoreHealth> => {
    if (last && now() - last.at < reuseMs) return last.health;
    if (!running) {
      running = probe()
        .catch((): StoreHealth => 'unreachable')
        .then((health) => {
          last = { at: now(), health };
          running = null;
          return health;
        });
    }
    return running;
  };

  return { check };
};

export type StoreHealthCheck = ReturnType<typeof createStoreHealth>;
