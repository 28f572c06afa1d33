import { sql } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import { type EventRow, GENESIS_HASH, recomputeRowHash } from '../src/audit/audit-chain.js';
import { storedOfContentHash, storedOfHex } from '../src/audit/audit-columns.js';
import { createAuditService } from '../src/audit/audit-service.js';
import { canonicalJson } from '../src/audit/canonical.js';
import { eventRows, selectEventRows } from '../src/audit/event-rows.js';
import { createTreeStore } from '../src/audit/tree-store.js';
import { fixedClock } from '../src/kernel/clock.js';
import { EVENT_ROWS, chainedRows, migrateWithHead } from './support/audit-rows.js';
import { testDialects } from './support/dialects.js';
import { storeMigratedTo } from './support/migration-store.js';

const CHAIN = canonicalJson([{ type: 'organization', id: 'org_0190f0f0f0f0f0f0f0f0f0f0f0f0f0f0', name: 'General Hospital' }]);

// Ids of every form an id column has held: Mailward ids, other text (a client id, a Message-ID hash, a name), text
// that only looks like an id (upper case, too short, another separator), non-ASCII, empty, and null.
const TARGETS: (string | null)[] = [
  'msg_0190f0f0f0f0f0f0f0f0f0f0f0f0f0f0',
  'oauth-client-7',
  'ab'.repeat(32),
  'MSG_0190F0F0F0F0F0F0F0F0F0F0F0F0F0F0',
  'msg_0190f0f0f0f0f0f0f0f0f0f0f0f0f0f',
  'msg-0190f0f0f0f0f0f0f0f0f0f0f0f0f0f0',
  'ms1_0190f0f0f0f0f0f0f0f0f0f0f0f0f0f0',
  'pâtient ✓ "quoted" \\ \u0001',
  '',
  null,
];

/** Rows in the 0040 layout (ids as text, hashes as bytes, the chain by reference), chained as the integrator chained them. */
const rows0040 = (n: number): EventRow[] =>
  chainedRows(n, (i) => {
    const target = TARGETS[i % TARGETS.length]!;
    return {
      seq: i,
      id: i % 13 === 0 ? `legacy-event-${i}` : `evt_${i.toString(16).padStart(32, '0')}`,
      at: new Date(Date.UTC(2026, 0, 1) + i * 1000).toISOString(),
      org_id: i % 7 === 0 ? null : 'org_0190f0f0f0f0f0f0f0f0f0f0f0f0f0f0',
      action: 'email.read',
      actor_type: i % 4 === 0 ? 'system' : 'agent',
      actor_id: i % 4 === 0 ? 'mailward' : 'agt_0190f0f0f0f0f0f0f0f0f0f0f0f0f0f0',
      delegation_chain: CHAIN,
      target_type: target === null ? null : 'message',
      target_id: target,
      outcome: 'success',
      request_id: i % 3 === 0 ? null : i % 3 === 1 ? `req_${i.toString(16).padStart(32, '0')}` : `req_${i}`,
      client_ip: '10.0.0.1',
      content_hash: i % 2 ? 'ab'.repeat(32) : null,
      details: canonicalJson({ n: i }),
    };
  });

