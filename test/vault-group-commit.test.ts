import { createIntegrator } from '../src/audit/integrator.js';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemActor } from '../src/identity/principal.js';
import { inGroupCommit, openStore, type Store, type Tx } from '../src/store/db.js';
import { testDialects } from './support/dialects.js';
import { createTestApp, seedAgent, type TestApp } from './support/test-app.js';
import { textIds } from './support/audit-rows.js';

const SEED = 'GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ';

/** A second handle on the same database: sees only what was committed. */
const otherHandle = (t: TestApp): Store =>
  openStore(
    t.dialect === 'sqlite'
      ? { kind: 'sqlite', file: t.c.config.database.kind === 'sqlite' ? t.c.config.database.file : '' }
      : { kind: 'postgres', url: t.env.DATABASE_URL!, poolSize: 2 },
  );

/** Integrated events (integrating what is committed first; any handle may). */
const eventsOf = async (s: Store, action: string) => {
  await createIntegrator({ db: s.db, dialect: s.dialect, intervalMs: 1000 }).sync();
  return sequenced(s, action);
};
const sequenced = (s: Store, action: string) =>
  s.db
    .selectFrom('audit_events')
    .select(['seq', 'details', 'outcome', 'request_id'])
    .where('action', '=', action)
    .orderBy('seq')
    .execute()
    .then(textIds);
/** Committed events, sequenced or not yet (audit_pending, src/audit/integrator.ts). */
const committedOf = async (s: Store, action: string) => [
  ...(await s.db.selectFrom('audit_pending').select(['details']).where('action', '=', action).execute()),
  ...(await sequenced(s, action)),
];

