import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import { PostgresAdapter, sql } from 'kysely';
import pg from 'pg';
import type { Executor } from './db.js';

/**
 * Wake-ups after commit, across processes, with no polling: a transaction that writes something others wait
 * for (a domain event) calls `notifyOnCommit`; every process that called `Store.listen` hears the payload
 * once the transaction has committed, and never for one that rolled back.
 * - PostgreSQL: NOTIFY is transactional (postgresql.org/docs/current/sql-notify.html: "if a NOTIFY is executed
 *   inside a transaction, the notify events are not delivered until and unless the transaction is committed"),
 *   and a dedicated connection LISTENs; after a reconnect listeners get `*` (anything may have been missed).
 * - SQLite: the driver runs the payloads collected in a transaction after its COMMIT: in-process listeners get
 *   them at once, and a doorbell file next to the database is rewritten, which other processes sharing the file
 *   watch (inotify through fs.watch) and hear as `*`.
 * A notification is a hint, never the data: a listener re-reads the store from its own cursor.
 */
export const NOTIFY_CHANNEL = 'mailward_events';
export type Listener = (payload: string) => void;

/** The hooks a SQLite store's driver runs at COMMIT and ROLLBACK (one connection: one open transaction at a time). */
export type SqliteCommitHooks = {
  pending: string[];
  emitter: EventEmitter;
  bell: string;
  /** Names this store handle in the doorbell file, so its own watcher does not wake it a second time. */
  token: string;
  /** The doorbell file, opened at the first ring and kept open until the store closes. */
  fd?: number;
};

const sqliteHooks = new WeakMap<object, SqliteCommitHooks>();

/** Called by the SQLite dialect: ties the hooks to its adapter, which every executor of that store shares. */
export const attachSqliteHooks = (adapter: object, bell: string): SqliteCommitHooks => {
  const hooks: SqliteCommitHooks = { pending: [], emitter: new EventEmitter().setMaxListeners(0), bell, token: randomUUID() };
  sqliteHooks.set(adapter, hooks);
  return hooks;
};

/** Runs after a successful COMMIT (or after a write outside a transaction). */
export const fireSqliteHooks = (hooks: SqliteCommitHooks) => {
  if (hooks.pending.length === 0) return;
  const payloads = [...new Set(hooks.pending.splice(0))];
  for (const p of payloads) hooks.emitter.emit('notify', p);
  try {
    // One pwrite of the same-length token at offset 0 (inotify reports it as a modification): opening,
    // truncating and closing the file for every commit cost more than the commit itself (profiled inbound).
    hooks.fd ??= fs.openSync(hooks.bell, 'w', 0o600);
    fs.writeSync(hooks.fd, `${hooks.token}\n`, 0);
  } catch {
    // Another process then hears of this commit with its next one; in-process listeners already have it.
  }
};

/** Closes the doorbell file of a SQLite store that is being destroyed. */
export const closeSqliteHooks = (hooks: SqliteCommitHooks) => {
  if (hooks.fd === undefined) return;
  try {
    fs.closeSync(hooks.fd);
  } catch {}
  hooks.fd = undefined;
};

/**
 * Announces `payload` to every listening process once `ex`'s transaction commits. Payloads carry ids and
 * types only (PostgreSQL limits them to 8000 bytes; ours are tens).
 */
export const notifyOnCommit = async (ex: Executor, payload: string): Promise<void> => {
  const adapter = ex.getExecutor().adapter;
  if (adapter instanceof PostgresAdapter) {
    await sql`select pg_notify(${NOTIFY_CHANNEL}, ${payload})`.execute(ex);
    return;
  }
  const hooks = sqliteHooks.get(adapter);
  if (!hooks) return;
  hooks.pending.push(payload);
  if (!ex.isTransaction) fireSqliteHooks(hooks);
};

