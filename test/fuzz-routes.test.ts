import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testDialects } from './support/dialects.js';
import { createTestApp, seedAgent, type TestApp } from './support/test-app.js';

/**
 * Property: no input makes any route answer 5xx, and a rejected request (4xx)
 * leaves the store as it was. The one intended trace of a refusal is its audit
 * event (401/403/404 are recorded as `denied`), so the audit tables, rate-limit
 * counters and keys' last_used_at are left out of the comparison (audit_chains and audit_kinds too: a refusal's
 * event may be the first of its delegation chain or of its kind, which the compact log stores once; the stored
 * events are audit_event_rows, read through the audit_events view).
 */
const IGNORED_TABLES = new Set([
  'audit_chains',
  'audit_event_rows',
  'audit_events',
  'audit_kinds',
  'audit_head',
  'audit_pending',
  'rate_limit_buckets',
  'kysely_migration',
  'kysely_migration_lock',
]);

const snapshot = async (t: TestApp): Promise<string> => {
  const tables = await t.c.store.db.introspection.getTables();
  const parts: string[] = [];
  for (const table of tables
    .map((x) => x.name)
    .filter((n) => !IGNORED_TABLES.has(n))
    .sort()) {
    const rows = await t.c.store.db
      .selectFrom(table as 'agents')
      .selectAll()
      .execute();
    const clean = rows.map((r) => {
      const { last_used_at: _ignored, ...rest } = r as Record<string, unknown>;
      return JSON.stringify(rest);
    });
    parts.push(`${table}:${clean.sort().join('\n')}`);
  }
  return parts.join('\n---\n');
};

type Route = { method: string; path: string };

const routesOf = async (t: TestApp): Promise<Route[]> => {
  const doc = (await t.call('GET', '/openapi.json', null)).body as { paths: Record<string, Record<string, unknown>> };
  const out: Route[] = [];
  for (const [path, methods] of Object.entries(doc.paths)) {
    // The event stream never ends a valid request (Server-Sent Events): inject would wait forever; test/events-api.test.ts covers it.
    if (path === '/v1/events/stream') continue;
    for (const m of Object.keys(methods)) if (path.startsWith('/v1/')) out.push({ method: m.toUpperCase(), path });
  }
  return out;
};

/**
 * Text no store keeps faithfully: NUL (PostgreSQL text refuses it) and lone
 * surrogates (no UTF-8 form), mixed with ordinary and astral characters.
 */
const nastyText = (maxLength: number) =>
  fc.string({
    maxLength,
    unit: fc.oneof(
      { weight: 3, arbitrary: fc.string({ minLength: 1, maxLength: 1 }) },
      fc.constantFrom('\u0000', '\ud800', '\udbff', '\udc00', '\udfff', '\ud83d\ude00', '\u00e9'),
    ),
  });

const LONE_SURROGATE = /\p{Cs}/u;

/** Whether a string or parsed JSON value (keys included) holds NUL or a lone surrogate: the test's own check, independent of the server's. */
const isUnsafe = (v: unknown): boolean => {
  if (typeof v === 'string') return v.includes('\u0000') || LONE_SURROGATE.test(v);
  if (Array.isArray(v)) return v.some(isUnsafe);
  if (v && typeof v === 'object') return Object.entries(v).some(([k, x]) => isUnsafe(k) || isUnsafe(x));
  return false;
};

/** encodeURIComponent, except that a lone surrogate (which it refuses) goes out as the bytes a careless client sends: its 3-byte CESU-8 form, invalid UTF-8. */
const encodeComponent = (s: string) =>
  s
    .split(/(\p{Cs})/u)
    .map((part) =>
      LONE_SURROGATE.test(part)
        ? [0xe0 | (part.charCodeAt(0) >> 12), 0x80 | ((part.charCodeAt(0) >> 6) & 0x3f), 0x80 | (part.charCodeAt(0) & 0x3f)]
            .map((b) => `%${b.toString(16).toUpperCase()}`)
            .join('')
        : encodeURIComponent(part),
    )
    .join('');

const idLike = (prefixes: string[]) =>
  fc.oneof(
    fc.constantFrom(...prefixes).chain((p) => fc.stringMatching(/^[0-9a-f]{32}$/).map((h) => `${p}_${h}`)),
    fc.string({ maxLength: 80 }),
    nastyText(40),
    fc.constantFrom('..', '%2e%2e', 'null', '0', "' or 1=1 --", 'a\r\nb', 'a\u0000b@x.example', '\ud800@x.example'),
  );

const jsonValue = fc.oneof(
  fc.jsonValue({ maxDepth: 4 }),
  fc.record(
    {
      name: fc.oneof(
        fc.string({ maxLength: 300 }),
        nastyText(60),
        fc.constantFrom('ok name', 'evil\r\nBcc: x@y.z', '\u0000', '\ud800', 'x'.repeat(5000)),
        fc.integer(),
      ),
      matter: fc.oneof(fc.string({ maxLength: 50 }), nastyText(50)),
      email: fc.oneof(fc.emailAddress(), fc.string(), fc.constantFrom('a@b', 'x@y.z\r\n', '@@')),
      roles: fc.oneof(fc.array(fc.constantFrom('admin', 'reviewer', 'auditor', 'privacy_officer', 'root', '')), fc.string()),
      parent_id: fc.oneof(fc.constant(null), idLike(['dep'])),
      department_id: idLike(['dep', 'agt']),
      responsible_human_id: idLike(['hum']),
      scopes: fc.oneof(fc.array(fc.constantFrom('mail:send', 'mail:read', 'vault:reveal', 'reviewer', 'admin', 'x')), fc.integer()),
      extra: fc.anything(),
      'k\ud800': fc.string({ maxLength: 5 }),
    },
    { requiredKeys: [] },
  ),
  fc.dictionary(nastyText(10), fc.oneof(nastyText(30), fc.integer()), { maxKeys: 4 }),
);

