import { createRequire } from 'node:module';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import SQLite from 'better-sqlite3';
import {
  type Compilable,
  CompiledQuery,
  type DatabaseConnection,
  type Driver,
  Kysely,
  PostgresAdapter,
  PostgresDialect,
  type QueryResult,
  SqliteAdapter,
  SqliteDialect,
  type Transaction,
  type TransactionSettings,
} from 'kysely';
import { AppError } from '../kernel/errors.js';
import {
  attachSqliteHooks,
  closeSqliteHooks,
  createPostgresLead,
  createPostgresListen,
  createSqliteListen,
  fireSqliteHooks,
  type Lead,
  type Listener,
  type SqliteCommitHooks,
  sqliteLead,
} from './notify.js';
import pg from 'pg';
import { ensurePrivateDir, ensurePrivateFile, tightenFile } from '../kernel/private-files.js';
import type { Database } from './schema.js';

export type Dialect = 'sqlite' | 'postgres';
export type Db = Kysely<Database>;
export type Tx = Transaction<Database>;
/** Either the root handle or an open transaction: repos accept both. */
export type Executor = Kysely<Database>;

export type StoreOptions =
  | {
      kind: 'sqlite';
      file: string;
      /** Background WAL checkpoint period; 0 leaves checkpoints to SQLite's automatic one. */
      checkpointEveryMs?: number;
      /** Most callers waiting for the connection; one more is refused with 503 store_busy (default 512). */
      queueLimit?: number;
      /** Longest wait for the connection before 503 store_busy (default 5000 ms). */
      queueWaitMs?: number;
      onQuery?: QueryObserver;
    }
  | { kind: 'postgres'; url: string; poolSize?: number; onQuery?: QueryObserver };

/** Told of every statement the store runs, with its duration (trace logging: `MAILWARD_LOG_LEVEL=trace`); never its values. */
export type QueryObserver = (durationMs: number) => void;
const queryLog = (onQuery?: QueryObserver) =>
  onQuery ? { log: (e: { queryDurationMillis: number }) => onQuery(e.queryDurationMillis) } : {};

export type Store = {
  db: Db;
  dialect: Dialect;
  destroy: () => Promise<void>;
  describe: string;
  file?: string;
  /** Hears `notifyOnCommit` payloads of every process sharing this store, after their commits (see notify.ts). */
  listen: (fn: Listener) => () => void;
  /** Leadership of an installation-wide role among the processes sharing this store (see notify.ts). */
  lead?: Lead;
  /** SQLite only: how many prepared statements the statement cache holds, and the total length of their SQL texts. */
  statementCache?: () => { statements: number; textChars: number };
};

// int8 (bigint) columns come back as JS numbers: audit seq stays far below 2^53.
const pgTypes = {
  getTypeParser: (oid: number, format?: string) => (oid === 20 ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format as 'text')),
};

/**
 * Kysely prepares every query anew; better-sqlite3 statements are reusable, and
 * preparing is a large share of a small query's cost. Cache them by SQL text
 * (a statement still iterating a stream is never handed out twice), oldest
 * out first. A prepared statement holds its compiled program in
 * native memory, roughly 50 times its SQL text (a 1,000-row insert of 17
 * columns: 36 KB of text, 1.7 MB of memory), so the cache is bounded by the
 * total length of the texts it holds as well as by their number: statements
 * whose text varies with a batch size (multi-row inserts, `IN` lists) would
 * otherwise accumulate native memory up to the count limit. Bulk statements
 * use a few fixed shapes (src/store/batch.ts) and stay cached.
 */