/** A SQLite store's listeners: this process's commits directly, other processes' through the doorbell file. */
export const createSqliteListen = (hooks: SqliteCommitHooks) => {
  let watcher: fs.FSWatcher | null = null;
  const start = () => {
    if (watcher) return;
    if (!fs.existsSync(hooks.bell)) fs.writeFileSync(hooks.bell, '', { mode: 0o600 });
    watcher = fs.watch(hooks.bell, { persistent: false }, () => {
      let writer = '';
      try {
        writer = fs.readFileSync(hooks.bell, 'utf8').trim();
      } catch {}
      if (writer !== hooks.token) hooks.emitter.emit('notify', '*');
    });
    watcher.on('error', () => {});
  };
  return {
    listen: (fn: Listener): (() => void) => {
      start();
      hooks.emitter.on('notify', fn);
      return () => hooks.emitter.off('notify', fn);
    },
    close: () => {
      watcher?.close();
      watcher = null;
    },
  };
};

/** A PostgreSQL store's listeners: one LISTEN connection per process, opened on first use, reconnected with backoff. */
export const createPostgresListen = (url: string) => {
  const emitter = new EventEmitter().setMaxListeners(0);
  let client: pg.Client | null = null;
  let closed = false;
  let started = false;
  let retryMs = 100;
  let timer: NodeJS.Timeout | null = null;
  /*
   * Coalesced wake-ups: the notifications that arrive together (one socket read holds many: every commit of every
   * process sharing the database announces its events and audit writes) are handed to the listeners once each,
   * after the current turn of the event loop. A notification is a hint that listeners answer by reading from their
   * own cursors, so a repeated payload adds nothing but work: without this, each process ran its listeners (delivery
   * kicks, fan-out wake-ups, integrator kicks) once per notification of every process.
   */
  const waiting = new Set<string>();
  let flushing = false;
  const flush = () => {
    flushing = false;
    const payloads = [...waiting];
    waiting.clear();
    for (const p of payloads) emitter.emit('notify', p);
  };
  const heard = (payload: string) => {
    waiting.add(payload);
    if (flushing) return;
    flushing = true;
    setImmediate(flush);
  };
  const connect = async () => {
    if (closed) return;
    const c = new pg.Client({ connectionString: url });
    c.on('error', () => {});
    c.on('notification', (n) => {
      if (n.channel === NOTIFY_CHANNEL) heard(n.payload ?? '*');
    });
    c.on('end', () => {
      if (client === c) client = null;
      schedule();
    });
    try {
      await c.connect();
      await c.query(`LISTEN ${NOTIFY_CHANNEL}`);
      if (closed) {
        await c.end().catch(() => {});
        return;
      }
      client = c;
      retryMs = 100;
      // Commits made while no connection listened were not heard: every listener re-reads from its cursor.
      emitter.emit('notify', '*');
    } catch {
      await c.end().catch(() => {});
      schedule();
    }
  };
  const schedule = () => {
    if (closed || timer) return;
    timer = setTimeout(() => {
      timer = null;
      void connect();
    }, retryMs);
    timer.unref();
    retryMs = Math.min(retryMs * 2, 5000);
  };
  return {
    listen: (fn: Listener): (() => void) => {
      if (!started) {
        started = true;
        void connect();
      }
      emitter.on('notify', fn);
      return () => emitter.off('notify', fn);
    },
    close: async () => {
      closed = true;
      if (timer) clearTimeout(timer);
      const c = client;
      client = null;
      await c?.end().catch(() => {});
    },
  };
};

/**
 * Hears whether this process leads a role (`onChange(true)` when it becomes the leader, `false` when it stops);
 * returns a function that gives the role up. At most one process sharing the store leads a role at any moment.
 */
export type Lead = (role: number, onChange: (isLeader: boolean) => void) => () => void;

/**
 * Leadership of one installation-wide role among the processes sharing a PostgreSQL database: a session
 * advisory lock (postgresql.org/docs/current/explicit-locking.html#ADVISORY-LOCKS), held on a connection of its
 * own. A process that is not the leader waits for the lock inside PostgreSQL (`pg_advisory_lock`: no polling),
 * so it takes over as soon as the leader's session ends: a leader killed with SIGKILL loses its connection, and
 * with it the lock, at once; a leader that loses its connection stops leading before it connects again and
 * waits like the others. The waiting connection cannot be the LISTEN one: a backend busy with a statement does
 * not deliver notifications until the statement ends.
 */