const bodyArb = fc.oneof(
  { weight: 6, arbitrary: jsonValue.map((v) => ({ payload: JSON.stringify(v), type: 'application/json' })) },
  { weight: 1, arbitrary: fc.string({ maxLength: 200 }).map((s) => ({ payload: s, type: 'application/json' })) },
  { weight: 1, arbitrary: fc.oneof(fc.string({ maxLength: 200 }), nastyText(100)).map((s) => ({ payload: s, type: 'text/plain' })) },
  { weight: 1, arbitrary: fc.constant({ payload: '', type: 'application/json' }) },
  { weight: 1, arbitrary: fc.constant({ payload: `{"name":"${'a'.repeat(1_100_000)}"}`, type: 'application/json' }) },
);

for (const dialect of testDialects()) {
  describe(`every route under random input (${dialect})`, () => {
    let t: TestApp;
    let keys: string[];
    let knownIds: string[];
    beforeAll(async () => {
      t = await createTestApp(dialect);
      const s = await seedAgent(t, 'Fuzz Target');
      keys = [t.adminKey, s.agentKey, 'mw_key_00000000000000000000000000000000_' + '0'.repeat(64), 'garbage'];
      knownIds = [s.agent.id, s.department.id, s.reviewer.id, s.agentKeyId];
    });
    afterAll(async () => {
      await t?.close();
    });

    it('never answers 5xx and leaves the store unchanged when it rejects', async () => {
      const routes = await routesOf(t);
      expect(routes.length).toBeGreaterThan(10);
      const seen = new Map<number, number>();
      // The store as the last refused request left it (a refusal changes nothing); unknown after a success.
      let known: string | undefined;
      await fc.assert(
        fc.asyncProperty(
          fc.constantFrom(...routes),
          fc.constantFrom(...keys),
          bodyArb,
          fc.oneof(fc.constantFrom(...knownIds), idLike(['dep', 'hum', 'agt', 'key'])),
          fc.dictionary(
            fc.constantFrom('cursor', 'limit', 'since', 'action', 'actor_id', 'principal_id', 'status', 'subject', 'x'),
            fc.oneof(fc.string({ maxLength: 30 }), nastyText(20), fc.constantFrom('1e3', '0x10', ' 5', 'zzz', 'bogus')),
            { maxKeys: 3 },
          ),
          async (route, key, body, id, query) => {
            const qs = Object.entries(query)
              .map(([k, v]) => `${k}=${encodeComponent(v)}`)
              .join('&');
            const url = route.path.replace(/\{[a-z_]+\}/g, encodeComponent(id)) + (qs ? `?${qs}` : '');
            const sendsBody = route.method !== 'GET' && route.method !== 'DELETE';
            let parsedBody: unknown;
            try {
              parsedBody = body.type === 'application/json' ? JSON.parse(body.payload) : body.payload;
            } catch {
              parsedBody = undefined;
            }
            const carriesUnsafe =
              (route.path.includes('{') && isUnsafe(id)) || Object.values(query).some(isUnsafe) || (sendsBody && isUnsafe(parsedBody));
            const before = known ?? (await snapshot(t));
            known = undefined;
            const res = await t.app.inject({
              method: route.method as 'POST',
              url,
              headers: { authorization: `Bearer ${key}`, ...(sendsBody ? { 'content-type': body.type } : {}) },
              ...(sendsBody ? { payload: body.payload } : {}),
            });
            seen.set(res.statusCode, (seen.get(res.statusCode) ?? 0) + 1);
            expect(res.statusCode, `${route.method} ${route.path} -> ${res.body.slice(0, 300)}`).toBeLessThan(500);
            // NUL and lone surrogates are refused wherever they enter (never stored, changed or half-handled).
            if (carriesUnsafe) expect(res.statusCode, `${route.method} ${url} accepted unsafe text`).toBeGreaterThanOrEqual(400);
            if (res.statusCode >= 400) {
              expect(res.headers['content-type']).toMatch(/application\/problem\+json/);
              const problem = JSON.parse(res.body) as { code: string };
              expect(problem.code).toMatch(/^[a-z_0-9]+$/);
              const after = await snapshot(t);
              expect(after).toBe(before);
              known = after;
            }
          },
        ),
        { numRuns: Number(process.env.MAILWARD_FUZZ_RUNS ?? 400), seed: Number(process.env.MAILWARD_FUZZ_SEED ?? Date.now() % 2 ** 31) },
      );
      if (process.env.MAILWARD_FUZZ_VERBOSE) console.log(Object.fromEntries(seen));
      // The property is only meaningful if both outcomes occurred.
      expect([...seen.keys()].some((s) => s >= 400)).toBe(true);
      // A snapshot of every table per request: PostgreSQL on a loaded machine needs more than the default minute.
    }, 300_000);
  });
}