const withStatementCache = (sqlite: SQLite.Database, { max = 1000, maxTextChars = 512 * 1024 } = {}) => {
  const cache = new Map<string, SQLite.Statement>();
  let textChars = 0;
  let noop: SQLite.Statement | undefined;
  return {
    stats: () => ({ statements: cache.size, textChars }),
    close: () => sqlite.close(),
    prepare: (sqlText: string) => {
      // SQLITE_FULL, SQLITE_IOERR, SQLITE_NOMEM and SQLITE_BUSY may roll the whole transaction back on their own
      // (sqlite.org/lang_transaction.html, "Response To Errors Within A Transaction"). Kysely then sends ROLLBACK,
      // which fails ("cannot rollback - no transaction is active") and replaces the error that says why. With no
      // transaction open there is nothing to undo: the ROLLBACK is skipped and the original error reaches the caller.
      if (sqlText === 'rollback' && !sqlite.inTransaction) {
        noop ??= sqlite.prepare('select 1 where 0');
        return noop;
      }
      // Every Mailward transaction writes (at least its audit event). A deferred
      // BEGIN that reads first and writes later fails at once with
      // SQLITE_BUSY_SNAPSHOT when another process wrote in between (WAL mode);
      // BEGIN IMMEDIATE takes the write lock up front, waiting busy_timeout.
      const text = sqlText === 'begin' ? 'begin immediate' : sqlText;
      let stmt = cache.get(text);
      // A hit is not moved (the hot path does no bookkeeping): the oldest entry goes first, and a hot
      // statement evicted that way is prepared again once.
      if (stmt && !stmt.busy) return stmt;
      stmt = sqlite.prepare(text);
      // A text over a quarter of the budget is prepared for this use only.
      if (text.length > maxTextChars / 4) return stmt;
      if (cache.has(text)) textChars -= text.length;
      cache.delete(text);
      while (cache.size > 0 && (cache.size >= max || textChars + text.length > maxTextChars)) {
        const oldest = cache.keys().next().value as string;
        cache.delete(oldest);
        textChars -= oldest.length;
      }
      cache.set(text, stmt);
      textChars += text.length;
      return stmt;
    },
  };
};

/** 503 store_busy (temporary, Retry-After): the store's queue of waiting callers is full or the wait ran out. */
export class StoreBusyError extends AppError {
  constructor(detail: string) {
    super('store_busy', 503, detail, { temporary: true, extra: { retry_after: 1 } });
  }
}

/**
 * A FIFO lock on SQLite's one connection, with a bounded queue and a bounded wait. Kysely's own mutex wakes
 * every waiter on each release and lets whoever runs first take it, so under many writers some callers lose
 * again and again (waits of tens of seconds next to a median of a fraction of one), and nothing bounds the queue.
 * Here a release hands the connection to the oldest waiter directly; a caller beyond `limit` waiters, or one that
 * waited `waitMs`, gets 503 store_busy with Retry-After (shed load early rather than queue without bound).
 */
export const createFairLock = ({ limit, waitMs }: { limit: number; waitMs: number }) => {
  type Waiter = { grant: () => void; timer: NodeJS.Timeout };
  const waiters: Waiter[] = [];
  let head = 0;
  let held = false;
  const waiting = () => waiters.length - head;
  const acquire = (): Promise<void> => {
    if (!held) {
      held = true;
      return Promise.resolve();
    }
    if (waiting() >= limit) return Promise.reject(new StoreBusyError('Too many requests are waiting for the store; retry shortly.'));
    return new Promise<void>((resolve, reject) => {
      const w: Waiter = {
        grant: () => {
          clearTimeout(w.timer);
          resolve();
        },
        timer: setTimeout(() => {
          const i = waiters.indexOf(w, head);
          if (i >= 0) waiters.splice(i, 1);
          reject(new StoreBusyError('The store is busy; retry shortly.'));
        }, waitMs),
      };
      waiters.push(w);
    });
  };
  const release = () => {
    if (head < waiters.length) {
      const next = waiters[head++]!;
      // Compact now and then: the array is a queue, and shift() on every release is O(n).
      if (head > 1024 && head * 2 > waiters.length) {
        waiters.splice(0, head);
        head = 0;
      }
      next.grant();
      return;
    }
    waiters.length = 0;
    head = 0;
    held = false;
  };
  return { acquire, release, waiting };
};

