import { sql } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import { type EventRow, GENESIS_HASH, recomputeRowHash } from '../src/audit/audit-chain.js';
import { storedOfContentHash, storedOfHex, storedOfId, storedOfIdOrNull } from '../src/audit/audit-columns.js';
import { createAuditService } from '../src/audit/audit-service.js';
import { canonicalJson } from '../src/audit/canonical.js';
import { atBound, eventRows, idIs, selectEventRows, seqAtBoundQuery } from '../src/audit/event-rows.js';
import { createTreeStore } from '../src/audit/tree-store.js';
import { fixedClock } from '../src/kernel/clock.js';
import { EVENT_ROWS, chainedRows, migrateWithHead } from './support/audit-rows.js';
import { testDialects } from './support/dialects.js';
import { planOf, storeMigratedTo } from './support/migration-store.js';

const CHAIN = canonicalJson([{ type: 'organization', id: 'org_0190f0f0f0f0f0f0f0f0f0f0f0f0f0f0', name: 'General Hospital' }]);
const ORG = 'org_0190f0f0f0f0f0f0f0f0f0f0f0f0f0f0';
const AGENT = 'agt_0190f0f0f0f0f0f0f0f0f0f0f0f0f0f0';

// Times of every form an `at` text could hold: the writers' ISO-8601 form (most rows), and text that is not exactly
// a time's toISOString (no milliseconds, an offset, a date that rolls over, not a time at all, empty, a far year).
const ODD_TIMES = [
  '2026-03-01T12:00:00Z',
  '2026-03-01T12:00:00.123+00:00',
  '2026-02-30T00:00:00.000Z',
  'yesterday',
  '',
  '2026-01-01 00:00:00',
];
const TARGETS: (string | null)[] = ['msg_0190f0f0f0f0f0f0f0f0f0f0f0f0f0f0', 'oauth-client-7', 'ab'.repeat(32), 'pâtient ✓', '', null];

/** Rows as the 0042 layout held them (ids as bytes, no prev_hash, `at` as text), chained as the integrator chained them. */
const rows0042 = (n: number): EventRow[] =>
  chainedRows(n, (i) => {
    const target = TARGETS[i % TARGETS.length]!;
    return {
      seq: i,
      id: i % 13 === 0 ? `legacy-event-${i}` : `evt_${i.toString(16).padStart(32, '0')}`,
      at: i % 10 === 5 ? ODD_TIMES[(i / 10) | 0]! : new Date(Date.UTC(2026, 0, 1) + i * 60_000 + i).toISOString(),
      org_id: i % 7 === 0 ? null : ORG,
      action: 'email.read',
      actor_type: i % 4 === 0 ? 'system' : 'agent',
      actor_id: i % 4 === 0 ? 'mailward' : AGENT,
      delegation_chain: CHAIN,
      target_type: target === null ? null : 'message',
      target_id: target,
      outcome: 'success',
      request_id: i % 3 === 0 ? null : `req_${i.toString(16).padStart(32, '0')}`,
      client_ip: '10.0.0.1',
      content_hash: i % 2 ? 'ab'.repeat(32) : null,
      details: canonicalJson({ n: i }),
    };
  });

