/**
 * Benchmark (reviewer console): server time of the queue's first page and of a deep page (keyset cursor
 * taken from walking the queue) with 10,000 pending approvals, and of the review page of a 1 MB message,
 * through fastify inject with a real signed-in session (password + TOTP from oathtool). Targets: queue
 * pages under 150 ms on SQLite, the review page under 200 ms.
 */
import { loadConfig } from '../src/app/config.js';
import { createContainer } from '../src/app/container.js';
import { buildServer } from '../src/app/http-server.js';
import { createLogger } from '../src/kernel/log.js';
import { consoleClient, oathtoolCode } from '../test/support/console-client.js';
import { seedMessages } from '../test/support/inbound-seed.js';
import type { TestApp } from '../test/support/test-app.js';
import { benchStore, fmt, table } from './support/bench-kit.js';

const N = Number(process.env.MAILWARD_BENCH_QUEUE_SIZE ?? 10_000);
const ROUNDS = Number(process.env.MAILWARD_BENCH_READ_ROUNDS ?? 7);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const PASSWORD = 'bench lantern orchard copper';

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
    const call = async (method: string, url: string, body?: unknown) => {
      const r = await app.inject({
        method: method as 'GET',
        url,
        headers: { authorization: `Bearer ${init.admin_api_key}`, ...(body ? { 'content-type': 'application/json' } : {}) },
        ...(body ? { payload: JSON.stringify(body) } : {}),
      });
      if (r.statusCode >= 300) throw new Error(`${method} ${url}: ${r.statusCode} ${r.body.slice(0, 200)}`);
      return JSON.parse(r.body);
    };
    const dep = await call('POST', '/v1/departments', { name: 'Bench' });
    const hum = await call('POST', '/v1/humans', { name: 'Bench Reviewer', email: 'bench@bench.example', roles: ['reviewer'] });
    const agent = await call('POST', '/v1/agents', { name: 'Bench Agent', department_id: dep.id, responsible_human_id: hum.id });
    const mailbox = await call('POST', '/v1/mailboxes', { agent_id: agent.id, display_name: 'Bench', oversight_mode: 'gated_all' });
    const t = { c, orgId: init.org_id, domain: 'bench.example' } as unknown as TestApp;
    const base = Date.now() - N * 1000;
    for (let i = 0; i < N; i += 1000)
      await seedMessages(
        t,
        mailbox,
        Array.from({ length: Math.min(1000, N - i) }, (_, j) => ({
          from: `sender${i + j}@lab.example`,
          subject: `Results ${i + j}`,
          text: 'Potassium within range; please book a follow-up. '.repeat(20),
          status: (i + j) % 4 === 0 ? 'quarantined' : 'pending_approval',
          createdAt: new Date(base + (i + j) * 1000).toISOString(),
        })),
      );
    const [big] = await seedMessages(t, mailbox, [
      {
        from: 'big@lab.example',
        subject: 'Large report',
        text: 'Report line with MRN: 4820193 and values. '.repeat(24_000),
        status: 'pending_approval',
      },
    ]);

    // A reviewer signed in through the console (password, then TOTP).
    const inv = await call('POST', `/v1/humans/${hum.id}/invitations`);
    const b = consoleClient(app);
    const path = new URL(inv.url).pathname;
    await b.request('GET', path);
    await b.request('POST', path, { form: { csrf: b.csrf(), password: PASSWORD, password_confirm: PASSWORD } });
    const enrol = await b.request('GET', '/console/enrol');
    const secret = /id="totp-secret">([A-Z2-7]+)</.exec(enrol.body)![1]!;
    await b.request('POST', '/console/enrol/totp', { form: { csrf: b.csrf(), code: oathtoolCode(secret, new Date()) } });

    const timed = async (url: string) => {
      const ms: number[] = [];
      for (let i = 0; i < ROUNDS; i++) {
        const t0 = performance.now();
        const r = await b.request('GET', url);
        ms.push(performance.now() - t0);
        if (r.status !== 200) throw new Error(`${url}: ${r.status}`);
      }
      return median(ms);
    };
    // The deep page: walk 100 pages of 50 (row 5,000) and time the page the cursor names.
    let url = '/console/queue';
    for (let p = 0; p < 100; p++) {
      const r = await b.request('GET', url);
      const next = /id="next-page" href="([^"]+)"/.exec(r.body)?.[1];
      if (!next) break;
      url = next.replaceAll('&amp;', '&');
    }
    const first = await timed('/console/queue');
    const deep = await timed(url);
    const filtered = await timed('/console/queue?reason=dmarc_fail&sort=expiring');
    const review = await timed(`/console/review/${big}`);
    rows.push({ dialect, measure: `queue, first page of 50 (${N} pending)`, 'median ms': fmt(first, 1), target: '< 150' });
    rows.push({ dialect, measure: 'queue, page at row 5,000 (keyset cursor)', 'median ms': fmt(deep, 1), target: '< 150' });
    rows.push({ dialect, measure: 'queue, filtered by reason, sorted by expiry', 'median ms': fmt(filtered, 1), target: '' });
    rows.push({ dialect, measure: 'review page of a 1 MB message', 'median ms': fmt(review, 1), target: '< 200' });
  } finally {
    await app.close();
    await c.close();
    await store.drop();
  }
}
table(`Reviewer console: server time through inject with a signed-in session (median of ${ROUNDS})`, rows);
