import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStore, type Store } from '../src/store/db.js';
import { httpConsoleClient, oathtoolCode } from './support/console-client.js';
import { freshDatabase, tempDir, testDialects } from './support/dialects.js';
import { startServer } from './support/processes.js';

type Serve = Awaited<ReturnType<typeof startServer>>;
const PASSWORD = 'granite willow signal harbor';

for (const dialect of testDialects()) {
  describe(`sessions live in the store: idle logoff and deactivation in two server processes (${dialect})`, () => {
    let db: Awaited<ReturnType<typeof freshDatabase>>;
    let a: Serve;
    let b: Serve;
    let store: Store;
    let admin = '';
    let clockFile = '';
    let offsetMs = 0;
    const now = () => new Date(Date.now() + offsetMs);
    /** Moves the clock of both processes (MAILWARD_TEST_CLOCK_FILE, read only under NODE_ENV=test). */
    const advance = async (ms: number) => {
      offsetMs += ms;
      fs.writeFileSync(clockFile, String(offsetMs));
      // Each process re-reads the file at most every 20 ms.
      await new Promise((r) => setTimeout(r, 50));
    };
    const api = async (port: number, method: string, p: string, body?: unknown) => {
      const r = await fetch(`http://127.0.0.1:${port}${p}`, {
        method,
        headers: { authorization: `Bearer ${admin}`, ...(body ? { 'content-type': 'application/json' } : {}) },
        body: body ? JSON.stringify(body) : undefined,
      });
      return { status: r.status, body: (await r.json()) as any };
    };
    const me = async (port: number, c: ReturnType<typeof httpConsoleClient>) =>
      (await c.request(`http://127.0.0.1:${port}`, 'GET', '/v1/me')).status;

    beforeAll(async () => {
      db = await freshDatabase(dialect);
      clockFile = path.join(tempDir('mw-clock'), 'offset');
      fs.writeFileSync(clockFile, '0');
      const env = { ...db.env, NODE_ENV: 'test', MAILWARD_TEST_CLOCK_FILE: clockFile, MAILWARD_LOG_LEVEL: 'warn' };
      a = await startServer(env, { readyMs: 120_000 });
      b = await startServer(env, { readyMs: 120_000 });
      admin = fs.readFileSync(path.join(db.dataDir, 'bootstrap-admin.key'), 'utf8').trim();
      store = openStore(
        db.url
          ? { kind: 'postgres', url: db.url, poolSize: 2 }
          : { kind: 'sqlite', file: path.join(db.dataDir, 'mailward.db'), checkpointEveryMs: 0 },
      );
    }, 300_000);
    afterAll(async () => {
      await store?.destroy();
      await a?.stop();
      await b?.stop();
      await db?.drop();
    });

    it('ends a session idle for 15 minutes in both processes, and a deactivation ends the next session at once in both', async () => {
      const h = await api(a.port, 'POST', '/v1/humans', { name: 'Dr. Chen', email: 'chen@hospital.example', roles: ['reviewer'] });
      const inv = await api(a.port, 'POST', `/v1/humans/${h.body.id}/invitations`);
      const link = new URL(inv.body.url);
      expect(link.origin).toBe(`http://127.0.0.1:${a.port}`);
      const onA = `http://127.0.0.1:${a.port}`;
      const c = httpConsoleClient();
      await c.request(onA, 'GET', link.pathname);
      expect(
        (await c.request(onA, 'POST', link.pathname, { form: { csrf: c.csrf(), password: PASSWORD, password_confirm: PASSWORD } }))
          .location,
      ).toBe('/console/enrol');
      const enrol = await c.request(onA, 'GET', '/console/enrol');
      const secret = /id="totp-secret">([A-Z2-7]+)</.exec(enrol.body)![1]!;
      expect(
        (await c.request(onA, 'POST', '/console/enrol/totp', { form: { csrf: c.csrf(), code: oathtoolCode(secret, now()) } })).status,
      ).toBe(200);
      // The cookie names no host: one session answers on both processes.
      expect(await me(a.port, c)).toBe(200);
      expect(await me(b.port, c)).toBe(200);

      await advance(10 * 60_000);
      expect(await me(b.port, c)).toBe(200);
      await advance(15 * 60_000 + 1000);
      expect(await me(b.port, c)).toBe(401);
      expect(await me(a.port, c)).toBe(401);
      const ended = await store.db
        .selectFrom('human_sessions')
        .selectAll()
        .where('human_id', '=', h.body.id)
        .where('end_reason', '=', 'idle_timeout')
        .execute();
      expect(ended).toHaveLength(1);

      // Sign in again on B (password + a code of a later window), then deactivate on A.
      await advance(30_000);
      const d = httpConsoleClient();
      const onB = `http://127.0.0.1:${b.port}`;
      await d.request(onB, 'GET', '/console/sign-in');
      expect(
        (await d.request(onB, 'POST', '/console/sign-in', { form: { csrf: d.csrf(), email: 'chen@hospital.example', password: PASSWORD } }))
          .location,
      ).toBe('/console/second-factor');
      await d.request(onB, 'GET', '/console/second-factor');
      expect(
        (await d.request(onB, 'POST', '/console/second-factor', { form: { csrf: d.csrf(), code: oathtoolCode(secret, now()) } })).location,
      ).toBe('/console');
      expect(await me(a.port, d)).toBe(200);
      expect(await me(b.port, d)).toBe(200);
      expect((await api(a.port, 'POST', `/v1/humans/${h.body.id}/deactivate`)).status).toBe(200);
      expect(await me(b.port, d)).toBe(401);
      expect(await me(a.port, d)).toBe(401);
      const open = await store.db
        .selectFrom('human_sessions')
        .select('id')
        .where('human_id', '=', h.body.id)
        .where('ended_at', 'is', null)
        .execute();
      expect(open).toEqual([]);
    }, 120_000);
  });
}