/** Kysely's SQLite driver behind the fair lock: every query and transaction waits its turn in one FIFO queue. */
class FairSqliteDialect extends SqliteDialect {
  readonly #lock: ReturnType<typeof createFairLock>;
  readonly #bell: string;
  #hooks: SqliteCommitHooks | null = null;
  constructor(config: ConstructorParameters<typeof SqliteDialect>[0], lock: ReturnType<typeof createFairLock>, bell: string) {
    super(config);
    this.#lock = lock;
    this.#bell = bell;
  }
  /** The after-commit hooks of this store (notify.ts), created with its adapter. */
  get hooks(): SqliteCommitHooks {
    if (!this.#hooks) throw new Error('the SQLite adapter has not been created yet');
    return this.#hooks;
  }
  // Kysely 0.29 serialises a single-connection adapter with its own unbounded mutex in front of the
  // driver, so every caller but one would wait there, never in the fair queue. The fair lock below
  // gives the same one-at-a-time guarantee, bounded and first come, first served.
  override createAdapter(): SqliteAdapter {
    const adapter = new (class extends SqliteAdapter {
      override get supportsMultipleConnections() {
        return true;
      }
    })();
    this.#hooks = attachSqliteHooks(adapter, this.#bell);
    return adapter;
  }
  override createDriver(): Driver {
    const inner = super.createDriver();
    const lock = this.#lock;
    return {
      init: () => inner.init(),
      acquireConnection: async () => {
        await lock.acquire();
        try {
          return await inner.acquireConnection();
        } catch (e) {
          lock.release();
          throw e;
        }
      },
      beginTransaction: (c: DatabaseConnection, s: TransactionSettings) => inner.beginTransaction(c, s),
      commitTransaction: async (c: DatabaseConnection) => {
        await inner.commitTransaction(c);
        if (this.#hooks) fireSqliteHooks(this.#hooks);
      },
      rollbackTransaction: async (c: DatabaseConnection) => {
        if (this.#hooks) this.#hooks.pending.length = 0;
        await inner.rollbackTransaction(c);
      },
      savepoint: inner.savepoint?.bind(inner),
      rollbackToSavepoint: inner.rollbackToSavepoint?.bind(inner),
      releaseSavepoint: inner.releaseSavepoint?.bind(inner),
      releaseConnection: async (c: DatabaseConnection) => {
        try {
          await inner.releaseConnection(c);
        } finally {
          lock.release();
        }
      },
      destroy: () => inner.destroy(),
    };
  }
}

/**
 * WAL checkpoints off the event loop: SQLite's automatic checkpoint runs
 * inside the commit that crosses the threshold, copying pages and syncing the
 * database file while every request behind that commit waits (the tail of
 * request latency). A worker thread with its own connection runs PASSIVE
 * checkpoints instead (they never block writers or readers); the automatic one
 * stays as a backstop at a higher threshold in case the worker stops.
 */
const startCheckpointer = (file: string, everyMs: number) => {
  const modulePath = createRequire(import.meta.url).resolve('better-sqlite3');
  const code = `
    const { workerData, parentPort } = require('node:worker_threads');
    const Database = require(workerData.modulePath);
    const db = new Database(workerData.file);
    db.pragma('busy_timeout = 1000');
    const timer = setInterval(() => { try { db.pragma('wal_checkpoint(PASSIVE)'); } catch {} }, workerData.everyMs);
    parentPort.once('message', () => { clearInterval(timer); db.close(); parentPort.close(); });`;
  const w = new Worker(code, { eval: true, workerData: { modulePath, file, everyMs } });
  w.unref();
  // Failing to start only loses the optimisation: the automatic checkpoint still runs.
  w.on('error', () => {});
  return async () => {
    w.postMessage('stop');
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => void w.terminate().then(() => resolve()), 1000);
      w.once('exit', () => {
        clearTimeout(t);
        resolve();
      });
    });
  };
};

/** Most distinct statement texts given a server-side name; past it, statements run unnamed as before. */
const MAX_NAMED_STATEMENTS = 2000;

/**
 * PostgreSQL named prepared statements for parameterised queries. Kysely sends every query as an unnamed
 * statement, which PostgreSQL parses, analyses and plans anew each time; with a name, node-postgres parses it once
 * per connection and afterwards only binds and executes it (PostgreSQL docs, "Extended Query": a named prepared
 * statement lasts until the end of the session). Measured on this machine: about half the backend's CPU and 40%
 * less of the client's for a 12-column insert plus a primary-key select. Names are per process and per text
 * (`mw_<n>`), so a name always means one text on every connection; statements without parameters (BEGIN, COMMIT,
 * savepoints, the group commit's joined control statements) keep the simple protocol. A table whose columns
 * changed under a prepared `select *` (a migration run by another process) fails with SQLSTATE 0A000, "cached plan
 * must not change result type": that text then runs unnamed from the next query on, and an autocommit query is
 * run again unnamed at once; in a transaction the error reaches the caller (the transaction is aborted), whose
 * retry runs unnamed.
 */
