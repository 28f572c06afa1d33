import { createHash } from 'node:crypto';
import { sql } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import { hexOfStored } from '../src/audit/audit-columns.js';
import { createTreeStore } from '../src/audit/tree-store.js';
import { systemActor } from '../src/identity/principal.js';
import { EVENT_ROWS } from './support/audit-rows.js';
import { testDialects } from './support/dialects.js';
import { createTestApp, type TestApp } from './support/test-app.js';

/** RFC 6962 2.1 Merkle Tree Hash, written out here (not src/audit/merkle.ts) so the tree store is checked against it. */
const mth = (leaves: Buffer[]): Buffer => {
  const h = (...parts: Buffer[]) => createHash('sha256').update(Buffer.concat(parts)).digest();
  if (leaves.length === 0) return h();
  if (leaves.length === 1) return h(Buffer.from([0]), leaves[0]!);
  let k = 1;
  while (k * 2 < leaves.length) k *= 2;
  return h(Buffer.from([1]), mth(leaves.slice(0, k)), mth(leaves.slice(k)));
};

const append = async (t: TestApp, n: number) => {
  for (let i = 0; i < n; i++) {
    await t.c.audit.recordAlone({
      action: 'test.noted',
      actor: { ...systemActor(t.orgId), chain: [{ type: 'organization', id: t.orgId, name: 'General Hospital' }] },
      target: { type: 'thing', id: `thing_${i}` },
      details: { n: i },
    });
  }
  await t.c.audit.sync();
};

const storedRoot = async (t: TestApp, size: number) => {
  const rows = await t.c.store.db.selectFrom('audit_events').select(['seq', 'hash']).where('seq', '<=', size).orderBy('seq').execute();
  return mth(rows.map((r) => Buffer.from(hexOfStored(r.hash), 'hex'))).toString('hex');
};

for (const dialect of testDialects()) {
  describe(`audit tree catch-up from the integrator's hashes (${dialect})`, () => {
    let t: TestApp | undefined;
    afterEach(async () => {
      await t?.close();
      t = undefined;
    });

    it('signs the RFC 6962 root of the chain this process integrated, across several catch-ups', async () => {
      t = await createTestApp(dialect);
      await append(t, 37);
      const first = await t.c.auditLog.checkpoints.current();
      expect(first.root_hash).toBe(await storedRoot(t, first.tree_size));
      await append(t, 70);
      const second = await t.c.auditLog.checkpoints.current();
      expect(second.tree_size).toBeGreaterThan(first.tree_size + 69);
      expect(second.root_hash).toBe(await storedRoot(t, second.tree_size));
      expect((await t.c.auditLog.verify()).ok).toBe(true);
    });

    it('checks rows it did not chain itself: a tree store without the integrator refuses a changed row, this process signs what it chained', async () => {
      t = await createTestApp(dialect);
      await append(t, 40);
      // A tamperer rewrites event 20 after its integration (the append-only triggers dropped, as in audit-tamper).
      const db = t.c.store.db;
      if (dialect === 'sqlite') {
        for (const name of ['audit_events_no_update', 'audit_events_no_delete']) await sql`drop trigger ${sql.raw(name)}`.execute(db);
      } else {
        await sql`alter table audit_event_rows disable trigger audit_events_append_only`.execute(db);
      }
      await db.updateTable(EVENT_ROWS).set({ details: '{"n":"rewritten"}' }).where('seq', '=', 20).execute();
      // Another process (a tree store that was told nothing) reads the rows back and refuses to index over them.
      const other = createTreeStore({ db, dialect });
      await expect(other.catchUp()).rejects.toMatchObject({ code: 'audit_chain_broken', extra: { first_bad_seq: 20 } });
      // This process folds the hashes its integrator computed before the change: the signed root is the original
      // chain's, and verify names the rewritten row against it.
      const cp = await t.c.auditLog.checkpoints.current();
      expect(cp.root_hash).toBe(await storedRoot(t, cp.tree_size));
      const r = await t.c.auditLog.verify();
      expect(r.ok).toBe(false);
      expect(r.first_bad_seq).toBe(20);
    });
  });
}
