import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { freshDatabase, testDialects } from './support/dialects.js';
import { type ServerProcess, startServer } from './support/processes.js';
import { type Receiver, startReceiver } from './support/webhook-receiver.js';
import { waitFor } from './support/wait.js';

const EVENTS = 500;

const api = (port: number) => async (method: string, url: string, key: string, body?: unknown) => {
  const r = await fetch(`http://127.0.0.1:${port}${url}`, {
    method,
    headers: { authorization: `Bearer ${key}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  return { status: r.status, body: (await r.json()) as any };
};

for (const dialect of testDialects()) {
  describe(`webhook delivery survives kill -9 of the server (${dialect})`, () => {
    let db: Awaited<ReturnType<typeof freshDatabase>> | undefined;
    let rx: Receiver | undefined;
    let s: ServerProcess | undefined;
    afterAll(async () => {
      await s?.stop();
      await rx?.close();
      await db?.drop();
    });

    it(`delivers each of ${EVENTS} events at least once after a SIGKILL with deliveries pending, and exactly once per webhook-id`, async () => {
      db = await freshDatabase(dialect);
      // A slow receiver (40 ms a request, 4 deliveries at a time): most events are still waiting when the server dies.
      rx = await startReceiver(() => ({ status: 200, delayMs: 40 }));
      const env = {
        ...db.env,
        MAILWARD_LOG_LEVEL: 'warn',
        MAILWARD_WEBHOOK_ALLOW_HOSTS: `127.0.0.1:${rx.port}`,
        MAILWARD_WEBHOOK_CONCURRENCY: '4',
        MAILWARD_WEBHOOK_LEASE_SECONDS: '2',
        MAILWARD_WEBHOOK_POLL_MS: '100',
        MAILWARD_WEBHOOK_RETRY_SCHEDULE: '1,1,1,1,1',
        MAILWARD_RATE_LIMIT_PER_MINUTE: '100000',
      };
      s = await startServer(env, { readyMs: 120_000 });
      const admin = fs.readFileSync(path.join(db.dataDir, 'bootstrap-admin.key'), 'utf8').trim();
      let call = api(s.port);
      const made = await call('POST', '/v1/webhooks', admin, { url: rx.url('/hook'), event_types: ['consent.changed'] });
      expect(made.status).toBe(201);

      for (let i = 0; i < EVENTS; i += 10) {
        await Promise.all(
          Array.from({ length: 10 }, (_, j) =>
            call('PUT', `/v1/contacts/${encodeURIComponent(`patient${i + j}@example.org`)}/consent`, admin, {
              electronic: true,
              categories: ['appointment'],
              source: 'portal',
            }).then((r) => expect(r.status).toBe(200)),
          ),
        );
      }
      const unique = () => new Set(rx!.got.map((g) => g.headers['webhook-id'])).size;
      expect(await waitFor(() => unique() >= 20, { timeoutMs: 30_000 })).toBe(true);
      s.child.kill('SIGKILL');
      await new Promise<void>((r) => (s!.child.exitCode !== null || s!.child.signalCode !== null ? r() : s!.child.once('exit', () => r())));
      const atKill = unique();
      console.info(`${atKill} of ${EVENTS} events had reached the receiver when the server was killed`);
      expect(atKill).toBeLessThan(EVENTS);

      s = await startServer(env, { readyMs: 120_000 });
      call = api(s.port);
      expect(await waitFor(() => unique() >= EVENTS, { timeoutMs: 90_000, everyMs: 100 })).toBe(true);

      // Every event of the log arrived, counted once per webhook-id however often it came.
      const ids: string[] = [];
      let cursor: string | undefined;
      for (;;) {
        const r = await call('GET', `/v1/events?types=consent.changed&limit=500${cursor ? `&cursor=${cursor}` : ''}`, admin);
        ids.push(...r.body.events.map((e: { id: string }) => e.id));
        cursor = r.body.next_cursor;
        if (r.body.events.length < 500) break;
      }
      expect(ids).toHaveLength(EVENTS);
      const received = new Set(rx.got.map((g) => g.headers['webhook-id']));
      expect([...received].sort()).toEqual([...ids].sort());
      console.info(`${rx.got.length} requests for ${received.size} events (${rx.got.length - received.size} repeats after the kill)`);
    }, 300_000);
  });
}