export const withNamedStatements = (pool: pg.Pool) => {
  const names = new Map<string, string | null>();
  const nameOf = (text: string): string | null => {
    const hit = names.get(text);
    if (hit !== undefined) return hit;
    if (names.size >= MAX_NAMED_STATEMENTS) return null;
    const name = `mw_${names.size + 1}`;
    names.set(text, name);
    return name;
  };
  const wrapped = new WeakMap<pg.PoolClient, pg.PoolClient>();
  const inTransaction = new WeakSet<pg.PoolClient>();
  const wrap = (client: pg.PoolClient): pg.PoolClient => {
    let w = wrapped.get(client);
    if (w) return w;
    const query = async (text: unknown, values?: unknown) => {
      if (typeof text !== 'string') return (client.query as (...a: unknown[]) => unknown)(text, values);
      const params = Array.isArray(values) ? values : undefined;
      const name = params && params.length > 0 ? nameOf(text) : null;
      // The simple-protocol control statements say whether a transaction is open on this connection.
      if (!params || params.length === 0) {
        const head = text.trimStart().slice(0, 11).toLowerCase();
        if (head.startsWith('begin') || head.startsWith('start tra')) inTransaction.add(client);
        else if (head.startsWith('commit') || (head.startsWith('rollback') && !head.startsWith('rollback to')))
          inTransaction.delete(client);
      }
      if (!name) return client.query(text, params);
      try {
        return await client.query({ name, text, values: params });
      } catch (e) {
        if ((e as { code?: unknown }).code !== '0A000') throw e;
        names.set(text, null);
        if (inTransaction.has(client)) throw e;
        return client.query(text, params);
      }
    };
    // Methods are bound once per connection and function, not on every access (Kysely calls release() after every
    // query). The pool assigns a new `release` at every checkout, so a binding is kept only for the function it bound.
    const bound = new Map<PropertyKey, { of: unknown; f: unknown }>();
    w = new Proxy(client, {
      get: (target, prop) => {
        if (prop === 'query') return query;
        const v = Reflect.get(target, prop, target) as unknown;
        if (typeof v !== 'function') return v;
        const hit = bound.get(prop);
        if (hit?.of === v) return hit.f;
        const f = (v as (...a: unknown[]) => unknown).bind(target);
        bound.set(prop, { of: v, f });
        return f;
      },
    });
    wrapped.set(client, w);
    return w;
  };
  return {
    connect: async () => wrap(await pool.connect()),
    end: () => pool.end(),
    get options() {
      return pool.options;
    },
    get Client() {
      return (pool as unknown as { Client: unknown }).Client;
    },
  } as unknown as pg.Pool;
};

