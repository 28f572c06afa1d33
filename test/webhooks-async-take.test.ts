import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appendEvent } from '../src/events/events-log.js';
import { newId } from '../src/kernel/ids.js';
import type { Executor } from '../src/store/db.js';
import { webhooksRepo as repo } from '../src/webhooks/webhooks-repo.js';
import { firstDeliveryId } from '../src/webhooks/webhooks-service.js';
import { testDialects } from './support/dialects.js';
import { createTestApp, type TestApp } from './support/test-app.js';

/*
 * PostgreSQL only (the statement is PostgreSQL's; SQLite has no asynchronous commit): recordAndTakeRangePg
 * commits without waiting for its WAL flush only when it records no outcome (a take), and the setting is local
 * to that statement's transaction. Read with current_setting('synchronous_commit') inside a transaction that ran
 * the statement, which is the value its commit uses, and on the connection afterwards (a plain SET would have
 * made every later statement of that pooled connection, outcome commits too, asynchronous).
 */
const dialects = testDialects().filter((d) => d === 'postgres');
describe.skipIf(dialects.length === 0)('webhook takes commit asynchronously, outcomes synchronously (postgres)', () => {
  let t: TestApp;
  let ep: string;
  const worker = 'wrk_test-async-take';
  const events: { id: string; seq: number }[] = [];

  beforeAll(async () => {
    t = await createTestApp('postgres', { env: { MAILWARD_WEBHOOK_ALLOW_HOSTS: '127.0.0.1:9' } });
    // No worker runs: this test holds the endpoint's range lease itself.
    const made = await t.call('POST', '/v1/webhooks', t.adminKey, { url: 'http://127.0.0.1:9/hook' });
    expect(made.status).toBe(201);
    ep = made.body.id as string;
    for (let i = 0; i < 3; i++) {
      await t.c.store.db
        .transaction()
        .execute((tx) => appendEvent(tx, { orgId: t.orgId, type: 'email.queued', at: new Date().toISOString(), data: {} }));
    }
    const rows = await t.c.store.db
      .selectFrom('domain_events')
      .select(['id', 'seq'])
      .where('org_id', '=', t.orgId)
      .orderBy('seq')
      .execute();
    events.push(...rows.map((r) => ({ id: r.id, seq: Number(r.seq) })));
    const cursor = events[0]!.seq - 1;
    await t.c.store.db
      .updateTable('webhook_endpoints')
      .set({ cursor, leased_to: cursor, leased_by: worker, lease_until: new Date(Date.now() + 60_000).toISOString() })
      .where('id', '=', ep)
      .execute();
  }, 60_000);
  afterAll(async () => {
    await t?.close();
  });

  const setting = async (ex: Executor) =>
    (await sql<{ v: string }>`select current_setting('synchronous_commit') as v`.execute(ex)).rows[0]!.v;
  const leasedTo = async () =>
    Number(
      (await t.c.store.db.selectFrom('webhook_endpoints').select('leased_to').where('id', '=', ep).executeTakeFirstOrThrow()).leased_to,
    );
  const args = (o: { take: boolean; knownTo: number; after: number; cursor: number; successAt: string | null }) => ({
    id: ep,
    workerId: worker,
    orgId: t.orgId,
    limit: o.take ? 1 : 0,
    leaseUntil: new Date(Date.now() + 60_000).toISOString(),
    secretsAt: new Date().toISOString(),
    ...o,
  });
  const delivered = (e: { id: string }, at: string) => ({
    id: newId('webhookAttempt'),
    org_id: t.orgId,
    endpoint_id: ep,
    delivery_id: firstDeliveryId(ep, e.id),
    event_id: e.id,
    attempt: 1,
    at,
    outcome: 'delivered' as const,
    status_code: 200,
    latency_ms: 1,
    error: null,
  });

  it('runs a take with synchronous_commit off in its own transaction only, and every outcome with it on', async () => {
    const [e1, e2, e3] = events as [(typeof events)[number], (typeof events)[number], (typeof events)[number]];
    expect(await setting(t.c.store.db)).toBe('on');

    // A take only: the first event, asynchronously committed; the lease moved past it.
    const took = await t.c.store.db.transaction().execute(async (tx) => {
      const row = await repo.recordAndTakeRangePg(
        tx,
        args({ take: true, knownTo: e1.seq - 1, after: e1.seq - 1, cursor: 0, successAt: null }),
        [],
      );
      return { row, sync: await setting(tx) };
    });
    expect(took.row?.took).toBe(true);
    expect(took.row?.events?.map((e) => e.id)).toEqual([e1.id]);
    expect(took.sync).toBe('off');
    expect(await leasedTo()).toBe(e1.seq);

    // Its outcome (a delivered first attempt, the cursor past it) with the refill's take of the next event: synchronous.
    const at = new Date().toISOString();
    const recorded = await t.c.store.db.transaction().execute(async (tx) => {
      const row = await repo.recordAndTakeRangePg(tx, args({ take: true, knownTo: e1.seq, after: e1.seq, cursor: e1.seq, successAt: at }), [
        delivered(e1, at),
      ]);
      return { row, sync: await setting(tx) };
    });
    expect(recorded.row?.took).toBe(true);
    expect(recorded.row?.events?.map((e) => e.id)).toEqual([e2.id]);
    expect(Number(recorded.row?.cursor)).toBe(e1.seq);
    expect(recorded.sync).toBe('on');

    // An outcome that only moves the cursor (a skipped event: no log row, no success) is an outcome too.
    const moved = await t.c.store.db.transaction().execute(async (tx) => {
      const row = await repo.recordAndTakeRangePg(
        tx,
        args({ take: false, knownTo: e2.seq, after: e2.seq, cursor: e2.seq, successAt: null }),
        [],
      );
      return { row, sync: await setting(tx) };
    });
    expect(Number(moved.row?.cursor)).toBe(e2.seq);
    expect(moved.sync).toBe('on');

    // Autocommit, as the worker runs it, on one connection: the take's setting ends with its statement.
    await t.c.store.db.connection().execute(async (conn) => {
      const row = await repo.recordAndTakeRangePg(
        conn,
        args({ take: true, knownTo: e2.seq, after: e2.seq, cursor: 0, successAt: null }),
        [],
      );
      expect(row?.events?.map((e) => e.id)).toEqual([e3.id]);
      expect(await setting(conn)).toBe('on');
    });
    expect(await leasedTo()).toBe(e3.seq);

    // The worker's general claim transaction (commitAsynchronouslyPg): off until it ends, then on again on that connection.
    await t.c.store.db.connection().execute(async (conn) => {
      const inside = await conn.transaction().execute(async (tx) => {
        await repo.commitAsynchronouslyPg(tx);
        return setting(tx);
      });
      expect(inside).toBe('off');
      expect(await setting(conn)).toBe('on');
    });

    // Only the outcome wrote the delivery log.
    const log = await t.c.store.db.selectFrom('webhook_attempts').select(['event_id', 'attempt']).where('endpoint_id', '=', ep).execute();
    expect(log.map((a) => [a.event_id, Number(a.attempt)])).toEqual([[e1.id, 1]]);
  });
});
