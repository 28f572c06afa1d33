import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/app/config.js';
import { type Container, createContainer } from '../src/app/container.js';
import { createLogger } from '../src/kernel/log.js';
import { testDialects } from './support/dialects.js';
import { createTestApp, type TestApp } from './support/test-app.js';

for (const dialect of testDialects()) {
  describe(`webhook fan-out (${dialect})`, () => {
    let t: TestApp;
    let other: Container;

    beforeAll(async () => {
      // Port 9 on loopback, allow-listed: nothing is delivered here (the workers are never started), only fanned out.
      // Admission control off: the test fires 72 writes at once while two dispatchers contend for SQLite's one
      // writer, so some would wait past MAILWARD_HTTP_QUEUE_WAIT_MS and be shed (503), which is not what it tests.
      t = await createTestApp(dialect, { env: { MAILWARD_WEBHOOK_ALLOW_HOSTS: '127.0.0.1:9', MAILWARD_HTTP_MAX_IN_FLIGHT: '0' } });
      // A second container on the same database: another process's dispatcher.
      other = await createContainer(loadConfig(t.env), { logger: createLogger({ level: 'silent' }) });
    }, 60_000);
    afterAll(async () => {
      await other?.close();
      await t?.close();
    });

    it('queues each matching event exactly once for each endpoint when two dispatchers on two connections fan out at the same time', async () => {
      const all = await t.call('POST', '/v1/webhooks', t.adminKey, { url: 'http://127.0.0.1:9/all' });
      const consentOnly = await t.call('POST', '/v1/webhooks', t.adminKey, {
        url: 'http://127.0.0.1:9/c',
        event_types: ['consent.changed'],
      });
      expect(all.status).toBe(201);
      expect(consentOnly.status).toBe(201);
      const start = await t.c.store.db
        .selectFrom('webhook_endpoints')
        .select('cursor')
        .where('id', '=', all.body.id)
        .executeTakeFirstOrThrow();
      const writes: Promise<unknown>[] = [];
      const fanOuts: Promise<unknown>[] = [];
      for (let i = 0; i < 60; i++) {
        writes.push(
          t.call('PUT', `/v1/contacts/p${i}%40example.org/consent`, t.adminKey, { electronic: false, categories: [], source: 'phone' }),
        );
        if (i % 5 === 0) writes.push(t.call('POST', '/v1/departments', t.adminKey, { name: `Dept ${i}` }));
        fanOuts.push(t.c.webhooks.worker.fanOut(t.orgId), other.webhooks.worker.fanOut(t.orgId));
      }
      const answered = (await Promise.all(writes)) as { status: number }[];
      expect(answered.map((a) => a.status).filter((s) => s >= 300)).toEqual([]);
      await Promise.all(fanOuts);
      await Promise.all([t.c.webhooks.worker.fanOut(t.orgId), other.webhooks.worker.fanOut(t.orgId)]);

      const events = await t.c.store.db.selectFrom('domain_events').select(['id', 'type', 'seq']).where('org_id', '=', t.orgId).execute();
      const consent = events.filter((e) => e.type === 'consent.changed');
      expect(consent).toHaveLength(60);
      const jobs = await t.c.store.db.selectFrom('webhook_deliveries').select(['endpoint_id', 'event_id', 'is_replay']).execute();
      const forEndpoint = (id: string) => jobs.filter((j) => j.endpoint_id === id).map((j) => j.event_id);
      // Exactly once each: no event twice, none missing.
      expect(forEndpoint(consentOnly.body.id).sort()).toEqual(consent.map((e) => e.id).sort());
      const head = Math.max(...events.map((e) => Number(e.seq)));
      const endpoints = await t.c.store.db.selectFrom('webhook_endpoints').select(['id', 'cursor']).execute();
      for (const e of endpoints) expect(Number(e.cursor)).toBe(head);
      const allIds = forEndpoint(all.body.id);
      expect(new Set(allIds).size).toBe(allIds.length);
      // Every event after the endpoint was created (its cursor started at the head then) is queued for it.
      expect(allIds.sort()).toEqual(
        events
          .filter((e) => Number(e.seq) > Number(start.cursor))
          .map((e) => e.id)
          .sort(),
      );
      expect(jobs.every((j) => Number(j.is_replay) === 0)).toBe(true);
    });
  });
}