export const openStore = (opts: StoreOptions): Store => {
  if (opts.kind === 'sqlite') {
    // The database holds PHI: the file is created 0600 before SQLite opens it, and
    // SQLite gives the -wal and -shm files the mode of the database file (sqlite.org
    // os_unix.c findCreateFileMode); ones left looser by an older version are tightened.
    ensurePrivateDir(path.dirname(opts.file));
    ensurePrivateFile(opts.file);
    const sqlite = new SQLite(opts.file);
    sqlite.pragma('journal_mode = WAL');
    for (const suffix of ['-wal', '-shm', '-journal']) tightenFile(`${opts.file}${suffix}`);
    // WAL + NORMAL is durable across process crashes; an OS crash can lose the
    // last transactions but never corrupts the file (sqlite.org/wal.html).
    sqlite.pragma('synchronous = NORMAL');
    sqlite.pragma('foreign_keys = ON');
    sqlite.pragma('busy_timeout = 5000');
    const everyMs = opts.checkpointEveryMs ?? 200;
    let stopCheckpointer: (() => Promise<void>) | null = null;
    if (everyMs > 0) {
      sqlite.pragma('wal_autocheckpoint = 10000');
      stopCheckpointer = startCheckpointer(opts.file, everyMs);
    }
    const lock = createFairLock({ limit: opts.queueLimit ?? 512, waitMs: opts.queueWaitMs ?? 5000 });
    const statements = withStatementCache(sqlite);
    const dialect = new FairSqliteDialect({ database: statements }, lock, `${opts.file}-notify`);
    const db = new Kysely<Database>({ dialect, ...queryLog(opts.onQuery) });
    // With a query observer every statement goes through Kysely, which times it.
    if (!opts.onQuery) sqliteStatements.set(db.getExecutor().adapter, statements);
    let listener: ReturnType<typeof createSqliteListen> | null = null;
    const listen = (fn: Listener) => {
      // The adapter (and its hooks) exists once Kysely has been constructed.
      listener ??= createSqliteListen(dialect.hooks);
      return listener.listen(fn);
    };
    const destroy = async () => {
      listener?.close();
      await stopCheckpointer?.();
      await db.destroy();
      closeSqliteHooks(dialect.hooks);
    };
    return {
      db,
      dialect: 'sqlite',
      destroy,
      describe: `sqlite:${opts.file}`,
      file: opts.file,
      listen,
      lead: sqliteLead,
      statementCache: statements.stats,
    };
  }
  const pool = new pg.Pool({ connectionString: opts.url, max: opts.poolSize ?? 10, types: pgTypes });
  // A client losing its connection (pg_terminate_backend, failover, restart, a pooler or idle timeout) emits
  // 'error'; an EventEmitter 'error' without a listener kills the process. pg-pool listens only while a client
  // is idle, so every client gets its own listener for the time it is checked out. The query in flight rejects
  // with the same error (mapped to 503 store_unavailable, see isStoreUnavailable), and pg-pool drops a client
  // that is no longer queryable when it is released, so the next checkout connects anew.
  pool.on('error', () => {});
  pool.on('connect', (client) => {
    client.on('error', () => {});
  });
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool: withNamedStatements(pool) }), ...queryLog(opts.onQuery) });
  const u = new URL(opts.url);
  const listener = createPostgresListen(opts.url);
  const leadership = createPostgresLead(opts.url);
  const destroy = async () => {
    await leadership.close();
    await listener.close();
    await db.destroy();
  };
  return {
    db,
    dialect: 'postgres',
    destroy,
    describe: `postgres://${u.host}${u.pathname}`,
    listen: listener.listen,
    lead: leadership.lead,
  };
};

/**
 * SQLite answered SQLITE_BUSY (another process held the writer past
 * busy_timeout), or this process's queue for the connection was full or too
 * slow (StoreBusyError): nothing ran or it rolled back, so trying again is safe.
 */
export const isStoreBusy = (e: unknown): boolean => {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' && (code.startsWith('SQLITE_BUSY') || code === 'store_busy');
};

/**
 * PostgreSQL SQLSTATEs after which the statement did not take effect and retrying later can succeed: class 08
 * (connection exception), class 53 (insufficient resources: disk_full 53100, out_of_memory, too_many_connections),
 * 57P01-57P05 (admin or crash shutdown, cannot connect now, idle session timeout) and 25006 (a read-only
 * transaction: a standby after failover, or the database set read-only).
 */
const PG_UNAVAILABLE = /^(08|53)...$|^57P0[1-5]$|^25006$/;

/** SQLite result codes of a store that cannot write or read now (sqlite.org/rescode.html); the transaction rolled back. */
const SQLITE_UNAVAILABLE = /^SQLITE_(FULL|IOERR|READONLY|CANTOPEN|NOMEM|PROTOCOL)/;

/** Socket errors and node-postgres's own messages for a connection that is gone or never came up. */
const NET_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ENOSPC',
]);
const PG_CLIENT_MESSAGES =
  /^(Connection terminated|Client has encountered a connection error|Client was closed and is not queryable|timeout exceeded when trying to connect|Connection ended unexpectedly)/;

/**
 * True when the store could not do the work for a reason outside the request: the database connection was
 * lost or refused, or the store cannot write (disk full, read-only). Nothing was committed; answer
 * 503 store_unavailable (temporary) and let the client retry (SMTP: 451, RFC 5321 4.2.5).
 */
export const isStoreUnavailable = (e: unknown): boolean => {
  const err = e as { code?: unknown; message?: unknown } | null;
  if (!err || typeof err !== 'object') return false;
  const code = typeof err.code === 'string' ? err.code : '';
  if (PG_UNAVAILABLE.test(code) || SQLITE_UNAVAILABLE.test(code)) return true;
  // Node's HTTP server reports a client that hung up mid-request as ECONNRESET 'aborted': not the store.
  if (NET_CODES.has(code)) return err.message !== 'aborted';
  return !code && typeof err.message === 'string' && PG_CLIENT_MESSAGES.test(err.message);
};

