import { sql } from 'kysely';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { systemActor } from '../src/identity/principal.js';
import { inGroupCommit, isStoreUnavailable } from '../src/store/db.js';
import { waitFor } from './support/wait.js';
import { PG_ADMIN_URL, testDialects } from './support/dialects.js';
import { createTestApp, type TestApp } from './support/test-app.js';

const onAdmin = async (query: string, params: unknown[] = []) => {
  const admin = new pg.Client({ connectionString: PG_ADMIN_URL });
  await admin.connect();
  try {
    await admin.query(query, params);
  } finally {
    await admin.end();
  }
};

/**
 * Makes the store unable to write, the way production sees it: on SQLite the database cannot grow
 * (max_page_count answers SQLITE_FULL exactly like a full disk, and SQLite rolls the transaction back itself);
 * on PostgreSQL the database turns read-only, like a standby after failover (SQLSTATE 25006).
 */
const setWritable = async (t: TestApp, writable: boolean) => {
  if (t.dialect === 'sqlite') {
    const rows = await sql<{ page_count: number }>`pragma page_count`.execute(t.c.store.db);
    await sql.raw(`pragma max_page_count = ${writable ? 1_073_741_823 : rows.rows[0]!.page_count}`).execute(t.c.store.db);
    return;
  }
  const name = new URL(t.env.DATABASE_URL!).pathname.slice(1);
  await onAdmin(`alter database ${name} set default_transaction_read_only = ${writable ? 'off' : 'on'}`);
  // The setting applies to new sessions: close the pool's, and it reconnects with the new one.
  await onAdmin('select pg_terminate_backend(pid) from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()', [name]);
};

const pollHealth = async (t: TestApp, status: number) => {
  let h = await t.call('GET', '/healthz', null);
  // The write probe runs at most every 2 s, so the answer may lag the store by that much.
  await waitFor(
    async () => {
      h = await t.call('GET', '/healthz', null);
      return h.status === status;
    },
    { timeoutMs: 20_000, everyMs: 100 },
  );
  return h;
};

for (const dialect of testDialects()) {
  describe(`a store that cannot write (${dialect})`, () => {
    let t: TestApp | undefined;
    afterEach(async () => {
      if (t) await setWritable(t, true).catch(() => {});
      await t?.close();
      t = undefined;
    });

    it('answers 503 store_unavailable (temporary) instead of a 500, reports it on /healthz, and recovers', async () => {
      t = await createTestApp(dialect);
      expect((await t.call('GET', '/healthz', null)).status).toBe(200);
      await setWritable(t, false);

      // Writes fail once the store cannot grow (SQLite may first fill its last pages).
      let r = await t.call('POST', '/v1/departments', t.adminKey, { name: 'Ward 0' });
      for (let i = 1; r.status === 201 && i < 2000; i++)
        r = await t.call('POST', '/v1/departments', t.adminKey, { name: `Ward ${i} ${'x'.repeat(150)}` });
      expect(r.status).toBe(503);
      expect(r.headers['content-type']).toMatch(/application\/problem\+json/);
      expect(r.body).toMatchObject({ code: 'store_unavailable', temporary: true });
      expect(r.headers['retry-after']).toBeTruthy();

      // Callers sharing a group commit all get the cause, not "no such savepoint".
      const actor = systemActor(t.orgId);
      const group = await Promise.allSettled(
        Array.from({ length: 10 }, (_, i) =>
          inGroupCommit(t!.c.store.db, (tx) =>
            t!.c.audit.record(tx, { action: 'test.full', actor, details: { i, pad: 'x'.repeat(4000) } }),
          ),
        ),
      );
      expect(group.every((g) => g.status === 'rejected' && isStoreUnavailable(g.reason))).toBe(true);

      const h = await pollHealth(t, 503);
      expect(h.status).toBe(503);
      expect(h.body).toMatchObject({ code: 'store_read_only', store: 'read_only', temporary: true });

      await setWritable(t, true);
      expect((await pollHealth(t, 200)).body).toEqual({ status: 'ok', store: dialect });
      expect((await t.call('POST', '/v1/departments', t.adminKey, { name: 'After' })).status).toBe(201);
    });
  });
}
