import { sql } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import { type EventRow, GENESIS_HASH, recomputeRowHash } from '../src/audit/audit-chain.js';
import { storedOfAt, storedOfContentHash, storedOfHex, storedOfId, storedOfIdOrNull } from '../src/audit/audit-columns.js';
import { createAuditService } from '../src/audit/audit-service.js';
import { canonicalJson } from '../src/audit/canonical.js';
import { eventHashesOf } from '../src/audit/receipts.js';
import { createTreeStore } from '../src/audit/tree-store.js';
import { atBound, eventRows, idIs, selectEventRows, seqAtBoundQuery } from '../src/audit/event-rows.js';
import { fixedClock } from '../src/kernel/clock.js';
import { chainedRows, EVENT_ROWS, migrateWithHead } from './support/audit-rows.js';
import { testDialects } from './support/dialects.js';
import { planOf, storeMigratedTo } from './support/migration-store.js';

const CHAIN = canonicalJson([{ type: 'organization', id: 'org_0190f0f0f0f0f0f0f0f0f0f0f0f0f0f0', name: 'General Hospital' }]);
const ORG = 'org_0190f0f0f0f0f0f0f0f0f0f0f0f0f0f0';
const AGENT = 'agt_0190f0f0f0f0f0f0f0f0f0f0f0f0f0f0';
const ACTIONS = ['email.read', 'email.submitted', 'vault.secret.revealed', 'audit.verified'];
const OUTCOMES = ['success', 'denied', 'error'] as const;
const TARGETS: [string | null, string | null][] = [
  ['message', 'msg_0190f0f0f0f0f0f0f0f0f0f0f0f0f0f0'],
  [null, null],
  ['', ''],
  ['secret', 'pâtient ✓'],
  ['message', null],
];
// The writers' ISO-8601 form on most rows; a few kept as text (migration 0046's `=` form), which are kinds of their own.
const ODD_TIMES = ['2026-03-01T12:00:00Z', 'yesterday', ''];

/** Rows as the 0046 layout held them, chained as the integrator chained them: every kind column in several forms. */
const rows0046 = (n: number): EventRow[] =>
  chainedRows(n, (i) => {
    const [targetType, targetId] = TARGETS[i % TARGETS.length]!;
    return {
      seq: i,
      id: `evt_${i.toString(16).padStart(32, '0')}`,
      at: i % 17 === 8 ? ODD_TIMES[((i / 17) | 0) % ODD_TIMES.length]! : new Date(Date.UTC(2026, 0, 1) + i * 60_000 + i).toISOString(),
      org_id: i % 7 === 0 ? null : ORG,
      action: ACTIONS[i % ACTIONS.length]!,
      actor_type: i % 5 === 0 ? 'system' : 'agent',
      actor_id: i % 5 === 0 ? 'mailward' : AGENT,
      delegation_chain: CHAIN,
      target_type: targetType,
      target_id: targetId,
      outcome: OUTCOMES[i % 3]!,
      request_id: i % 3 === 0 ? null : `req_${i.toString(16).padStart(32, '0')}`,
      client_ip: i % 2 ? '10.0.0.1' : null,
      content_hash: i % 2 ? 'ab'.repeat(32) : null,
      details: canonicalJson({ n: i }),
    };
  });