/**
 * A hot-path query built and compiled by Kysely once, then executed with new
 * values: building and compiling a query object costs more than running a
 * small statement. `build` receives one placeholder per value (opaque markers:
 * pass them where the values go) and must put each in exactly one place;
 * values it inlines as constants stay. The compiled SQL is the dialect's own,
 * so one query serves SQLite and PostgreSQL as before.
 */
export const compileOnce = <R>(build: (values: readonly never[]) => Compilable<R>, count: number) => {
  const markers = Array.from({ length: count }, (_, i) => `\u0000mailward-value-${i}`);
  const compiled = build(markers as never[]).compile();
  const slots = compiled.parameters.map((p) => markers.indexOf(p as string));
  const used = slots.filter((i) => i >= 0);
  if (used.length !== count || new Set(used).size !== count) {
    throw new Error(`compileOnce: each of the ${count} values must appear exactly once in: ${compiled.sql}`);
  }
  return (...values: readonly unknown[]): CompiledQuery<R> => ({
    ...compiled,
    parameters: compiled.parameters.map((p, j) => (slots[j]! >= 0 ? values[slots[j]!] : p)),
  });
};

/*
 * compileOnce per dialect and key, for repos that run the same statement shape many times a second: the first
 * call builds and compiles it with the executor's own dialect (kept apart per dialect: a process may hold
 * stores of both), later calls only bind their values.
 */
const compiledByKey = new Map<string, (...values: readonly unknown[]) => CompiledQuery<unknown>>();
export const compiledFor = <R>(ex: Executor, key: string, count: number, build: (values: readonly unknown[]) => Compilable<R>) => {
  const k = `${ex.getExecutor().adapter instanceof PostgresAdapter ? 'pg' : 'sqlite'}:${key}`;
  let f = compiledByKey.get(k);
  if (!f) {
    f = compileOnce((values) => build(values), count) as (...values: readonly unknown[]) => CompiledQuery<unknown>;
    compiledByKey.set(k, f);
  }
  return f as (...values: readonly unknown[]) => CompiledQuery<R>;
};

/** The statement cache of each SQLite store, by its Kysely adapter (the root handle and its transactions share it). */
const sqliteStatements = new WeakMap<object, { prepare: (sqlText: string) => SQLite.Statement }>();

/**
 * Runs a compiled query. Inside a SQLite transaction it calls better-sqlite3 directly, as Kysely's own SQLite
 * driver would (prepare, then `all` for a statement that returns rows, else `run`), without Kysely's executor:
 * the transaction already holds the store's one connection (the fair lock), so nothing else can run on it in
 * between, and the statement is the same text through the same statement cache. Under load that executor (its
 * connection provider and the promises around each statement) cost about 3 us per statement above the driver,
 * a tenth of a TOTP code's CPU (README, speed). Everywhere else (PostgreSQL, autocommit queries) this is
 * `ex.executeQuery(q)`. A synchronous result is returned as it is: the caller awaits either.
 */
export const runCompiled = <R>(ex: Executor, q: CompiledQuery<R>): QueryResult<R> | Promise<QueryResult<R>> => {
  const statements = ex.isTransaction ? sqliteStatements.get(ex.getExecutor().adapter) : undefined;
  if (!statements) return ex.executeQuery(q);
  const stmt = statements.prepare(q.sql);
  if (stmt.reader) return { rows: stmt.all(q.parameters) as R[] };
  const { changes } = stmt.run(q.parameters);
  return { rows: [], numAffectedRows: BigInt(changes) };
};

/*
 * Work a transaction does last, just before its COMMIT (`deferToCommit`): the domain-event log takes its
 * organisation's sequence head there (src/events/events-log.ts), so on PostgreSQL the head row is locked for the
 * commit only, and a group commit takes it once for all its callers instead of once per event. Only transactions
 * opened by `transact` or a group commit defer; in any other transaction `deferToCommit` answers false and the
 * caller writes at once, as before. A group caller that fails is rolled back to its savepoint and its deferred
 * items are dropped with it. If the deferred work fails, the transaction rolls back (fail closed).
 */
type CommitTail = { flush: (tx: Tx, items: unknown[]) => Promise<void>; items: unknown[] };
const commitTails = new WeakMap<object, Map<string, CommitTail>>();

/**
 * Queues `items` to be written by `flush(tx, items)` just before `tx` commits (one call with every item queued
 * under `key` in the transaction, in order). Returns false, queuing nothing, when `tx` is not a transaction
 * opened by `transact` or `inGroupCommit`: the caller then writes them itself, now.
 */
