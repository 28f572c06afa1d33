import type { Kysely } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import { type EventRow, GENESIS_HASH, recomputeRowHash } from '../src/audit/audit-chain.js';
import { createAuditService } from '../src/audit/audit-service.js';
import { canonicalJson } from '../src/audit/canonical.js';
import { eventRows, selectEventRows } from '../src/audit/event-rows.js';
import { createTreeStore } from '../src/audit/tree-store.js';
import { fixedClock } from '../src/kernel/clock.js';
import { migrateToLatest } from '../src/store/migrate.js';
import { EVENT_ROWS, chainedRows, migrateWithHead } from './support/audit-rows.js';
import { testDialects } from './support/dialects.js';
import { storeMigratedTo } from './support/migration-store.js';

const CHAINS = [
  [
    { type: 'organization', id: 'org_0190f0f0f0f0f0f0f0f0f0f0f0f0f0f0', name: 'General Hospital' },
    { type: 'agent', id: 'agt_0190f0f0f0f0f0f0f0f0f0f0f0f0f0f0', name: 'Scheduler' },
  ],
  [{ type: 'system', id: 'mailward', name: 'Mailward' }],
  [
    { type: 'organization', id: 'org_0190f0f0f0f0f0f0f0f0f0f0f0f0f0f0', name: 'General Hospital' },
    { type: 'human', id: 'hum_0190f0f0f0f0f0f0f0f0f0f0f0f0f0f0', name: 'Dr. Chen' },
  ],
];

/** Rows in the layout before 0040 (chain as text, hashes as hex), chained as the integrator chained them. */
const oldRows = (n: number): EventRow[] =>
  chainedRows(n, (i) => ({
    seq: i,
    id: `evt_${i.toString(16).padStart(32, '0')}`,
    at: new Date(Date.UTC(2026, 0, 1) + i * 1000).toISOString(),
    org_id: i % 7 === 0 ? null : 'org_0190f0f0f0f0f0f0f0f0f0f0f0f0f0f0',
    action: i % 3 === 0 ? 'email.submitted' : 'email.read',
    actor_type: 'agent',
    actor_id: 'agt_0190f0f0f0f0f0f0f0f0f0f0f0f0f0f0',
    delegation_chain: canonicalJson(CHAINS[i % CHAINS.length]),
    target_type: i % 5 === 0 ? null : 'message',
    target_id: i % 5 === 0 ? null : `msg_${i.toString(16).padStart(32, '0')}`,
    outcome: i % 11 === 0 ? 'denied' : 'success',
    request_id: `req_${i}`,
    client_ip: i % 2 ? '10.0.0.1' : null,
    content_hash: i % 4 === 0 ? null : i % 9 === 0 ? 'sha-1:not-hex ✓' : 'ab'.repeat(32),
    details: canonicalJson({ n: i, note: 'é ✓' }),
  }));