for (const dialect of testDialects()) {
  describe(`audit migration 0042: ids as bytes, no stored prev_hash (${dialect})`, () => {
    const cleanups: (() => Promise<void>)[] = [];
    afterEach(async () => {
      for (const c of cleanups.splice(0).reverse()) await c();
    });

    it('moves 0040-layout rows: same events and hashes, ids as bytes, prev_hash from the previous row, still append-only', async () => {
      const { store, old, close } = await storeMigratedTo(dialect, '0041-search-segments');
      cleanups.push(close);
      const before = rows0040(60);
      await old.insertInto('audit_chains').values({ id: 1, chain: CHAIN }).execute();
      await old
        .insertInto('audit_events')
        .values(
          before.map(({ delegation_chain: _, prev_hash, hash, content_hash, ...r }) => ({
            ...r,
            chain_id: 1,
            content_hash: storedOfContentHash(content_hash),
            prev_hash: storedOfHex(prev_hash),
            hash: storedOfHex(hash),
          })),
        )
        .execute();

      const after = await migrateWithHead(store, old, before);
      expect(after).toEqual(before);
      for (const r of after) expect(recomputeRowHash(r, r.prev_hash)).toBe(r.hash);
      // The id form: 3 prefix bytes + 16 bytes for a Mailward id, 0x00 + UTF-8 for anything else.
      const stored = await store.db.selectFrom('audit_events').select(['id', 'target_id', 'actor_id']).orderBy('seq').execute();
      expect(Buffer.from(stored[0]!.id).length).toBe(19);
      expect(
        Buffer.from(stored[9]!.target_id!).equals(Buffer.concat([Buffer.from('msg'), Buffer.from(`0190${'f0'.repeat(14)}`, 'hex')])),
      ).toBe(true);
      expect(Buffer.from(stored[0]!.target_id!).equals(Buffer.from('\0oauth-client-7'))).toBe(true);
      expect(Buffer.from(stored[3]!.actor_id!).equals(Buffer.from('\0mailward'))).toBe(true);
      expect(Buffer.from(stored[12]!.id).equals(Buffer.from('\0legacy-event-13'))).toBe(true);
      // prev_hash is gone; the indexes are back (as migration 0046 remade them: on keys of the ids, and the time).
      const cols =
        dialect === 'sqlite'
          ? (await sql<{ name: string }>`select name from pragma_table_info('audit_events')`.execute(store.db)).rows
          : (
              await sql<{
                name: string;
              }>`select column_name as name from information_schema.columns where table_name = 'audit_events'`.execute(store.db)
            ).rows;
      expect(cols.map((c) => c.name)).not.toContain('prev_hash');
      const idx =
        dialect === 'sqlite'
          ? (
              await sql<{ name: string }>`select name from sqlite_master where type = 'index' and tbl_name = 'audit_event_rows'`.execute(
                store.db,
              )
            ).rows
          : (await sql<{ name: string }>`select indexname as name from pg_indexes where tablename = 'audit_event_rows'`.execute(store.db))
              .rows;
      const names = idx.map((i) => i.name);
      for (const n of ['audit_events_org_key_idx', 'audit_events_actor_key_idx', 'audit_events_target_key_idx', 'audit_events_at_idx'])
        expect(names).toContain(n);

      // The stored rows since 0048 (`audit_events` is a view of them).
      await expect(store.db.updateTable(EVENT_ROWS).set({ details: 'x' }).where('seq', '=', 2).execute()).rejects.toThrow(/append-only/);
      await expect(store.db.deleteFrom(EVENT_ROWS).where('seq', '=', 2).execute()).rejects.toThrow(/append-only/);

      // New events chain onto the migrated head; the service's filters find old and new rows by their text ids.
      const audit = createAuditService({ db: store.db, dialect, clock: fixedClock('2026-03-01T00:00:00Z') });
      const agent = {
        type: 'agent' as const,
        id: 'agt_0190f0f0f0f0f0f0f0f0f0f0f0f0f0f0',
        orgId: 'org_0190f0f0f0f0f0f0f0f0f0f0f0f0f0f0',
        chain: [],
      };
      for (const target of ['msg_0190f0f0f0f0f0f0f0f0f0f0f0f0f0f0', 'oauth-client-7'])
        await audit.recordAlone({ action: 'email.read', actor: agent, target: { type: 'message', id: target }, requestId: 'req_x' });
      await audit.sync();
      const all = await eventRows(selectEventRows(store.db).orderBy('e.seq'));
      expect(all).toHaveLength(62);
      let prev = GENESIS_HASH;
      for (const r of all) {
        expect(r.prev_hash).toBe(prev);
        expect(recomputeRowHash(r, prev)).toBe(r.hash);
        prev = r.hash;
      }
      const q = { orgId: 'org_0190f0f0f0f0f0f0f0f0f0f0f0f0f0f0', limit: 100 };
      expect((await audit.list({ ...q, targetId: 'oauth-client-7' })).map((e) => e.seq)).toEqual([1, 11, 31, 41, 51, 62]);
      expect((await audit.list({ ...q, targetId: 'msg_0190f0f0f0f0f0f0f0f0f0f0f0f0f0f0' })).map((e) => e.seq)).toEqual([
        10, 20, 30, 40, 50, 60, 61,
      ]);
      expect((await audit.list({ orgId: null, actorId: 'mailward', limit: 100 })).length).toBe(15);
      const tree = createTreeStore({ db: store.db, dialect });
      await tree.catchUp();
      expect((await tree.rootAt(62)).length).toBe(32);
    }, 120_000);
  });
}
