import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/app/config.js';
import { type Container, createContainer } from '../src/app/container.js';
import { appendEvent } from '../src/events/events-log.js';
import { newId } from '../src/kernel/ids.js';
import { createLogger } from '../src/kernel/log.js';
import { firstDeliveryId } from '../src/webhooks/webhooks-service.js';
import { testDialects } from './support/dialects.js';
import { createTestApp, type TestApp } from './support/test-app.js';
import { type Receiver, startReceiver } from './support/webhook-receiver.js';
import { waitFor } from './support/wait.js';

/** `n` events of the organisation in one transaction; returns them in seq order. */
const commitEvents = async (t: TestApp, n: number) => {
  await t.c.store.db.transaction().execute(async (tx) => {
    for (let i = 0; i < n; i++)
      await appendEvent(tx, { orgId: t.orgId, type: 'consent.changed', at: new Date().toISOString(), data: { i } });
  });
  const rows = await t.c.store.db
    .selectFrom('domain_events')
    .select(['id', 'seq'])
    .where('org_id', '=', t.orgId)
    .orderBy('seq', 'desc')
    .limit(n)
    .execute();
  return rows.map((r) => ({ id: r.id, seq: Number(r.seq) })).reverse();
};

const attemptsOf = (t: TestApp, endpointId: string) =>
  t.c.store.db.selectFrom('webhook_attempts').selectAll().where('endpoint_id', '=', endpointId).orderBy('id').execute();

/** Every success of the delivery log per event: never more than one for an event and endpoint (first attempts and retries). */
const successesPerEvent = (rows: { event_id: string; outcome: string }[]) => {
  const n = new Map<string, number>();
  for (const r of rows) if (r.outcome === 'delivered') n.set(r.event_id, (n.get(r.event_id) ?? 0) + 1);
  return n;
};