for (const dialect of testDialects()) {
  describe(`audit migration 0048: kinds by reference, audit_events a view (${dialect})`, () => {
    const cleanups: (() => Promise<void>)[] = [];
    afterEach(async () => {
      for (const c of cleanups.splice(0).reverse()) await c();
    });

    it('moves 0046-layout rows: same events and hashes, one kind row per combination, the chain and every reader onward', async () => {
      const { store, old, close } = await storeMigratedTo(dialect, '0047-message-submission-event');
      cleanups.push(close);
      const before = rows0046(120);
      await old.insertInto('audit_chains').values({ id: 1, chain: CHAIN }).execute();
      await old
        .insertInto('audit_events')
        .values(
          before.map(({ delegation_chain: _, prev_hash: _p, hash, content_hash, at, ...r }) => ({
            ...r,
            ...storedOfAt(at),
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

      // One kind row per distinct (action, actor_type, target_type, outcome, at_text), numbered by first use.
      const kindOf = (r: EventRow) => JSON.stringify([r.action, r.actor_type, r.target_type, r.outcome, storedOfAt(r.at).at_text]);
      const distinct = [...new Set(before.map(kindOf))];
      const kinds = await store.db.selectFrom('audit_kinds').selectAll().orderBy('id').execute();
      expect(kinds.map((k) => JSON.stringify([k.action, k.actor_type, k.target_type, k.outcome, k.at_text]))).toEqual(distinct);
      expect(kinds.map((k) => Number(k.id))).toEqual(distinct.map((_, i) => i + 1));
      const stored = await store.db.selectFrom(EVENT_ROWS).select(['seq', 'kind_id']).orderBy('seq').execute();
      expect(stored.map((r) => Number(r.kind_id))).toEqual(before.map((r) => distinct.indexOf(kindOf(r)) + 1));
      // The stored table holds no kind column; the view reads as the table did.
      const cols =
        dialect === 'sqlite'
          ? (await sql<{ name: string }>`select name from pragma_table_info('audit_event_rows')`.execute(store.db)).rows
          : (
              await sql<{
                name: string;
              }>`select column_name as name from information_schema.columns where table_name = 'audit_event_rows' order by ordinal_position`.execute(
                store.db,
              )
            ).rows;
      expect(cols.map((c) => c.name)).toEqual([
        'seq',
        'at',
        'chain_id',
        'kind_id',
        'id',
        'org_id',
        'actor_id',
        'target_id',
        'request_id',
        'client_ip',
        'content_hash',
        'details',
        'hash',
      ]);

      // Append-only: the stored rows and the kinds, and the view writes nothing.
      await expect(store.db.updateTable(EVENT_ROWS).set({ kind_id: 1 }).where('seq', '=', 2).execute()).rejects.toThrow(/append-only/);
      await expect(store.db.deleteFrom(EVENT_ROWS).where('seq', '=', 2).execute()).rejects.toThrow(/append-only/);
      await expect(store.db.updateTable('audit_kinds').set({ action: 'x' }).where('id', '=', 1).execute()).rejects.toThrow(/append-only/);
      await expect(store.db.deleteFrom('audit_kinds').where('id', '=', 1).execute()).rejects.toThrow(/append-only/);
      await expect(sql`delete from audit_events where seq = 2`.execute(store.db)).rejects.toThrow();

      // New events chain onto the migrated head, reusing migrated kinds and adding new ones.
      const audit = createAuditService({ db: store.db, dialect, clock: fixedClock('2026-03-02T00:00:00Z') });
      const agent = { type: 'agent' as const, id: AGENT, orgId: ORG, chain: [] };
      await audit.recordAlone({
        action: 'email.read',
        actor: agent,
        target: { type: 'message', id: 'msg_0190f0f0f0f0f0f0f0f0f0f0f0f0f0f0' },
      });
      await audit.recordAlone({ action: 'email.read', actor: agent, target: { type: 'message', id: 'msg_1' }, outcome: 'denied' });
      await audit.recordAlone({ action: 'kinds.new', actor: agent, target: { type: 'thing', id: 'thing_1' } });
      await audit.recordAlone({ action: 'kinds.new', actor: agent });
      await audit.sync();
      const all = await eventRows(selectEventRows(store.db).orderBy('e.seq'));
      expect(all).toHaveLength(124);
      let prev = GENESIS_HASH;
      for (const r of all) {
        expect(r.prev_hash).toBe(prev);
        expect(recomputeRowHash(r, prev)).toBe(r.hash);
        prev = r.hash;
      }
      expect(all.slice(120).map((r) => [r.action, r.target_type, r.outcome])).toEqual([
        ['email.read', 'message', 'success'],
        ['email.read', 'message', 'denied'],
        ['kinds.new', 'thing', 'success'],
        ['kinds.new', null, 'success'],
      ]);
      const kindsAfter = await store.db.selectFrom('audit_kinds').select('id').execute();
      const newKinds = new Set(
        all
          .slice(120)
          .map(kindOf)
          .filter((k) => !distinct.includes(k)),
      );
      expect(kindsAfter.length).toBe(distinct.length + newKinds.size);

      // Readers through the view: the events API's filters, receipts' look-up by target, action and outcome.
      expect((await audit.list({ orgId: ORG, action: 'email.submitted', limit: 200 })).map((e) => e.seq)).toEqual(
        all.filter((r) => r.org_id === ORG && r.action === 'email.submitted').map((r) => r.seq),
      );
      const msg = 'msg_0190f0f0f0f0f0f0f0f0f0f0f0f0f0f0';
      expect((await eventHashesOf(store.db, msg, ['email.read', 'email.submitted'])).map((e) => Number(e.seq))).toEqual(
        all
          .filter((r) => r.target_id === msg && ['email.read', 'email.submitted'].includes(r.action) && r.outcome === 'success')
          .map((r) => r.seq),
      );
      const tree = createTreeStore({ db: store.db, dialect });
      await tree.catchUp();
      expect((await tree.rootAt(124)).length).toBe(32);

      // The planners still use 0046's indexes through the view, and a reader of no kind column does not join the kinds.
      if (dialect === 'postgres') await sql`set enable_seqscan = off`.execute(store.db);
      const ev = store.db.selectFrom('audit_events as e').select('e.seq');
      const since = '2026-01-01T00:30:00.000Z';
      const plans = {
        id: await planOf(store.db, dialect, ev.where(idIs('e.id', all[20]!.id))),
        org: await planOf(store.db, dialect, ev.where(idIs('e.org_id', ORG)).orderBy('e.seq').limit(10)),
        target: await planOf(store.db, dialect, ev.where(idIs('e.target_id', msg)).where('e.action', '=', 'email.read')),
        since: await planOf(store.db, dialect, seqAtBoundQuery(store.db, 'min', '>=', since)),
        range: await planOf(store.db, dialect, ev.where('e.at', '>=', atBound(since))),
        bySeq: await planOf(store.db, dialect, store.db.selectFrom('audit_events').select(['seq', 'hash']).where('seq', '=', 5)),
      };
      expect(plans.id).toMatch(/audit_events_id_key_idx/);
      expect(plans.org).toMatch(/audit_events_org_key_idx/);
      expect(plans.target).toMatch(/audit_events_target_key_idx/);
      expect(plans.since).toMatch(/audit_events_at_idx/);
      expect(plans.range).toMatch(/audit_events_at_idx/);
      for (const p of [plans.id, plans.org, plans.since, plans.range, plans.bySeq]) expect(p).not.toMatch(/audit_kinds/);
    }, 120_000);

    it('fails integration, losing nothing, rather than store a kind beyond the smallint range', async () => {
      const { store, close } = await storeMigratedTo(dialect, '0048-audit-kinds');
      cleanups.push(close);
      const audit = createAuditService({ db: store.db, dialect, clock: fixedClock('2026-03-02T00:00:00Z') });
      const agent = { type: 'agent' as const, id: AGENT, orgId: ORG, chain: [] };
      await store.db
        .insertInto('audit_kinds')
        .values({ id: 32_767, action: 'email.read', actor_type: 'agent', target_type: null, outcome: 'success', at_text: '' })
        .execute();
      // A known kind still integrates; a new one would be kind 32,768.
      await audit.recordAlone({ action: 'email.read', actor: agent });
      await audit.sync();
      expect(Number((await store.db.selectFrom(EVENT_ROWS).select('kind_id').executeTakeFirstOrThrow()).kind_id)).toBe(32_767);
      await audit.recordAlone({ action: 'kinds.one_too_many', actor: agent });
      await expect(audit.sync()).rejects.toThrow(/more than 32767 distinct audit event kinds/);
      expect(await audit.pendingCount()).toBe(1);
      expect((await store.db.selectFrom('audit_kinds').select('id').execute()).length).toBe(1);
    }, 60_000);
  });
}