export const createPostgresLead = (url: string): { lead: Lead; close: () => Promise<void> } => {
  type Contender = {
    role: number;
    onChange: (isLeader: boolean) => void;
    client: pg.Client | null;
    leader: boolean;
    given: boolean;
    retryMs: number;
  };
  const contenders = new Set<Contender>();
  let closed = false;
  const setLeader = (c: Contender, leader: boolean) => {
    if (c.leader === leader) return;
    c.leader = leader;
    c.onChange(leader);
  };
  const contend = async (c: Contender) => {
    if (closed || c.given) return;
    const client = new pg.Client({ connectionString: url, keepAlive: true });
    c.client = client;
    let ended = false;
    const again = () => {
      if (ended) return;
      ended = true;
      if (c.client === client) c.client = null;
      setLeader(c, false);
      if (closed || c.given) return;
      const t = setTimeout(() => void contend(c), c.retryMs);
      t.unref();
      c.retryMs = Math.min(c.retryMs * 2, 5000);
    };
    client.on('error', () => {});
    client.on('end', again);
    try {
      await client.connect();
      c.retryMs = 100;
      // Waits until the lock is free (the leader's session ended), then holds it for the life of this connection.
      await client.query('select pg_advisory_lock($1::bigint)', [c.role]);
      if (closed || c.given) {
        await client.end().catch(() => {});
        return;
      }
      setLeader(c, true);
    } catch {
      await client.end().catch(() => {});
      again();
    }
  };
  const lead: Lead = (role, onChange) => {
    const c: Contender = { role, onChange, client: null, leader: false, given: false, retryMs: 100 };
    contenders.add(c);
    void contend(c);
    return () => {
      if (c.given) return;
      c.given = true;
      contenders.delete(c);
      setLeader(c, false);
      // Ending the session frees the lock (or ends the wait for it): another process takes over at once.
      void c.client?.end().catch(() => {});
      c.client = null;
    };
  };
  return {
    lead,
    close: async () => {
      closed = true;
      const ending = [...contenders].map(async (c) => {
        c.given = true;
        setLeader(c, false);
        await c.client?.end().catch(() => {});
        c.client = null;
      });
      contenders.clear();
      await Promise.all(ending);
    },
  };
};

/** A SQLite store's leadership: the one writer lock already lets one integrate at a time, so every process leads. */
export const sqliteLead: Lead = (_role, onChange) => {
  let given = false;
  queueMicrotask(() => {
    if (!given) onChange(true);
  });
  return () => {
    if (given) return;
    given = true;
    onChange(false);
  };
};

/**
 * The role of the periodic sweeps `mailward serve` runs (approval expiry, search compaction and back-fill, audit
 * checkpoints, purges past retention, reviewer digests, breach reminders): one process sharing the store runs them,
 * as one integrates the audit log, so the others run none of their statements (README, "Two PostgreSQL
 * processes"). Each sweep is safe in several processes at once (compare-and-set transitions), so a leader
 * change that overlaps for a moment does no harm.
 */
export const SWEEPS_ROLE = 7_466_115_003;

/**
 * Runs what `begin` starts only while this process leads `role` (always, without `lead`): begun when this process
 * becomes the leader, ended (the function `begin` returns) when it stops leading, so another process takes over.
 * Returns a function that ends it and gives the role up.
 */
export const whileLeading = (lead: Lead | undefined, role: number, begin: () => () => void): (() => void) => {
  if (!lead) return begin();
  let end: (() => void) | null = null;
  const giveUp = lead(role, (isLeader) => {
    if (isLeader && !end) end = begin();
    else if (!isLeader && end) {
      end();
      end = null;
    }
  });
  return () => {
    giveUp();
    end?.();
    end = null;
  };
};