export const deferToCommit = <I>(tx: Executor, key: string, flush: (tx: Tx, items: I[]) => Promise<void>, items: readonly I[]): boolean => {
  const tails = commitTails.get(tx);
  if (!tails) return false;
  let tail = tails.get(key);
  if (!tail) {
    tail = { flush: flush as CommitTail['flush'], items: [] };
    tails.set(key, tail);
  }
  for (const item of items) tail.items.push(item);
  return true;
};

const openTails = (tx: Tx) => commitTails.set(tx, new Map());
const markTails = (tx: Tx): Map<string, number> => new Map([...(commitTails.get(tx) ?? [])].map(([k, t]) => [k, t.items.length]));
const undoTails = (tx: Tx, mark: Map<string, number>) => {
  for (const [k, t] of commitTails.get(tx) ?? []) t.items.length = mark.get(k) ?? 0;
};
const runTails = async (tx: Tx) => {
  const tails = commitTails.get(tx);
  if (!tails) return;
  // A flush that defers more (none does today) is run again until nothing is left.
  for (let pending = true; pending; ) {
    pending = false;
    for (const t of tails.values()) {
      if (t.items.length === 0) continue;
      pending = true;
      await t.flush(tx, t.items.splice(0));
    }
  }
  commitTails.delete(tx);
};

/**
 * `db.transaction().execute(fn)` whose deferred work (`deferToCommit`) runs after `fn`, just before COMMIT.
 * Rolls back, with nothing deferred written, when `fn` or that work throws.
 */
export const transact = <T>(db: Db, fn: (tx: Tx) => Promise<T>): Promise<T> =>
  db.transaction().execute(async (tx) => {
    openTails(tx);
    const out = await fn(tx);
    await runTails(tx);
    return out;
  });

const rollbackCounts = new WeakMap<Executor, number>();

/**
 * How many times a group commit rolled `tx` back to a savepoint: work done in
 * `tx` before that may be undone (the audit service re-reads its chain head).
 */
export const rollbacksIn = (tx: Executor): number => rollbackCounts.get(tx) ?? 0;

/** PostgreSQL aborted the statement to break a deadlock (40P01) or a serialization conflict (40001): safe to run again. */
const isConflictAbort = (e: unknown) => {
  const code = (e as { code?: unknown } | null)?.code;
  return code === '40P01' || code === '40001';
};

/** One caller of a group commit: its transaction function and how to answer it. */
type GroupJob = { fn: (tx: Tx) => Promise<unknown>; resolve: (v: unknown) => void; reject: (e: unknown) => void };

type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown };

/** Largest number of callers sharing one transaction (bounds how long one commit holds the writer). */
const MAX_GROUP = 64;

/**
 * Group commit: callers that arrive while a transaction is being written share
 * the next one. Each caller's function runs in its own savepoint inside the
 * shared transaction:
 * - a caller that throws is rolled back to its savepoint and gets its error;
 *   the others' work is unaffected;
 * - a caller gets its result only after the shared COMMIT succeeded, so its
 *   change and its audit event are durable together (45 CFR 164.312(b));
 * - if BEGIN, COMMIT or a rollback to a savepoint fails, nothing of the group
 *   is known to be committed and every caller gets that error (fail closed);
 *   a caller (or the whole group) that PostgreSQL aborted to break a deadlock
 *   or a serialization conflict runs again alone, in its own transaction.
 * A group of one is a plain transaction, exactly as `db.transaction()`.
 *
 * Only for functions that take no row locks besides the audit head and await
 * nothing but queries on `tx` (audit appends, reads of secrets): on
 * PostgreSQL a caller holding the audit head while waiting for another
 * lock could deadlock with another process; on SQLite a function waiting on
 * another caller's result would wait on its own group.
 */
