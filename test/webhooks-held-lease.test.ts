import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appendEvent } from '../src/events/events-log.js';
import { firstDeliveryId } from '../src/webhooks/webhooks-service.js';
import { testDialects } from './support/dialects.js';
import { createTestApp, type TestApp } from './support/test-app.js';
import { type Received, type Receiver, startReceiver } from './support/webhook-receiver.js';
import { waitFor } from './support/wait.js';

const verifiesWith = (secret: string, r: Received) => {
  try {
    new Webhook(secret).verify(r.body, r.headers);
    return true;
  } catch {
    return false;
  }
};

/*
 * Events taken from a range lease the running worker already holds. On PostgreSQL these takes are one statement
 * (recordAndTakeRangePg, src/webhooks/webhooks-repo.ts) that reuses the secrets read at the lease's last take only
 * while their ids and expiry are unchanged, and takes nothing from an endpoint that has a filter since; on SQLite
 * the same behaviour comes from the general fan-out. Either way a rotation and a new filter apply to the next event.
 */
for (const dialect of testDialects()) {
  describe(`webhook takes from a held range lease (${dialect})`, () => {
    let t: TestApp;
    let rx: Receiver;

    beforeAll(async () => {
      rx = await startReceiver();
      t = await createTestApp(dialect, { env: { MAILWARD_WEBHOOK_ALLOW_HOSTS: `127.0.0.1:${rx.port}`, MAILWARD_WEBHOOK_POLL_MS: '50' } });
      t.c.webhooks.worker.start();
    }, 60_000);
    afterAll(async () => {
      await t?.close();
      await rx?.close();
    });

    const commit = async (type: 'email.queued' | 'consent.changed') => {
      await t.c.store.db.transaction().execute((tx) => appendEvent(tx, { orgId: t.orgId, type, at: new Date().toISOString(), data: {} }));
      const e = await t.c.store.db
        .selectFrom('domain_events')
        .select(['id', 'seq'])
        .where('org_id', '=', t.orgId)
        .orderBy('seq', 'desc')
        .limit(1)
        .executeTakeFirstOrThrow();
      return { id: e.id, seq: Number(e.seq) };
    };
    const got = () => rx.got.filter((r) => r.path === '/held');
    const cursorOf = async (id: string) =>
      Number((await t.c.store.db.selectFrom('webhook_endpoints').select('cursor').where('id', '=', id).executeTakeFirstOrThrow()).cursor);

    it('signs the next event with only the new secret after a rotation without overlap, and sends only what a filter set since matches', async () => {
      const made = await t.call('POST', '/v1/webhooks', t.adminKey, { url: rx.url('/held') });
      expect(made.status).toBe(201);
      const ep = made.body.id as string;
      const first = await commit('email.queued');
      expect(await waitFor(() => got().length >= 1)).toBe(true);
      expect(verifiesWith(made.body.secret, got()[0]!)).toBe(true);
      // The worker holds the endpoint's range lease from here on.
      expect(await waitFor(async () => (await cursorOf(ep)) >= first.seq)).toBe(true);
      const lease = await t.c.store.db.selectFrom('webhook_endpoints').select('leased_by').where('id', '=', ep).executeTakeFirstOrThrow();
      expect(lease.leased_by).toBe(t.c.webhooks.worker.workerId);

      const rot = await t.call('POST', `/v1/webhooks/${ep}/rotate-secret`, t.adminKey, { overlap_seconds: 0 });
      expect(rot.status).toBe(200);
      await commit('email.queued');
      expect(await waitFor(() => got().length >= 2)).toBe(true);
      const after = got()[1]!;
      expect(after.headers['webhook-signature']!.split(' ')).toHaveLength(1);
      expect(verifiesWith(rot.body.secret, after)).toBe(true);
      expect(verifiesWith(made.body.secret, after)).toBe(false);

      const patched = await t.call('PATCH', `/v1/webhooks/${ep}`, t.adminKey, { event_types: ['consent.changed'] });
      expect(patched.status).toBe(200);
      const skipped = await commit('email.queued');
      const wanted = await commit('consent.changed');
      expect(await waitFor(() => got().length >= 3)).toBe(true);
      // Once the cursor is past both, every outcome is recorded: a request for the skipped event would have been answered before.
      expect(await waitFor(async () => (await cursorOf(ep)) >= wanted.seq)).toBe(true);
      const ids = got().map((r) => r.headers['webhook-id']);
      expect(ids).toHaveLength(3);
      expect(ids[2]).toBe(wanted.id);
      expect(ids).not.toContain(skipped.id);

      // One first attempt logged per event sent, none for the skipped one; no job rows.
      const log = await t.c.store.db.selectFrom('webhook_attempts').selectAll().where('endpoint_id', '=', ep).execute();
      expect(log.map((a) => [a.event_id, Number(a.attempt), a.outcome, a.delivery_id]).sort()).toEqual(
        ids.map((id) => [id, 1, 'delivered', firstDeliveryId(ep, id!)]).sort(),
      );
      expect(await t.c.store.db.selectFrom('webhook_deliveries').selectAll().where('endpoint_id', '=', ep).execute()).toEqual([]);
    });
  });
}
