import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStore, type Store } from '../src/store/db.js';
import { freshDatabase, testDialects } from './support/dialects.js';

// PostgreSQL only: SQLite statements are prepared once per text by better-sqlite3's own cache (store/db.ts).
describe.runIf(testDialects().includes('postgres'))('PostgreSQL named prepared statements', () => {
  let fresh: Awaited<ReturnType<typeof freshDatabase>>;
  let store: Store;
  beforeAll(async () => {
    fresh = await freshDatabase('postgres');
    store = openStore({ kind: 'postgres', url: fresh.url!, poolSize: 1 });
    await sql`create table t (id text primary key, a text)`.execute(store.db);
  });
  afterAll(async () => {
    await store.destroy();
    await fresh.drop();
  });

  const prepared = async () =>
    (await sql<{ name: string; statement: string }>`select name, statement from pg_prepared_statements order by name`.execute(store.db))
      .rows;

  it('parses a parameterised query once per connection and answers as an unnamed one would', async () => {
    for (let i = 0; i < 3; i++)
      await store.db
        .insertInto('t' as never)
        .values({ id: `r${i}`, a: `v${i}` } as never)
        .execute();
    const rows = await store.db
      .selectFrom('t' as never)
      .select(['id', 'a'] as never)
      .where('id' as never, '=', 'r1' as never)
      .execute();
    expect(rows).toEqual([{ id: 'r1', a: 'v1' }]);
    const names = await prepared();
    const insert = names.filter((n) => n.statement.startsWith('insert into "t"'));
    // Three inserts, one prepared statement (one connection in the pool).
    expect(insert).toHaveLength(1);
    expect(insert[0]!.name).toMatch(/^mw_\d+$/);
    // Statements without parameters (BEGIN, COMMIT, this one) stay unnamed.
    expect(names.some((n) => /pg_prepared_statements/.test(n.statement))).toBe(false);
  });

  it('runs a statement unnamed again once a changed table breaks its cached plan (SQLSTATE 0A000)', async () => {
    const q = (ex = store.db) =>
      ex
        .selectFrom('t' as never)
        .selectAll()
        .where('id' as never, '=', 'r2' as never)
        .execute();
    expect(await q()).toEqual([{ id: 'r2', a: 'v2' }]);
    await sql`alter table t add column b text`.execute(store.db);
    // Outside a transaction the failed named execution is retried unnamed at once.
    expect(await q()).toEqual([{ id: 'r2', a: 'v2', b: null }]);
    await sql`alter table t add column c text`.execute(store.db);
    // That text is now unnamed for good: inside a transaction it works too.
    expect(await store.db.transaction().execute((tx) => q(tx))).toEqual([{ id: 'r2', a: 'v2', b: null, c: null }]);
  });

  it('inside a transaction a broken cached plan fails the transaction, and the retry runs unnamed', async () => {
    const q = (ex: typeof store.db) =>
      ex
        .selectFrom('t' as never)
        .selectAll()
        .where('a' as never, '=', 'v0' as never)
        .execute();
    expect(await q(store.db)).toHaveLength(1);
    await sql`alter table t add column d text`.execute(store.db);
    await expect(store.db.transaction().execute((tx) => q(tx))).rejects.toMatchObject({ code: '0A000' });
    expect(await store.db.transaction().execute((tx) => q(tx))).toEqual([{ id: 'r0', a: 'v0', b: null, c: null, d: null }]);
  });
});