for (const dialect of testDialects()) {
  describe(`group commit of audited reads (${dialect})`, () => {
    let t: TestApp;
    let other: Store;
    beforeAll(async () => {
      t = await createTestApp(dialect);
      other = otherHandle(t);
    });
    afterAll(async () => {
      await other?.destroy();
      await t?.close();
    });

    it('commits callers that arrive together in one transaction, rolls back only the ones that fail, and answers each after the commit', async () => {
      const db = t.c.store.db;
      const txs = new Set<Tx>();
      const seenAtAnswer: boolean[] = [];
      const jobs = Array.from({ length: 40 }, (_, i) =>
        inGroupCommit(db, async (tx) => {
          txs.add(tx);
          await t.c.audit.record(tx, { action: 'test.group', actor: systemActor(t.orgId), details: { i } });
          if (i % 3 === 1) throw new Error(`caller ${i} fails after its audit write`);
          return i;
        }).then(
          async (i) => {
            // Visible to another connection the moment the caller has its answer: the commit came first.
            const committed = await committedOf(other, 'test.group');
            seenAtAnswer[i] = committed.some((e) => JSON.parse(e.details).i === i);
            return { ok: true as const, i };
          },
          (e: Error) => ({ ok: false as const, message: e.message }),
        ),
      );
      const outcomes = await Promise.all(jobs);
      // All 40 were queued in one turn of the event loop: they shared one transaction.
      expect(txs.size).toBe(1);
      const failed = outcomes.filter((o) => !o.ok);
      expect(failed).toHaveLength(13);
      expect(failed.every((o) => /fails after its audit write/.test(o.message))).toBe(true);
      const succeeded = outcomes.flatMap((o) => (o.ok ? [o.i] : []));
      expect(succeeded).toEqual(Array.from({ length: 40 }, (_, i) => i).filter((i) => i % 3 !== 1));
      expect(succeeded.every((i) => seenAtAnswer[i])).toBe(true);
      // Only the successful callers' events exist, each once, and the chain has no gap.
      const events = await eventsOf(other, 'test.group');
      expect(events.map((e) => JSON.parse(e.details).i)).toEqual(succeeded);
      const seqs = (await db.selectFrom('audit_events').select('seq').orderBy('seq').execute()).map((r) => Number(r.seq));
      expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, k) => seqs[0]! + k));
      expect((await t.c.auditLog.verify()).ok).toBe(true);
    });

    it('fails every caller of a group, and commits none of its work, when the shared commit fails', async () => {
      const db = t.c.store.db;
      // A deferred foreign key is checked at COMMIT: one caller's bad row makes the shared commit fail.
      await sql`create table gc_probe_parent (id text primary key)`.execute(db);
      await sql`create table gc_probe (id text primary key, parent text references gc_probe_parent (id) deferrable initially deferred)`.execute(
        db,
      );
      const before = (await eventsOf(other, 'test.commit_fails')).length;
      const outcomes = await Promise.allSettled(
        Array.from({ length: 10 }, (_, i) =>
          inGroupCommit(db, async (tx) => {
            await t.c.audit.record(tx, { action: 'test.commit_fails', actor: systemActor(t.orgId), details: { i } });
            if (i === 4) await sql`insert into gc_probe (id, parent) values ('x', 'missing')`.execute(tx);
            return i;
          }),
        ),
      );
      expect(outcomes.map((o) => o.status)).toEqual(Array(10).fill('rejected'));
      expect((await eventsOf(other, 'test.commit_fails')).length).toBe(before);
      expect((await sql`select id from gc_probe`.execute(other.db)).rows).toEqual([]);
      // The queue is not stuck, and the chain is whole.
      await expect(
        inGroupCommit(db, (tx) => t.c.audit.record(tx, { action: 'test.after', actor: systemActor(t.orgId) })),
      ).resolves.toMatchObject({ id: expect.any(String) });
      expect((await t.c.auditLog.verify()).ok).toBe(true);
    });

    it('gives each of many concurrent TOTP callers its code and exactly one audit event, and each refusal its denied event', async () => {
      const a = await seedAgent(t, 'Concurrent Agent');
      const b = await seedAgent(t, 'Other Agent');
      expect((await t.call('PUT', '/v1/vault/secrets/otp', a.agentKey, { kind: 'totp', value: SEED })).status).toBe(200);
      const before = {
        generated: (await eventsOf(t.c.store, 'vault.totp.generated')).length,
      };
      const calls = Array.from({ length: 60 }, (_, i) => {
        const asOwner = i % 4 !== 3;
        return t
          .call('POST', '/v1/vault/secrets/otp/totp', asOwner ? a.agentKey : b.agentKey, undefined, { 'x-request-id': `group-${i}` })
          .then((r) => ({ i, asOwner, r }));
      });
      const results = await Promise.all(calls);
      for (const { asOwner, r } of results) {
        if (asOwner) {
          expect(r.status).toBe(200);
          expect(r.body.code).toMatch(/^\d{6}$/);
        } else {
          // Agent b has no secret of that name: 404, never a's code.
          expect(r.status).toBe(404);
        }
      }
      const generated = (await eventsOf(t.c.store, 'vault.totp.generated')).slice(before.generated).filter((e) => e.outcome === 'success');
      const owners = results.filter((x) => x.asOwner).map((x) => `group-${x.i}`);
      expect(generated.map((e) => e.request_id).sort()).toEqual(owners.sort());
      const denied = (await eventsOf(t.c.store, 'vault.totp.generated')).filter(
        (e) => e.outcome === 'denied' && e.request_id?.startsWith('group-'),
      );
      expect(denied.map((e) => e.request_id).sort()).toEqual(
        results
          .filter((x) => !x.asOwner)
          .map((x) => `group-${x.i}`)
          .sort(),
      );
      expect((await t.c.auditLog.verify()).ok).toBe(true);
    });

    it.runIf(dialect === 'postgres')(
      'runs a caller that PostgreSQL aborted to break a deadlock between two groups again alone, so every caller commits',
      async () => {
        const db = t.c.store.db;
        await db
          .insertInto('settings')
          .values([
            { key: 'test.deadlock.a', value: '0' },
            { key: 'test.deadlock.b', value: '0' },
          ])
          .execute();
        // Group 1 takes a then b, group 2 (another handle: another process) b then a; the sleeps make the first
        // caller of each group hold its row before the second caller of either asks for the other's: a deadlock,
        // which PostgreSQL breaks by failing one statement (40P01). Without a retry that caller fails.
        const bump = (key: string, sleep: boolean) => async (tx: Tx) => {
          await sql`update settings set value = (value::int + 1)::text where key = ${key}`.execute(tx);
          if (sleep) await sql`select pg_sleep(0.5)`.execute(tx);
          return key;
        };
        const results = await Promise.allSettled([
          inGroupCommit(db, bump('test.deadlock.a', true)),
          inGroupCommit(db, bump('test.deadlock.b', false)),
          inGroupCommit(other.db, bump('test.deadlock.b', true)),
          inGroupCommit(other.db, bump('test.deadlock.a', false)),
        ]);
        expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'fulfilled', 'fulfilled']);
        const rows = await db
          .selectFrom('settings')
          .selectAll()
          .where('key', 'in', ['test.deadlock.a', 'test.deadlock.b'])
          .orderBy('key')
          .execute();
        expect(rows.map((r) => r.value)).toEqual(['2', '2']);
      },
      30_000,
    );
  });
}
