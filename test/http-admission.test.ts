import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testDialects } from './support/dialects.js';
import { createTestApp, type TestApp } from './support/test-app.js';
import { waitFor } from './support/wait.js';

/**
 * The HTTP admission queue (src/http/admission.ts) through the real server on a loopback port. A test-only route
 * holds its requests until the test opens a gate, so the slots and the queue fill deterministically, whatever the
 * machine's speed.
 */
const holder = () => {
  let open!: () => void;
  const gate = new Promise<void>((r) => {
    open = r;
  });
  let calls = 0;
  const mount = (app: FastifyInstance) => {
    app.get('/test/hold', async () => {
      calls++;
      await gate;
      return { held: true };
    });
  };
  return { mount, open: () => open(), calls: () => calls };
};

const listen = async (t: TestApp) => {
  await t.app.listen({ host: '127.0.0.1', port: 0 });
  const { port } = t.app.server.address() as { port: number };
  return `http://127.0.0.1:${port}`;
};

const gauge = async (base: string, name: string): Promise<number> => {
  const text = await (await fetch(`${base}/metrics`)).text();
  const m = new RegExp(`^${name} (\\d+)$`, 'm').exec(text);
  return m ? Number(m[1]) : Number.NaN;
};

for (const dialect of testDialects()) {
  describe(`HTTP admission queue (${dialect})`, () => {
    describe('with 2 slots and 3 places in the queue', () => {
      let t: TestApp;
      let base: string;
      const hold = holder();
      beforeAll(async () => {
        t = await createTestApp(dialect, {
          env: { MAILWARD_HTTP_MAX_IN_FLIGHT: '2', MAILWARD_HTTP_QUEUE_LIMIT: '3', MAILWARD_HTTP_QUEUE_WAIT_MS: '600000' },
          beforeReady: hold.mount,
        });
        base = await listen(t);
      });
      afterAll(async () => {
        hold.open();
        await t?.close();
      });

      it('refuses a request past the full queue 503 server_busy with Retry-After, keeps health and metrics answering, and serves every queued request once slots free', async () => {
        const running = [0, 1].map(() => fetch(`${base}/test/hold`));
        expect(await waitFor(async () => (await gauge(base, 'mailward_http_requests_in_flight')) === 2)).toBe(true);
        const queued = [0, 1, 2].map(() => fetch(`${base}/v1/me`, { headers: { authorization: `Bearer ${t.adminKey}` } }));
        expect(await waitFor(async () => (await gauge(base, 'mailward_http_queue_waiting')) === 3)).toBe(true);

        const refused = await fetch(`${base}/v1/me`, { headers: { authorization: `Bearer ${t.adminKey}` } });
        expect(refused.status).toBe(503);
        expect(refused.headers.get('retry-after')).toBe('1');
        expect(refused.headers.get('content-type')).toContain('application/problem+json');
        expect(await refused.json()).toMatchObject({ code: 'server_busy', status: 503, temporary: true });
        // A request without a key is refused the same way: the queue comes before the key check.
        expect((await fetch(`${base}/v1/me`)).status).toBe(503);

        // Liveness and metrics are exempt: they answer while every slot is taken.
        expect((await fetch(`${base}/healthz`)).status).toBe(200);
        const metrics = await (await fetch(`${base}/metrics`)).text();
        expect(metrics).toMatch(/^mailward_http_rejected_total\{reason="queue_full"\} 2$/m);

        hold.open();
        for (const r of await Promise.all(running)) expect(r.status).toBe(200);
        for (const r of await Promise.all(queued)) expect(r.status).toBe(200);
        expect(await waitFor(async () => (await gauge(base, 'mailward_http_requests_in_flight')) === 0)).toBe(true);
        expect(await gauge(base, 'mailward_http_queue_waiting')).toBe(0);
        expect((await fetch(`${base}/v1/me`, { headers: { authorization: `Bearer ${t.adminKey}` } })).status).toBe(200);
      });

      it('serves every request of a burst larger than the slots but within the queue', async () => {
        const burst = await Promise.all(
          Array.from({ length: 5 }, () => fetch(`${base}/v1/me`, { headers: { authorization: `Bearer ${t.adminKey}` } })),
        );
        expect(burst.map((r) => r.status)).toEqual([200, 200, 200, 200, 200]);
        // In-process requests (fastify's inject, as most tests use) give their slot back too.
        for (let i = 0; i < 10; i++) expect((await t.call('GET', '/v1/me', t.adminKey)).status).toBe(200);
      });
    });

    describe('with 1 slot and a long wait', () => {
      let t: TestApp;
      let base: string;
      const hold = holder();
      beforeAll(async () => {
        t = await createTestApp(dialect, {
          env: { MAILWARD_HTTP_MAX_IN_FLIGHT: '1', MAILWARD_HTTP_QUEUE_LIMIT: '10', MAILWARD_HTTP_QUEUE_WAIT_MS: '600000' },
          beforeReady: hold.mount,
        });
        base = await listen(t);
      });
      afterAll(async () => {
        hold.open();
        await t?.close();
      });

      it('lets a client that gives up leave the queue, and never runs its request', async () => {
        const running = fetch(`${base}/test/hold`);
        expect(await waitFor(async () => (await gauge(base, 'mailward_http_requests_in_flight')) === 1)).toBe(true);
        const abort = new AbortController();
        const gone = fetch(`${base}/test/hold`, { signal: abort.signal }).catch((e: Error) => e.name);
        expect(await waitFor(async () => (await gauge(base, 'mailward_http_queue_waiting')) === 1)).toBe(true);
        abort.abort();
        expect(await gone).toBe('AbortError');
        expect(await waitFor(async () => (await gauge(base, 'mailward_http_queue_waiting')) === 0)).toBe(true);
        hold.open();
        expect((await running).status).toBe(200);
        expect(hold.calls()).toBe(1);
        // The slot came back once, not twice: one request runs, the next one waits.
        expect(await waitFor(async () => (await gauge(base, 'mailward_http_requests_in_flight')) === 0)).toBe(true);
        const after = await Promise.all(
          [0, 1, 2].map(() => fetch(`${base}/v1/me`, { headers: { authorization: `Bearer ${t.adminKey}` } })),
        );
        expect(after.map((r) => r.status)).toEqual([200, 200, 200]);
      });
    });

    describe('with 1 slot and a short wait', () => {
      let t: TestApp;
      let base: string;
      const hold = holder();
      beforeAll(async () => {
        t = await createTestApp(dialect, {
          env: { MAILWARD_HTTP_MAX_IN_FLIGHT: '1', MAILWARD_HTTP_QUEUE_LIMIT: '10', MAILWARD_HTTP_QUEUE_WAIT_MS: '100' },
          beforeReady: hold.mount,
        });
        base = await listen(t);
      });
      afterAll(async () => {
        hold.open();
        await t?.close();
      });

      it('answers a request that waited its longest wait 503 server_busy', async () => {
        const running = fetch(`${base}/test/hold`);
        expect(await waitFor(async () => (await gauge(base, 'mailward_http_requests_in_flight')) === 1)).toBe(true);
        const waited = await fetch(`${base}/v1/me`, { headers: { authorization: `Bearer ${t.adminKey}` } });
        expect(waited.status).toBe(503);
        expect(waited.headers.get('retry-after')).toBe('1');
        expect(await waited.json()).toMatchObject({ code: 'server_busy', retry_after: 1 });
        expect(await (await fetch(`${base}/metrics`)).text()).toMatch(/^mailward_http_rejected_total\{reason="wait_expired"\} 1$/m);

        hold.open();
        expect((await running).status).toBe(200);
        expect(await waitFor(async () => (await gauge(base, 'mailward_http_requests_in_flight')) === 0)).toBe(true);
      });
    });
  });
}
