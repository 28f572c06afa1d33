import fs from 'node:fs';
import path from 'node:path';
import SQLite from 'better-sqlite3';
import { Kysely, PostgresDialect, SqliteDialect, type Transaction } from 'kysely';
import pg from 'pg';
import type { Database } from './schema.js';

export type Dialect = 'sqlite' | 'postgres';
export type Db = Kysely<Database>;
export type Tx = Transaction<Database>;
/** Either the root handle or an open transaction: repos accept both. */
export type Executor = Kysely<Database>;

export type StoreOptions = { kind: 'sqlite'; file: string } | { kind: 'postgres'; url: string; poolSize?: number };

export type Store = { db: Db; dialect: Dialect; destroy: () => Promise<void>; describe: string; file?: string };

// int8 (bigint) columns come back as JS numbers: audit seq stays far below 2^53.
const pgTypes = {
  getTypeParser: (oid: number, format?: string) =>
    oid === 20 ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format as 'text'),
};

/**
 * Kysely prepares every query anew; better-sqlite3 statements are reusable, and
 * preparing is a large share of a small query's cost. Cache them by SQL text
 * (bounded; a statement still iterating a stream is never handed out twice).
 */
const withStatementCache = (sqlite: SQLite.Database, max = 1000) => {
  const cache = new Map<string, SQLite.Statement>();
  return {
    close: () => sqlite.close(),
    prepare: (text: string) => {
      let stmt = cache.get(text);
      if (!stmt || stmt.busy) {
        stmt = sqlite.prepare(text);
        if (cache.size >= max) cache.delete(cache.keys().next().value as string);
        cache.set(text, stmt);
      }
      return stmt;
    },
  };
};

export const openStore = (opts: StoreOptions): Store => {
  if (opts.kind === 'sqlite') {
    fs.mkdirSync(path.dirname(opts.file), { recursive: true });
    const sqlite = new SQLite(opts.file);
    sqlite.pragma('journal_mode = WAL');
    // WAL + NORMAL is durable across process crashes; an OS crash can lose the
    // last transactions but never corrupts the file (sqlite.org/wal.html).
    sqlite.pragma('synchronous = NORMAL');
    sqlite.pragma('foreign_keys = ON');
    sqlite.pragma('busy_timeout = 5000');
    const db = new Kysely<Database>({ dialect: new SqliteDialect({ database: withStatementCache(sqlite) }) });
    return { db, dialect: 'sqlite', destroy: () => db.destroy(), describe: `sqlite:${opts.file}`, file: opts.file };
  }
  const pool = new pg.Pool({ connectionString: opts.url, max: opts.poolSize ?? 10, types: pgTypes });
  // An idle client losing its connection must not crash the process; the pool replaces it.
  pool.on('error', () => {});
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  const u = new URL(opts.url);
  return { db, dialect: 'postgres', destroy: () => db.destroy(), describe: `postgres://${u.host}${u.pathname}` };
};
