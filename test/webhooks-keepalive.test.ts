import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testDialects } from './support/dialects.js';
import { createTestApp, type TestApp } from './support/test-app.js';
import { waitFor } from './support/wait.js';

type Hit = { server: string; clientPort: number; id: string };

/** Two receivers on one port of two loopback addresses (127.0.0.1 and 127.0.0.2), recording which socket each request came over. */
const startPair = async () => {
  const hits: Hit[] = [];
  const make = (name: string) =>
    http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        hits.push({ server: name, clientPort: req.socket.remotePort ?? 0, id: String(req.headers['webhook-id']) });
        res.end('ok');
      });
    });
  const a = make('127.0.0.1');
  const b = make('127.0.0.2');
  for (const s of [a, b]) s.keepAliveTimeout = 30_000;
  await new Promise<void>((r) => a.listen(0, '127.0.0.1', () => r()));
  const port = (a.address() as AddressInfo).port;
  await new Promise<void>((resolve, reject) => {
    b.once('error', reject);
    b.listen(port, '127.0.0.2', () => resolve());
  });
  const close = async () => {
    for (const s of [a, b]) {
      s.closeAllConnections();
      await new Promise<void>((r) => s.close(() => r()));
    }
  };
  return { hits, port, close };
};

for (const dialect of testDialects()) {
  describe(`webhook keep-alive and DNS (${dialect})`, () => {
    let t: TestApp;
    let rx: Awaited<ReturnType<typeof startPair>>;
    // What `moving.example` resolves to now; the test changes it between deliveries.
    let answer = '127.0.0.1';

    // A receiver that reads the request and never answers.
    let hang: { port: number; close: () => Promise<void> };

    beforeAll(async () => {
      rx = await startPair();
      const server = http.createServer((req) => req.resume());
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
      hang = {
        port: (server.address() as AddressInfo).port,
        close: async () => {
          server.closeAllConnections();
          await new Promise<void>((r) => server.close(() => r()));
        },
      };
      t = await createTestApp(dialect, {
        env: {
          MAILWARD_WEBHOOK_ALLOW_HOSTS: `moving.example:${rx.port},127.0.0.1:${hang.port}`,
          MAILWARD_WEBHOOK_POLL_MS: '50',
          MAILWARD_WEBHOOK_TIMEOUT_MS: '300',
          MAILWARD_WEBHOOK_RETRY_SCHEDULE: '1',
        },
        hostLookup: async (host) => {
          if (host !== 'moving.example') throw new Error('ENOTFOUND');
          return [{ address: answer, family: 4 }];
        },
      });
      t.c.webhooks.worker.start();
    }, 60_000);
    afterAll(async () => {
      await t?.close();
      await rx?.close();
      await hang?.close();
    });

    it('ends an attempt whose receiver never answers at MAILWARD_WEBHOOK_TIMEOUT_MS, as ETIMEDOUT in the delivery log', async () => {
      const made = await t.call('POST', '/v1/webhooks', t.adminKey, {
        url: `http://127.0.0.1:${hang.port}/silent`,
        event_types: ['consent.changed'],
      });
      expect(made.status).toBe(201);
      await t.call('PUT', `/v1/contacts/${encodeURIComponent('silent@example.org')}/consent`, t.adminKey, {
        electronic: true,
        categories: ['appointment'],
        source: 'portal',
      });
      const log = () => t.call('GET', `/v1/webhooks/${made.body.id}/deliveries`, t.adminKey);
      expect(await waitFor(async () => (await log()).body.deliveries.length >= 1)).toBe(true);
      const first = (await log()).body.deliveries.at(-1);
      expect(first).toMatchObject({ outcome: 'failed', status_code: null, error: 'ETIMEDOUT' });
      expect(first.latency_ms).toBeGreaterThanOrEqual(250);
      await t.call('DELETE', `/v1/webhooks/${made.body.id}`, t.adminKey);
    });

    it('reuses a kept-alive connection while the name resolves the same, and opens one to the new address when its answer changes', async () => {
      const made = await t.call('POST', '/v1/webhooks', t.adminKey, {
        url: `http://moving.example:${rx.port}/hook`,
        event_types: ['consent.changed'],
      });
      expect(made.status).toBe(201);
      const consent = (n: number) =>
        t.call('PUT', `/v1/contacts/${encodeURIComponent(`keepalive${n}@example.org`)}/consent`, t.adminKey, {
          electronic: true,
          categories: ['appointment'],
          source: 'portal',
        });

      // Two deliveries one after the other: the second rides the first one's connection (keep-alive is on).
      await consent(1);
      expect(await waitFor(() => rx.hits.length >= 1)).toBe(true);
      await consent(2);
      expect(await waitFor(() => rx.hits.length >= 2)).toBe(true);
      expect(rx.hits.map((h) => h.server)).toEqual(['127.0.0.1', '127.0.0.1']);
      expect(rx.hits[1]!.clientPort).toBe(rx.hits[0]!.clientPort);

      // The name now answers another address: the idle connection to the old one must not carry the next
      // delivery; it goes to the address checked for this attempt.
      answer = '127.0.0.2';
      await consent(3);
      expect(await waitFor(() => rx.hits.length >= 3)).toBe(true);
      expect(rx.hits[2]!.server).toBe('127.0.0.2');
      // Each of the three events arrived exactly once.
      expect(new Set(rx.hits.map((h) => h.id)).size).toBe(3);
      await t.call('DELETE', `/v1/webhooks/${made.body.id}`, t.adminKey);
    });
  });
}