for (const dialect of testDialects()) {
  describe(`webhook range leases: recovery (${dialect})`, () => {
    let t: TestApp;
    let rx: Receiver;
    let other: Container | undefined;

    beforeAll(async () => {
      // Each event's first request is held 4 s; later ones (a re-delivery) are answered at once.
      rx = await startReceiver(({ path, nth }) => ({ status: 200, delayMs: path === '/slow' && nth === 1 ? 4000 : 0 }));
      t = await createTestApp(dialect, {
        env: {
          MAILWARD_WEBHOOK_ALLOW_HOSTS: `127.0.0.1:${rx.port}`,
          MAILWARD_WEBHOOK_CONCURRENCY: '8',
          MAILWARD_WEBHOOK_POLL_MS: '50',
          MAILWARD_WEBHOOK_RETRY_SCHEDULE: '1,1',
        },
      });
    }, 60_000);
    afterAll(async () => {
      await other?.close();
      await t?.close();
      await rx?.close();
    });

    it("takes over a dead worker's expired range lease and sends again only the events whose first attempt is not in the delivery log", async () => {
      const made = await t.call('POST', '/v1/webhooks', t.adminKey, { url: rx.url('/dead'), event_types: ['consent.changed'] });
      expect(made.status).toBe(201);
      const ep = made.body.id as string;
      const ev = await commitEvents(t, 8);
      const [e1, e2, e3, e4, e5, e6] = ev;
      // A worker died mid-range: it had taken e1..e6, recorded e1 (so the cursor is past it), then e3 (a success)
      // and e4 (a failure, waiting for its retry) out of order, and its lease has run out. e7 and e8 came after.
      const at = new Date(Date.now() - 5000).toISOString();
      await t.c.store.db
        .updateTable('webhook_endpoints')
        .set({ cursor: e1!.seq, leased_to: e6!.seq, leased_by: 'wrk_dead', lease_until: new Date(Date.now() - 1000).toISOString() })
        .where('id', '=', ep)
        .execute();
      const logged = (e: { id: string }, outcome: 'delivered' | 'failed', status: number) => ({
        id: newId('webhookAttempt'),
        org_id: t.orgId,
        endpoint_id: ep,
        delivery_id: firstDeliveryId(ep, e.id),
        event_id: e.id,
        attempt: 1,
        at,
        outcome,
        status_code: status,
        latency_ms: 3,
        error: outcome === 'failed' ? 'http_500' : null,
      });
      await t.c.store.db
        .insertInto('webhook_attempts')
        .values([logged(e1!, 'delivered', 200), logged(e3!, 'delivered', 200), logged(e4!, 'failed', 500)])
        .execute();
      await t.c.store.db
        .insertInto('webhook_deliveries')
        .values({
          id: firstDeliveryId(ep, e4!.id),
          org_id: t.orgId,
          endpoint_id: ep,
          event_id: e4!.id,
          event_seq: e4!.seq,
          is_replay: 0,
          status: 'pending',
          attempts: 1,
          next_attempt_at: at,
          first_attempt_at: at,
          lease_until: null,
          claimed_by: null,
          last_status_code: 500,
          last_error: 'http_500',
          created_at: at,
          updated_at: at,
        })
        .execute();

      t.c.webhooks.worker.start();
      const got = () => rx.got.filter((g) => g.path === '/dead').map((g) => g.headers['webhook-id']!);
      // e2, e5, e6 again (first attempts), e7, e8 for the first time, e4 as its retry; never e1 or e3.
      const expected = [e2, e4, e5, e6, ev[6], ev[7]].map((e) => e!.id).sort();
      expect(await waitFor(() => got().length >= expected.length, { timeoutMs: 15_000 })).toBe(true);
      const head = ev[7]!.seq;
      const row = () => t.c.store.db.selectFrom('webhook_endpoints').selectAll().where('id', '=', ep).executeTakeFirstOrThrow();
      expect(await waitFor(async () => Number((await row()).cursor) === head, { timeoutMs: 10_000 })).toBe(true);
      await t.c.webhooks.worker.stop();
      expect(got().sort()).toEqual(expected);

      const log = await attemptsOf(t, ep);
      // One success per event, every event once: the dead worker's and the new one's together.
      expect([...successesPerEvent(log).entries()].sort()).toEqual(ev.map((e) => [e.id, 1]).sort());
      // e4: the dead worker's failed attempt 1 and the retry's success as attempt 2, on the same job.
      expect(log.filter((a) => a.event_id === e4!.id).map((a) => [Number(a.attempt), a.outcome])).toEqual([
        [1, 'failed'],
        [2, 'delivered'],
      ]);
      const job = await t.c.store.db.selectFrom('webhook_deliveries').selectAll().where('endpoint_id', '=', ep).execute();
      expect(job.map((j) => [j.event_id, j.status, Number(j.attempts)])).toEqual([[e4!.id, 'done', 2]]);
      // The lease moved to the head and was given back when the worker stopped.
      const after = await row();
      expect([Number(after.cursor), Number(after.leased_to), after.leased_by, after.lease_until]).toEqual([head, head, null, null]);
      // The delivery log itself refuses a second first attempt of an event for an endpoint (0045's unique index).
      await expect(
        t.c.store.db
          .insertInto('webhook_attempts')
          .values(logged(e2!, 'delivered', 200))
          .execute(),
      ).rejects.toThrow();
      await t.call('DELETE', `/v1/webhooks/${ep}`, t.adminKey);
    }, 60_000);

    it('records nothing from a worker whose lease ran out mid-range and was taken over: the new holder sends the events again, and each is logged once', async () => {
      const made = await t.call('POST', '/v1/webhooks', t.adminKey, { url: rx.url('/slow'), event_types: ['consent.changed'] });
      const ep = made.body.id as string;
      const ev = await commitEvents(t, 6);
      const head = ev.at(-1)!.seq;
      t.c.webhooks.worker.start();
      const row = () => t.c.store.db.selectFrom('webhook_endpoints').selectAll().where('id', '=', ep).executeTakeFirstOrThrow();
      // The first worker took the whole range; its six requests are held by the receiver.
      expect(
        await waitFor(async () => {
          const r = await row();
          return r.leased_by === t.c.webhooks.worker.workerId && Number(r.leased_to) === head;
        }),
      ).toBe(true);
      // Its lease runs out (as if its renewals had stalled): a second process's worker takes the range over.
      await t.c.store.db
        .updateTable('webhook_endpoints')
        .set({ lease_until: new Date(Date.now() - 1000).toISOString() })
        .where('id', '=', ep)
        .execute();
      other = await createContainer(loadConfig(t.env), { logger: createLogger({ level: 'silent' }) });
      other.webhooks.worker.start();
      const got = () => rx.got.filter((g) => g.path === '/slow').map((g) => g.headers['webhook-id']!);
      // The new holder's requests are answered at once, the first worker's after 4 s: each event arrives twice.
      expect(await waitFor(() => got().length >= 2 * ev.length, { timeoutMs: 20_000 })).toBe(true);
      await Promise.all([t.c.webhooks.worker.stop(), other.webhooks.worker.stop()]);
      expect(got().sort()).toEqual([...ev, ...ev].map((e) => e.id).sort());

      // Only the new holder's outcomes are in the log: one first attempt, one success per event; no job rows.
      const log = await attemptsOf(t, ep);
      expect(log.map((a) => [a.event_id, Number(a.attempt), a.outcome]).sort()).toEqual(ev.map((e) => [e.id, 1, 'delivered']).sort());
      expect(await t.c.store.db.selectFrom('webhook_deliveries').selectAll().where('endpoint_id', '=', ep).execute()).toEqual([]);
      const after = await row();
      expect([Number(after.cursor), Number(after.leased_to), after.leased_by]).toEqual([head, head, null]);
    }, 60_000);
  });
}
