import { type Migration, type MigrationProvider, Migrator, sql } from 'kysely';
import { AppError } from '../kernel/errors.js';
import type { Store } from './db.js';
import * as m0001 from './migrations/0001-foundation.js';

/** Migrations in order. Names are frozen once released; add, never edit. */
export const MIGRATIONS: Record<string, Migration> = {
  '0001-foundation': m0001,
};

const provider: MigrationProvider = { getMigrations: async () => MIGRATIONS };

// Any 64-bit constant; all Mailward processes agree on it.
const PG_MIGRATION_LOCK = 7_466_115_001;

/**
 * Brings the schema up to date. Safe when several processes start at once: on
 * PostgreSQL a session advisory lock serialises them (Kysely's own lock table
 * also exists, but creating it can race); SQLite serialises writers itself.
 */
export const migrateToLatest = async (store: Store): Promise<string[]> => {
  const run = async () => {
    const migrator = new Migrator({ db: store.db, provider });
    const { error, results } = await migrator.migrateToLatest();
    if (error) {
      throw new AppError('migration_failed', 500, `Database migration failed: ${String(error)}`, { cause: error });
    }
    return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
  };
  if (store.dialect === 'sqlite') return run();
  return store.db.connection().execute(async (conn) => {
    await sql`select pg_advisory_lock(${PG_MIGRATION_LOCK})`.execute(conn);
    try {
      return await run();
    } finally {
      await sql`select pg_advisory_unlock(${PG_MIGRATION_LOCK})`.execute(conn);
    }
  });
};
