import path from 'node:path';
import type { Kysely } from 'kysely';
import { Migrator } from 'kysely/migration';
import { loadConfig } from '../../src/app/config.js';
import { MIGRATIONS, migrateToLatest } from '../../src/store/migrate.js';
import { type Dialect, type Executor, openStore, type Store } from '../../src/store/db.js';
import { freshDatabase } from './dialects.js';

export type MigratedStore = {
  store: Store;
  /** The same database without today's schema types: for writing rows as an older schema had them. */
  old: Kysely<any>;
  /** Destroys the store and drops its database. */
  close: () => Promise<void>;
};

/**
 * A fresh store of `dialect` migrated up to and including `name`, so a test can write rows as the schema then had
 * them and run the later migrations over them (`migrateToLatest`). The migration tests share it.
 */
export const storeMigratedTo = async (dialect: Dialect, name: string): Promise<MigratedStore> => {
  const fresh = await freshDatabase(dialect);
  const store = openStore(
    dialect === 'sqlite'
      ? { kind: 'sqlite', file: path.join(fresh.dataDir, 'mailward.db'), checkpointEveryMs: 0 }
      : { kind: 'postgres', url: fresh.url! },
  );
  const close = async () => {
    await store.destroy();
    await fresh.drop();
  };
  const upTo = await new Migrator({ db: store.db, provider: { getMigrations: async () => MIGRATIONS } }).migrateTo(name);
  if (upTo.error) {
    await close();
    throw new Error(`migrating a test store to ${name} failed: ${String(upTo.error)}`);
  }
  return { store, old: store.db as unknown as Kysely<any>, close };
};

/** The plan of a query, as text: SQLite's EXPLAIN QUERY PLAN details, PostgreSQL's EXPLAIN lines. */
export const planOf = async (ex: Executor, dialect: string, q: { compile: () => { sql: string; parameters: readonly unknown[] } }) => {
  const c = q.compile();
  const explain = dialect === 'sqlite' ? 'explain query plan ' : 'explain ';
  const r = await ex.executeQuery<Record<string, unknown>>({
    ...c,
    sql: explain + c.sql,
    query: { kind: 'RawNode' } as never,
    queryId: { queryId: 'x' },
  });
  return r.rows.map((row) => String(row.detail ?? row['QUERY PLAN'])).join('\n');
};

/**
 * A fresh database of `dialect`, migrated, with the environment a child server process opens it with (this
 * process's own without DATABASE_URL, plus the database's): for tests that run processes against one store.
 */
export const migratedDatabase = async (dialect: Dialect): Promise<{ env: NodeJS.ProcessEnv; store: Store; drop: () => Promise<void> }> => {
  const db = await freshDatabase(dialect);
  const { DATABASE_URL: _ignored, ...base } = process.env;
  const env = { ...base, ...db.env };
  const store = openStore(loadConfig(env).database);
  try {
    await migrateToLatest(store);
  } catch (e) {
    await store.destroy();
    await db.drop();
    throw e;
  }
  return { env, store, drop: db.drop };
};
