import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/app/config.js';
import { type Container, createContainer } from '../src/app/container.js';
import { appendEvent } from '../src/events/events-log.js';
import { createLogger } from '../src/kernel/log.js';
import { firstDeliveryId } from '../src/webhooks/webhooks-service.js';
import { testDialects } from './support/dialects.js';
import { createTestApp, type TestApp } from './support/test-app.js';
import { type Receiver, startReceiver } from './support/webhook-receiver.js';
import { waitFor } from './support/wait.js';

const EVENTS = 60;

for (const dialect of testDialects()) {
  describe(`webhook first attempts from range leases (${dialect})`, () => {
    let t: TestApp;
    let other: Container;
    let rx: Receiver;

    beforeAll(async () => {
      rx = await startReceiver();
      // Two slots per process (four jobs with the prefetch): the events wait in the log and are fanned out a few
      // at a time, by the claims of both workers and by the refills in their outcome commits.
      const env = {
        MAILWARD_WEBHOOK_ALLOW_HOSTS: `127.0.0.1:${rx.port}`,
        MAILWARD_WEBHOOK_CONCURRENCY: '2',
        MAILWARD_WEBHOOK_POLL_MS: '50',
      };
      t = await createTestApp(dialect, { env });
      // A second container on the same database: another process's worker.
      other = await createContainer(loadConfig(t.env), { logger: createLogger({ level: 'silent' }) });
    }, 60_000);
    afterAll(async () => {
      await other?.close();
      await t?.close();
      await rx?.close();
    });

    it('delivers each matching event once per endpoint when two running workers take range leases on the cursors, logging one first attempt per event and no job row, with each cursor at the head, also past events its filter skips', async () => {
      const all = await t.call('POST', '/v1/webhooks', t.adminKey, { url: rx.url('/all') });
      const consentOnly = await t.call('POST', '/v1/webhooks', t.adminKey, { url: rx.url('/c'), event_types: ['consent.changed'] });
      expect(all.status).toBe(201);
      expect(consentOnly.status).toBe(201);
      const start = await t.c.store.db
        .selectFrom('webhook_endpoints')
        .select('cursor')
        .where('id', '=', all.body.id)
        .executeTakeFirstOrThrow();
      // Every third event is a consent change; the last ones are not, so the filtered cursor must move past them.
      for (let i = 0; i < EVENTS; i += 10) {
        await t.c.store.db.transaction().execute(async (tx) => {
          for (let j = i; j < i + 10; j++)
            await appendEvent(tx, {
              orgId: t.orgId,
              type: j % 3 === 0 && j < EVENTS - 5 ? 'consent.changed' : 'email.queued',
              at: new Date().toISOString(),
              data: { j },
            });
        });
      }
      t.c.webhooks.worker.start();
      other.webhooks.worker.start();

      const events = (
        await t.c.store.db.selectFrom('domain_events').select(['id', 'type', 'seq']).where('org_id', '=', t.orgId).execute()
      ).filter((e) => Number(e.seq) > Number(start.cursor));
      const consent = events.filter((e) => e.type === 'consent.changed');
      expect(events).toHaveLength(EVENTS);
      const head = Math.max(...events.map((e) => Number(e.seq)));
      const cursors = () => t.c.store.db.selectFrom('webhook_endpoints').select(['id', 'cursor']).execute();
      const ids = (path: string) => rx.got.filter((r) => r.path === path).map((r) => r.headers['webhook-id']!);
      expect(await waitFor(async () => ids('/all').length >= EVENTS && ids('/c').length >= consent.length, { timeoutMs: 30_000 })).toBe(
        true,
      );
      expect(await waitFor(async () => (await cursors()).every((c) => Number(c.cursor) === head), { timeoutMs: 10_000 })).toBe(true);
      await Promise.all([t.c.webhooks.worker.stop(), other.webhooks.worker.stop()]);

      // Exactly once each: no event twice (two workers), none missing, nothing that the filter excludes.
      expect(ids('/all').sort()).toEqual(events.map((e) => e.id).sort());
      expect(ids('/c').sort()).toEqual(consent.map((e) => e.id).sort());
      // First attempts from range leases: a success is its delivery-log row only (no job row), one per event and endpoint.
      expect(await t.c.store.db.selectFrom('webhook_deliveries').selectAll().execute()).toEqual([]);
      const attempts = await t.c.store.db.selectFrom('webhook_attempts').selectAll().execute();
      const of = (id: string) => attempts.filter((a) => a.endpoint_id === id);
      expect(
        of(all.body.id)
          .map((a) => a.event_id)
          .sort(),
      ).toEqual(events.map((e) => e.id).sort());
      expect(
        of(consentOnly.body.id)
          .map((a) => a.event_id)
          .sort(),
      ).toEqual(consent.map((e) => e.id).sort());
      for (const a of attempts) {
        expect([a.outcome, Number(a.attempt)]).toEqual(['delivered', 1]);
        expect(a.delivery_id).toBe(firstDeliveryId(a.endpoint_id, a.event_id));
      }
      // Stopped workers give their range leases back.
      const leases = await t.c.store.db.selectFrom('webhook_endpoints').select(['leased_by', 'lease_until', 'leased_to']).execute();
      for (const l of leases) expect([l.leased_by, l.lease_until, Number(l.leased_to)]).toEqual([null, null, head]);
    });
  });
}
