/**
 * Benchmark (reading): content is sealed at rest. Measures, in process (fastify inject, no sockets), on SQLite and
 * PostgreSQL in the same run: a decrypting search that examines a full scan budget (SCAN_BUDGET messages of ~2 KB, a
 * query the blind index cannot narrow) against the bare cost of opening the same sealed documents in a loop; the
 * indexed search and a plain page on that mailbox; and a mailbox of MAILWARD_BENCH_SEARCH_MESSAGES (100,000) messages:
 * a word only its oldest message holds, found by the index in one request, against the decrypting search paging
 * through the whole mailbox for the same message (targets: under 1 s in one request; first pages under 50 ms).
 */
import { sql } from 'kysely';
import { loadConfig } from '../src/app/config.js';
import { createContainer } from '../src/app/container.js';
import { buildServer } from '../src/app/http-server.js';
import { createLogger } from '../src/kernel/log.js';
import { openContent } from '../src/mail/message-store.js';
import { SCAN_BUDGET } from '../src/mail/read-service.js';
import { entryCount as allEntryCount } from '../src/mail/search-index.js';
import { seedMessages } from '../test/support/inbound-seed.js';
import type { TestApp } from '../test/support/test-app.js';
import { benchStore, fmt, table } from './support/bench-kit.js';

const ROUNDS = Number(process.env.MAILWARD_BENCH_READ_ROUNDS ?? 7);
/** Messages in the large mailbox (100,000 by default); 0 skips it. */
const BIG = Number(process.env.MAILWARD_BENCH_SEARCH_MESSAGES ?? 100_000);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const timed = async (fn: () => Promise<unknown>) => {
  const ms: number[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    const t0 = performance.now();
    await fn();
    ms.push(performance.now() - t0);
  }
  return median(ms);
};