for (const dialect of testDialects()) {
  describe(`audit migration 0040: compact events (${dialect})`, () => {
    const cleanups: (() => Promise<void>)[] = [];
    afterEach(async () => {
      for (const c of cleanups.splice(0).reverse()) await c();
    });

    const storeBefore0040 = async () => {
      const { store, close } = await storeMigratedTo(dialect, '0039-oauth-records-account');
      cleanups.push(close);
      return store;
    };

    it('moves old-format rows into the compact layout: same events, same hashes, one row per distinct chain, still append-only', async () => {
      const store = await storeBefore0040();
      const db = store.db as unknown as Kysely<any>;
      const before = oldRows(120);
      for (let i = 0; i < before.length; i += 40)
        await db
          .insertInto('audit_events')
          .values(before.slice(i, i + 40))
          .execute();

      const after = await migrateWithHead(store, db, before);
      expect(after).toEqual(before);
      const chains = await store.db.selectFrom('audit_chains').selectAll().orderBy('id').execute();
      expect(chains.map((c) => JSON.parse(c.chain))).toEqual([CHAINS[1], CHAINS[2], CHAINS[0]]);
      const stored = await store.db
        .selectFrom('audit_events')
        .select(['hash', 'chain_id', 'content_hash'])
        .where('seq', '=', 1)
        .executeTakeFirstOrThrow();
      expect(Buffer.isBuffer(stored.hash) && stored.hash.length).toBe(32);
      expect(Buffer.from(stored.content_hash!).equals(Buffer.concat([Buffer.of(1), Buffer.alloc(32, 0xab)]))).toBe(true);
      // prev_hash is no longer stored (0042): the first event's is the genesis hash, as read.
      expect(after[0]!.prev_hash).toBe(GENESIS_HASH);
      expect(Number(stored.chain_id)).toBe(1);
      for (const r of after) expect(recomputeRowHash(r, r.prev_hash)).toBe(r.hash);

      // The append-only triggers came back with the rebuilt table, and cover the chains too.
      // The stored rows since 0048 (`audit_events` is a view of them).
      await expect(store.db.updateTable(EVENT_ROWS).set({ details: 'x' }).where('seq', '=', 2).execute()).rejects.toThrow(/append-only/);
      await expect(store.db.deleteFrom(EVENT_ROWS).where('seq', '=', 2).execute()).rejects.toThrow(/append-only/);
      await expect(store.db.updateTable('audit_chains').set({ chain: '[]' }).where('id', '=', 1).execute()).rejects.toThrow(/append-only/);
      await expect(store.db.deleteFrom('audit_chains').where('id', '=', 1).execute()).rejects.toThrow(/append-only/);

      // New events chain onto the migrated head, reuse the migrated chain rows, and the tree covers both.
      const audit = createAuditService({ db: store.db, dialect, clock: fixedClock('2026-03-01T00:00:00Z') });
      const agent = { type: 'agent' as const, id: 'agt_0190f0f0f0f0f0f0f0f0f0f0f0f0f0f0', orgId: 'org_1', chain: CHAINS[0]! };
      const fresh = { ...agent, chain: [{ type: 'organization', id: 'org_2', name: 'Clinic' }] };
      for (let i = 0; i < 5; i++) await audit.recordAlone({ action: 'email.read', actor: i % 2 ? fresh : agent, details: { i } });
      await audit.sync();
      const all = await eventRows(selectEventRows(store.db).orderBy('e.seq'));
      expect(all).toHaveLength(125);
      let prev = GENESIS_HASH;
      for (const r of all) {
        expect(r.prev_hash).toBe(prev);
        expect(recomputeRowHash(r, r.prev_hash)).toBe(r.hash);
        prev = r.hash;
      }
      expect((await store.db.selectFrom('audit_head').select('hash').executeTakeFirstOrThrow()).hash).toBe(prev);
      expect((await store.db.selectFrom('audit_chains').select('id').execute()).length).toBe(4);
      const tree = createTreeStore({ db: store.db, dialect });
      await tree.catchUp();
      expect((await tree.rootAt(125)).length).toBe(32);
    }, 120_000);

    it('keeps a tampered hash failing: a stored hash that is not 64 lowercase hex characters never verifies after the move', async () => {
      const store = await storeBefore0040();
      const db = store.db as unknown as Kysely<any>;
      const rows = oldRows(3);
      rows[1] = { ...rows[1]!, hash: rows[1]!.hash.toUpperCase() };
      rows[2] = { ...rows[2]!, prev_hash: 'not hex' };
      await db.insertInto('audit_events').values(rows).execute();
      await migrateToLatest(store);
      const after = await eventRows(selectEventRows(store.db).orderBy('e.seq'));
      expect(recomputeRowHash(after[0]!, after[0]!.prev_hash)).toBe(after[0]!.hash);
      expect(after[1]!.hash).not.toMatch(/^[0-9a-f]{64}$/);
      // Since 0042 prev_hash is the previous row's hash as stored: the next row chains from a value that is no hash.
      expect(after[2]!.prev_hash).toBe(after[1]!.hash);
      expect(recomputeRowHash(after[2]!, after[2]!.prev_hash)).not.toBe(after[2]!.hash);
    }, 60_000);
  });
}
