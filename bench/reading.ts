/**
 * Benchmark (reading): content is sealed at rest, so a search
 * decrypts. Measures, in process (fastify inject, no sockets), one search
 * that examines a full scan budget (SCAN_BUDGET messages of ~2 KB, no match)
 * and a plain 50-message page, against the bare cost of opening the same
 * sealed documents in a loop, in the same run, on SQLite and PostgreSQL. No
 * target in the issue; this tells operators what one bounded search costs.
 */
import { loadConfig } from '../src/app/config.js';
import { createContainer } from '../src/app/container.js';
import { buildServer } from '../src/app/http-server.js';
import { createLogger } from '../src/kernel/log.js';
import { openContent } from '../src/mail/message-store.js';
import { SCAN_BUDGET } from '../src/mail/read-service.js';
import { seedMessages } from '../test/support/inbound-seed.js';
import type { TestApp } from '../test/support/test-app.js';
import { benchStore, fmt, table } from './support/bench-kit.js';

const ROUNDS = Number(process.env.MAILWARD_BENCH_READ_ROUNDS ?? 7);
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

    const search = await timed(() => call('GET', `/v1/mailboxes/${mailbox.id}/search?q=no-such-words&limit=50`, key));
    const page = await timed(() => call('GET', `/v1/mailboxes/${mailbox.id}/messages?limit=50`, key));
    const all = await c.store.db.selectFrom('messages').selectAll().where('mailbox_id', '=', mailbox.id).execute();
    const bare = await timed(async () => {
      for (const m of all) openContent(c.ring, m, m.content_sealed);
    });
    rows.push({
      dialect,
      measure: `search over ${SCAN_BUDGET} messages (full budget, no match)`,
      'median ms': fmt(search, 1),
      'messages/s': fmt((SCAN_BUDGET / search) * 1000),
    });
    rows.push({
      dialect,
      measure: `baseline: open the same ${SCAN_BUDGET} sealed documents in a loop`,
      'median ms': fmt(bare, 1),
      'messages/s': fmt((SCAN_BUDGET / bare) * 1000),
    });
    rows.push({ dialect, measure: 'plain list, 50 messages (SQL page, 50 opened)', 'median ms': fmt(page, 1), 'messages/s': '' });
  } finally {
    await app.close();
    await c.close();
    await store.drop();
  }
}
table(`Reading sealed mail: one bounded search vs opening the same documents (median of ${ROUNDS})`, rows);
