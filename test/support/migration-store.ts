import path from 'node:path';
import type { Kysely } from 'kysely';
import { Migrator } from 'kysely/migration';
import { MIGRATIONS } from '../../src/store/migrate.js';
import { type Dialect, openStore, type Store } from '../../src/store/db.js';
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