const createGroupCommit = (db: Db) => {
  let queue: GroupJob[] = [];
  let scheduled = false;

  // PostgreSQL runs several parameterless statements in one round trip; better-sqlite3 takes one at a time.
  const isPostgres = db.getExecutor().adapter instanceof PostgresAdapter;
  const control = async (tx: Tx, statements: string[]) => {
    if (isPostgres) await tx.executeQuery(CompiledQuery.raw(statements.join('; ')));
    else for (const s of statements) await runCompiled(tx, CompiledQuery.raw(s));
  };
  const SAVEPOINT = 'savepoint mailward_group_job';
  const RELEASE = 'release savepoint mailward_group_job';
  const ROLLBACK_TO = 'rollback to savepoint mailward_group_job';

  const runGroup = async (jobs: GroupJob[]) => {
    if (jobs.length === 1) {
      const job = jobs[0]!;
      try {
        job.resolve(await transact(db, job.fn));
      } catch (e) {
        job.reject(e);
      }
      return;
    }
    const outcomes: Outcome[] = [];
    try {
      await db.transaction().execute(async (tx) => {
        openTails(tx);
        await control(tx, [SAVEPOINT]);
        for (const [i, job] of jobs.entries()) {
          const mark = markTails(tx);
          try {
            outcomes.push({ ok: true, value: await job.fn(tx) });
          } catch (error) {
            outcomes.push({ ok: false, error });
          }
          const outcome = outcomes[i]!;
          const failed = !outcome.ok;
          // A lost connection or SQLite's own rollback (disk full, I/O error) ended the shared transaction: no
          // savepoint is left to return to, so the group fails with the cause rather than with "no such savepoint".
          if (!outcome.ok && (isStoreUnavailable(outcome.error) || isStoreBusy(outcome.error))) throw outcome.error;
          if (failed) {
            rollbackCounts.set(tx, rollbacksIn(tx) + 1);
            undoTails(tx, mark);
          }
          // Undo a failed caller's work; COMMIT releases the last savepoint. If a
          // control statement fails the transaction is gone (e.g. SQLite rolled it
          // back): the whole group fails below. Each savepoint is released before the next is taken: nested
          // savepoints (one per caller, never released) measured slower on SQLite, whose page writes then
          // consult every open savepoint (an audit insert took 10x as long in a group of 30).
          const next = i < jobs.length - 1 ? [RELEASE, SAVEPOINT] : [];
          const statements = failed ? [ROLLBACK_TO, ...next] : next;
          if (statements.length) await control(tx, statements);
        }
        // The callers' deferred work (the event head and their events) in one go, last, before COMMIT.
        await runTails(tx);
      });
    } catch (e) {
      // The whole group's transaction was aborted by a deadlock or serialization failure: nothing of it committed.
      if (isConflictAbort(e)) {
        for (const job of jobs) await runGroup([job]);
        return;
      }
      for (const job of jobs) job.reject(e);
      return;
    }
    // PostgreSQL broke a deadlock (40P01) or a serialization conflict (40001) by failing one caller's statement
    // (its savepoint rolled back, the others committed). Two processes' groups can deadlock where their callers
    // alone would not (a later caller of one group waits for a row the other group holds, while that group waits
    // for an event head the first caller took), so such a caller runs again alone, as it would without grouping.
    const again: GroupJob[] = [];
    jobs.forEach((job, i) => {
      const o = outcomes[i]!;
      if (o.ok) job.resolve(o.value);
      else if (isConflictAbort(o.error)) again.push(job);
      else job.reject(o.error);
    });
    for (const job of again) await runGroup([job]);
  };

  const drain = async () => {
    try {
      while (queue.length) {
        const jobs = queue.length <= MAX_GROUP ? queue : queue.slice(0, MAX_GROUP);
        queue = queue.length <= MAX_GROUP ? [] : queue.slice(MAX_GROUP);
        await runGroup(jobs);
      }
    } finally {
      scheduled = false;
    }
  };

  return <T>(fn: (tx: Tx) => Promise<T>): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      queue.push({ fn, resolve: resolve as (v: unknown) => void, reject });
      if (scheduled) return;
      scheduled = true;
      // After this turn's I/O callbacks, so the requests that arrived together are grouped together.
      setImmediate(() => void drain());
    });
};

const groupCommits = new WeakMap<Db, <T>(fn: (tx: Tx) => Promise<T>) => Promise<T>>();

/**
 * Runs `fn` in a transaction shared with other callers of the same handle
 * (see createGroupCommit for the rules `fn` must keep). Resolves after commit.
 */
export const inGroupCommit = <T>(db: Db, fn: (tx: Tx) => Promise<T>): Promise<T> => {
  let run = groupCommits.get(db);
  if (!run) {
    run = createGroupCommit(db);
    groupCommits.set(db, run);
  }
  return run(fn);
};