const rows: Record<string, string | number>[] = [];
const dialects = (process.env.MAILWARD_BENCH_DIALECTS ?? 'sqlite,postgres').split(',') as ('sqlite' | 'postgres')[];
for (const dialect of dialects) {
  const store = await benchStore(dialect);
  const c = await createContainer(loadConfig({ ...store.env, MAILWARD_LOG_LEVEL: 'silent', MAILWARD_RATE_LIMIT_PER_MINUTE: '100000000' }), {
    createMasterKey: true,
    logger: createLogger({ level: 'silent' }),
  });
  const app = await buildServer(c);
  try {
    const init = await c.init({ orgName: 'Bench Hospital', domain: 'bench.example' });
    if (!init) throw new Error('init failed');
    const call = async (method: string, url: string, key: string, body?: unknown) => {
      const r = await app.inject({
        method: method as 'GET',
        url,
        headers: { authorization: `Bearer ${key}`, ...(body ? { 'content-type': 'application/json' } : {}) },
        ...(body ? { payload: JSON.stringify(body) } : {}),
      });
      if (r.statusCode >= 300) throw new Error(`${method} ${url}: ${r.statusCode} ${r.body.slice(0, 200)}`);
      return JSON.parse(r.body);
    };
    const admin = init.admin_api_key;
    const dep = await call('POST', '/v1/departments', admin, { name: 'Bench' });
    const hum = await call('POST', '/v1/humans', admin, { name: 'Bench Reviewer', email: 'bench@bench.example', roles: ['reviewer'] });
    const agent = await call('POST', '/v1/agents', admin, { name: 'Bench Agent', department_id: dep.id, responsible_human_id: hum.id });
    const { key } = await call('POST', `/v1/agents/${agent.id}/api-keys`, admin, {});
    const mailbox = await call('POST', '/v1/mailboxes', admin, { agent_id: agent.id, display_name: 'Bench', oversight_mode: 'autonomous' });
    const text = 'Potassium within range; please book a follow-up with the clinic. '.repeat(30);
    const t = { c, orgId: init.org_id, domain: 'bench.example' } as unknown as TestApp;
    await seedMessages(
      t,
      mailbox,
      Array.from({ length: SCAN_BUDGET }, (_, i) => ({ from: `sender${i}@lab.example`, subject: `Results ${i}`, text })),
    );

    // `q=z` has no word of two characters, so the blind index cannot narrow it: the mailbox is opened, as before the index.
    const search = await timed(() => call('GET', `/v1/mailboxes/${mailbox.id}/search?q=z&limit=50`, key));
    const indexedMiss = await timed(() => call('GET', `/v1/mailboxes/${mailbox.id}/search?q=no-such-words&limit=50`, key));
    const page = await timed(() => call('GET', `/v1/mailboxes/${mailbox.id}/messages?limit=50`, key));
    const all = await c.store.db.selectFrom('messages').selectAll().where('mailbox_id', '=', mailbox.id).execute();
    const bare = await timed(async () => {
      for (const m of all) openContent(c.ring, m, m.content_sealed);
    });
    rows.push({
      dialect,
      measure: `decrypting search over ${SCAN_BUDGET} messages (no indexed word, full budget, no match)`,
      'median ms': fmt(search, 1),
      'messages/s': fmt((SCAN_BUDGET / search) * 1000),
      requests: 1,
    });
    rows.push({
      dialect,
      measure: `baseline: open the same ${SCAN_BUDGET} sealed documents in a loop`,
      'median ms': fmt(bare, 1),
      'messages/s': fmt((SCAN_BUDGET / bare) * 1000),
      requests: '',
    });
    rows.push({
      dialect,
      measure: `indexed search, ${SCAN_BUDGET} messages, no match`,
      'median ms': fmt(indexedMiss, 1),
      'messages/s': '',
      requests: 1,
    });
    rows.push({
      dialect,
      measure: 'plain list, 50 messages (SQL page, 50 opened)',
      'median ms': fmt(page, 1),
      'messages/s': '',
      requests: 1,
    });

    // A large mailbox (issue target: 100,000): a word only in the oldest message, found by the index in one request,
    // against the decrypting search (same mailbox, a one-letter word only the oldest has) paged to the end.
    if (BIG > 0) {
      const agent2 = await call('POST', '/v1/agents', admin, { name: 'Big Agent', department_id: dep.id, responsible_human_id: hum.id });
      const key2 = (await call('POST', `/v1/agents/${agent2.id}/api-keys`, admin, {})).key as string;
      const big = await call('POST', '/v1/mailboxes', admin, { agent_id: agent2.id, display_name: 'Big', oversight_mode: 'autonomous' });
      const t0 = performance.now();
      await seedMessages(t, big, [
        { from: 'oldest@lab.example', subject: 'First results', text: `${text} tachycardia z`, createdAt: new Date(0).toISOString() },
      ]);
      for (let i = 0; i < BIG - 1; i += 5000)
        await seedMessages(
          t,
          big,
          Array.from({ length: Math.min(5000, BIG - 1 - i) }, (_, j) => ({
            from: `sender${i + j}@lab.example`,
            subject: `Results ${i + j}`,
            text,
          })),
        );
      const seededMs = performance.now() - t0;
      const needle = await timed(() => call('GET', `/v1/mailboxes/${big.id}/search?q=tachycardia&limit=50`, key2));
      const common = await timed(() => call('GET', `/v1/mailboxes/${big.id}/search?q=potassium&limit=50`, key2));
      const first = await timed(() => call('GET', `/v1/mailboxes/${big.id}/messages?limit=50`, key2));
      // The decrypting search once (it takes seconds): every page to the end.
      let requests = 0;
      let cursor: string | null = null;
      const s0 = performance.now();
      do {
        const r: { next_cursor: string | null } = await call(
          'GET',
          `/v1/mailboxes/${big.id}/search?q=z&limit=50${cursor ? `&cursor=${cursor}` : ''}`,
          key2,
        );
        cursor = r.next_cursor;
        requests++;
      } while (cursor);
      const decrypting = performance.now() - s0;
      // Bytes the index takes per message (its three tables and their keys), from the store's own accounting.
      const tables = ['search_pending', 'search_segments', 'search_postings'];
      const indexBytes = Number(
        dialect === 'postgres'
          ? (
              await sql<{
                b: string;
              }>`select sum(pg_total_relation_size(t)) as b from unnest(${sql.val(tables)}::text[]) as t`.execute(c.store.db)
            ).rows[0]!.b
          : (await sql<{ b: number }>`select sum(pgsize) as b from dbstat where name in (${sql.join(tables)})`.execute(c.store.db)).rows[0]!
              .b,
      );
      const entries = (await allEntryCount(c.store.db)) / (BIG + SCAN_BUDGET);
      const label = BIG.toLocaleString('en-US');
      rows.push({
        dialect,
        measure: `index size: ${fmt(indexBytes / (BIG + SCAN_BUDGET), 0)} bytes per message, ${fmt(entries, 1)} entries (${text.length + 60} bytes of text)`,
        'median ms': '',
        'messages/s': '',
        requests: '',
      });
      rows.push({
        dialect,
        measure: `${label}-message mailbox: word only in the oldest, indexed`,
        'median ms': fmt(needle, 1),
        'messages/s': '',
        requests: 1,
      });
      rows.push({
        dialect,
        measure: `${label}-message mailbox: the same find by decrypting (once, every page)`,
        'median ms': fmt(decrypting, 0),
        'messages/s': fmt((BIG / decrypting) * 1000),
        requests,
      });
      rows.push({
        dialect,
        measure: `${label}-message mailbox: search first page, word in every message`,
        'median ms': fmt(common, 1),
        'messages/s': '',
        requests: 1,
      });
      rows.push({
        dialect,
        measure: `${label}-message mailbox: list first page`,
        'median ms': fmt(first, 1),
        'messages/s': '',
        requests: 1,
      });
      rows.push({
        dialect,
        measure: `${label}-message mailbox: seeding (sealed and indexed)`,
        'median ms': fmt(seededMs, 0),
        'messages/s': fmt((BIG / seededMs) * 1000),
        requests: '',
      });
    }
  } finally {
    await app.close();
    await c.close();
    await store.drop();
  }
}
table(`Reading sealed mail: search with and without the blind index, vs opening the same documents (median of ${ROUNDS})`, rows);