for (const dialect of testDialects()) {
  describe(`audit migration 0046: the time as milliseconds, key indexes (${dialect})`, () => {
    const cleanups: (() => Promise<void>)[] = [];
    afterEach(async () => {
      for (const c of cleanups.splice(0).reverse()) await c();
    });

    it('moves 0042-layout rows: same events and hashes, times as milliseconds or kept text, indexes used by id, actor, target and time', async () => {
      const { store, old, close } = await storeMigratedTo(dialect, '0044-oauth-client-orgs');
      cleanups.push(close);
      const before = rows0042(60);
      await old.insertInto('audit_chains').values({ id: 1, chain: CHAIN }).execute();
      await old
        .insertInto('audit_events')
        .values(
          before.map(({ delegation_chain: _, prev_hash: _p, hash, content_hash, ...r }) => ({
            ...r,
            id: storedOfId(r.id),
            org_id: storedOfIdOrNull(r.org_id),
            actor_id: storedOfIdOrNull(r.actor_id),
            target_id: storedOfIdOrNull(r.target_id),
            request_id: storedOfIdOrNull(r.request_id),
            chain_id: 1,
            content_hash: storedOfContentHash(content_hash),
            hash: storedOfHex(hash),
          })),
        )
        .execute();

      const after = await migrateWithHead(store, old, before);
      expect(after).toEqual(before);
      for (const r of after) expect(recomputeRowHash(r, r.prev_hash)).toBe(r.hash);
      // The stored time: milliseconds with '' for the writers' form, the text itself (after `=`) for anything else.
      const stored = await store.db.selectFrom('audit_events').select(['seq', 'at', 'at_text']).orderBy('seq').execute();
      expect(Number(stored[0]!.at)).toBe(Date.parse(before[0]!.at));
      expect(stored[0]!.at_text).toBe('');
      const odd = stored.filter((r) => r.at_text !== '');
      expect(odd.map((r) => r.at_text)).toEqual(ODD_TIMES.map((t) => `=${t}`));
      expect(odd.map((r) => Number(r.at))).toEqual(ODD_TIMES.map((t) => (Number.isFinite(Date.parse(t)) ? Date.parse(t) : 0)));

      // The stored rows since 0048 (`audit_events` is a view of them).
      await expect(store.db.updateTable(EVENT_ROWS).set({ details: 'x' }).where('seq', '=', 2).execute()).rejects.toThrow(/append-only/);
      await expect(store.db.deleteFrom(EVENT_ROWS).where('seq', '=', 2).execute()).rejects.toThrow(/append-only/);

      // New events chain onto the migrated head; the filters find old and new rows by their text ids and by time.
      const audit = createAuditService({ db: store.db, dialect, clock: fixedClock('2026-03-02T00:00:00Z') });
      const agent = { type: 'agent' as const, id: AGENT, orgId: ORG, chain: [] };
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
      expect(all[61]!.at).toBe('2026-03-02T00:00:00.000Z');
      const q = { orgId: ORG, limit: 100 };
      const seqsOf = (rows: EventRow[], f: (r: EventRow) => boolean) => rows.filter(f).map((r) => r.seq);
      expect((await audit.list({ ...q, targetId: 'oauth-client-7' })).map((e) => e.seq)).toEqual(
        seqsOf(all, (r) => r.org_id === ORG && r.target_id === 'oauth-client-7'),
      );
      expect((await audit.list({ ...q, targetId: 'pâtient ✓' })).map((e) => e.seq)).toEqual(
        seqsOf(all, (r) => r.org_id === ORG && r.target_id === 'pâtient ✓'),
      );
      expect((await audit.list({ orgId: null, actorId: 'mailward', limit: 100 })).length).toBe(15);
      expect((await audit.list({ ...q, actorId: AGENT })).length).toBe(seqsOf(all, (r) => r.org_id === ORG && r.actor_id === AGENT).length);
      const since = '2026-01-01T00:30:00.000Z';
      const until = '2026-01-01T00:40:00.000Z';
      expect((await audit.list({ orgId: null, since, until, limit: 100 })).map((e) => e.seq)).toEqual(
        seqsOf(all, (r) => Date.parse(r.at) >= Date.parse(since) && Date.parse(r.at) < Date.parse(until)),
      );
      expect(await audit.sequenced(all[20]!.id)).toEqual({ id: all[20]!.id, seq: 21, hash: all[20]!.hash });
      const tree = createTreeStore({ db: store.db, dialect });
      await tree.catchUp();
      expect((await tree.rootAt(62)).length).toBe(32);

      // The planners can use the indexes for lookups by id, organisation, actor and target, and for time ranges (on a
      // table this small PostgreSQL would read the heap instead, so it is told not to).
      if (dialect === 'postgres') await sql`set enable_seqscan = off`.execute(store.db);
      const ev = store.db.selectFrom('audit_events as e').select('e.seq');
      const plans = {
        id: await planOf(store.db, dialect, ev.where(idIs('e.id', all[20]!.id))),
        org: await planOf(store.db, dialect, ev.where(idIs('e.org_id', ORG)).orderBy('e.seq').limit(10)),
        actor: await planOf(store.db, dialect, ev.where(idIs('e.actor_id', AGENT))),
        target: await planOf(store.db, dialect, ev.where(idIs('e.target_id', 'oauth-client-7')).orderBy('e.seq')),
        since: await planOf(store.db, dialect, ev.where('e.at', '>=', atBound(since)).where('e.at', '<', atBound(until))),
        until: await planOf(store.db, dialect, ev.where('e.at', '<', atBound(ODD_TIMES[0]!))),
        // An export's --since / --until and the retention cutoff: the range on the time index, not a walk of the key.
        firstSince: await planOf(store.db, dialect, seqAtBoundQuery(store.db, 'min', '>=', since)),
        lastBefore: await planOf(store.db, dialect, seqAtBoundQuery(store.db, 'max', '<', until)),
      };
      expect(plans.id).toMatch(/audit_events_id_key_idx/);
      expect(plans.org).toMatch(/audit_events_org_key_idx/);
      expect(plans.actor).toMatch(/audit_events_actor_key_idx/);
      expect(plans.target).toMatch(/audit_events_target_key_idx/);
      expect(plans.since).toMatch(/audit_events_at_idx/);
      expect(plans.until).toMatch(/audit_events_at_idx/);
      expect(plans.firstSince).toMatch(/audit_events_at_idx/);
      expect(plans.lastBefore).toMatch(/audit_events_at_idx/);
    }, 120_000);
  });
}
