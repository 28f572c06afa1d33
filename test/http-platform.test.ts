import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/app/config.js';
import { openStore } from '../src/store/db.js';
import { migrateToLatest } from '../src/store/migrate.js';
import { freshDatabase, testDialects } from './support/dialects.js';
import { createTestApp, type TestApp } from './support/test-app.js';

for (const dialect of testDialects()) {
  describe(`HTTP platform (${dialect})`, () => {
    let t: TestApp;
    beforeAll(async () => {
      t = await createTestApp(dialect);
    });
    afterAll(async () => {
      await t?.close();
    });

    it('publishes an OpenAPI 3.1 document with every /v1 route and a readable reference page', async () => {
      const doc = await t.call('GET', '/openapi.json', null);
      expect(doc.status).toBe(200);
      expect(doc.body.openapi).toBe('3.1.0');
      expect(Object.keys(doc.body.paths)).toEqual(
        expect.arrayContaining(['/v1/me', '/v1/agents', '/v1/agents/{id}/api-keys', '/v1/api-keys/{id}', '/v1/audit/events']),
      );
      // Request bodies are named components (#/components/schemas/CreateAgentRequest).
      const ref: string = doc.body.paths['/v1/agents'].post.requestBody.content['application/json'].schema.$ref;
      expect(doc.body.components.schemas[ref.split('/').pop()!].properties).toHaveProperty('responsible_human_id');
      const page = await t.app.inject({ method: 'GET', url: '/docs/' });
      expect(page.statusCode).toBe(200);
      expect(page.body).toContain('swagger');
    });

    it('answers liveness and Prometheus metrics', async () => {
      const h = await t.call('GET', '/healthz', null);
      expect(h.body).toEqual({ status: 'ok', store: dialect });
      await t.call('GET', '/v1/me', t.adminKey);
      const m = await t.app.inject({ method: 'GET', url: '/metrics' });
      expect(m.body).toMatch(/mailward_http_requests_total\{method="GET",route="\/v1\/me",status="200"\} \d+/);
      expect(m.body).toContain('mailward_http_request_duration_seconds_bucket');
    });

    it('gives every answer a request id and echoes a sane incoming one', async () => {
      const a = await t.call('GET', '/v1/me', t.adminKey);
      expect(a.headers['x-request-id']).toMatch(/^req_[0-9a-f]{32}$/);
      const b = await t.call('GET', '/v1/me', t.adminKey, undefined, { 'x-request-id': 'abc-123' });
      expect(b.headers['x-request-id']).toBe('abc-123');
      const c = await t.call('GET', '/v1/me', t.adminKey, undefined, { 'x-request-id': 'bad id\twith tab' });
      expect(c.headers['x-request-id']).toMatch(/^req_/);
    });

    it.each([
      ['malformed JSON', '{"name":', 'malformed_json', 400],
      ['a wrong type', { name: 42 }, 'validation_failed', 400],
      ['an unknown field', { name: 'Oncology', color: 'blue' }, 'validation_failed', 400],
      ['CR/LF in a name', { name: 'Onc\r\nBcc: evil@example.com' }, 'validation_failed', 400],
      ['an empty body', '', 'malformed_json', 400],
      ['an oversized body', JSON.stringify({ name: 'x'.repeat(2_000_000) }), 'payload_too_large', 413],
    ])('rejects %s with a stable code', async (_label, body, code, status) => {
      const r = await t.call('POST', '/v1/departments', t.adminKey, body);
      expect(r.status).toBe(status);
      expect(r.headers['content-type']).toContain('application/problem+json');
      expect(r.body.code).toBe(code);
      expect(r.body.request_id).toBeTruthy();
    });

    it('rejects an invalid email address and an unknown role', async () => {
      const a = await t.call('POST', '/v1/humans', t.adminKey, { name: 'X', email: 'not-an-address', roles: ['reviewer'] });
      expect(a.status).toBe(400);
      const b = await t.call('POST', '/v1/humans', t.adminKey, { name: 'X', email: 'x@hospital.example', roles: ['superuser'] });
      expect(b.status).toBe(400);
      const c = await t.call('POST', '/v1/humans', t.adminKey, {
        name: 'X',
        email: 'x@hospital.example\r\nBcc: y@z.org',
        roles: ['reviewer'],
      });
      expect(c.status).toBe(400);
    });

    it('answers an unknown route and a missing key with problem+json', async () => {
      const r = await t.call('GET', '/v1/nothing-here', t.adminKey);
      expect(r.status).toBe(404);
      expect(r.body.code).toBe('route_not_found');
      const u = await t.call('GET', '/v1/me', null);
      expect(u.status).toBe(401);
      const m = await t.call('GET', '/v1/me', 'mw_key_x_y');
      expect(m.status).toBe(401);
    });

    it('runs migrations safely when several processes start at once', async () => {
      const db = await freshDatabase(dialect);
      try {
        const config = loadConfig(db.env);
        const stores = [0, 1, 2, 3].map(() => openStore(config.database));
        const applied = await Promise.all(stores.map((s) => migrateToLatest(s)));
        // Exactly one runner applied each migration; the others found nothing to do.
        const all = applied.flat();
        expect(new Set(all).size).toBe(all.length);
        expect(all.length).toBeGreaterThan(0);
        await Promise.all(stores.map((s) => s.destroy()));
      } finally {
        await db.drop();
      }
    });
  });
}

describe('rate limiting with batched store sync', () => {
  it('limits a key exactly within one process', async () => {
    const t = await createTestApp('sqlite', { env: { MAILWARD_RATE_LIMIT_PER_MINUTE: '5', MAILWARD_RATE_LIMIT_SYNC_MS: '50' } });
    try {
      const msIntoMinute = Date.now() % 60_000;
      if (msIntoMinute > 58_000) await new Promise((r) => setTimeout(r, 60_500 - msIntoMinute));
      const statuses: number[] = [];
      for (let i = 0; i < 7; i++) statuses.push((await t.call('GET', '/v1/me', t.adminKey)).status);
      expect(statuses).toEqual([200, 200, 200, 200, 200, 429, 429]);
      // The counts reach the store, where other processes read them.
      await new Promise((r) => setTimeout(r, 150));
      const rows = await t.c.store.db.selectFrom('rate_limit_buckets').selectAll().execute();
      expect(rows.reduce((n, r) => n + Number(r.count), 0)).toBe(7);
    } finally {
      await t.close();
    }
  });
});
