import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/app/config.js';
import { type Container, createContainer } from '../src/app/container.js';
import { buildServer } from '../src/app/http-server.js';
import { createLogger } from '../src/kernel/log.js';
import { consoleClient, oathtoolCode } from './support/console-client.js';
import { freshDatabase, testDialects } from './support/dialects.js';

const PASSWORD = 'Password-never-logged-7c1e';

for (const dialect of testDialects()) {
  describe(`sign-in leaves no password, code, seed, link or session id in the logs at trace level (${dialect})`, () => {
    let c: Container;
    let app: Awaited<ReturnType<typeof buildServer>>;
    let drop: () => Promise<void>;
    let log = '';
    let adminKey = '';

    beforeAll(async () => {
      const db = await freshDatabase(dialect);
      drop = db.drop;
      const config = loadConfig({ ...db.env, MAILWARD_LOG_LEVEL: 'trace' });
      const sink = new Writable({
        write(chunk, _enc, done) {
          log += chunk;
          done();
        },
      });
      c = await createContainer(config, { createMasterKey: true, logger: createLogger({ level: config.logLevel, destination: sink }) });
      adminKey = (await c.init({ orgName: 'General Hospital', domain: 'logs.example' }))?.admin_api_key as string;
      app = await buildServer(c);
      await app.ready();
    }, 60_000);
    afterAll(async () => {
      await app?.close();
      await c?.close();
      await drop?.();
    });

    it('signs a reviewer up, fails and succeeds at signing in, and logs none of the secrets involved', async () => {
      const call = async (method: string, url: string, body?: unknown) =>
        (
          await app.inject({
            method: method as 'POST',
            url,
            headers: { authorization: `Bearer ${adminKey}`, ...(body ? { 'content-type': 'application/json' } : {}) },
            payload: body ? JSON.stringify(body) : undefined,
          })
        ).json();
      const h = await call('POST', '/v1/humans', { name: 'Dr. Log', email: 'log@logs.example', roles: ['reviewer'] });
      const inv = await call('POST', `/v1/humans/${h.id}/invitations`);
      const path = new URL(inv.url).pathname;
      const b = consoleClient(app);
      await b.request('GET', path);
      await b.request('POST', path, { form: { csrf: b.csrf(), password: PASSWORD, password_confirm: PASSWORD } });
      const secret = /id="totp-secret">([A-Z2-7]+)</.exec((await b.request('GET', '/console/enrol')).body)![1]!;
      const code = oathtoolCode(secret, new Date());
      const done = await b.request('POST', '/console/enrol/totp', { form: { csrf: b.csrf(), code } });
      const recovery = [...done.body.matchAll(/<li>([0-9a-f-]{24})<\/li>/g)].map((m) => m[1]!);
      const session = b.jar.get('__Host-mw_session')!;
      await b.request('GET', '/v1/me');
      const d = consoleClient(app);
      await d.request('GET', '/console/sign-in');
      await d.request('POST', '/console/sign-in', { form: { csrf: d.csrf(), email: 'log@logs.example', password: `${PASSWORD}-wrong` } });
      await d.request('POST', '/console/sign-in', { form: { csrf: d.csrf(), email: 'log@logs.example', password: PASSWORD } });
      await d.request('GET', '/console/second-factor');
      await d.request('POST', '/console/second-factor', { form: { csrf: d.csrf(), code: recovery[0]! } });
      expect(d.jar.has('__Host-mw_session')).toBe(true);

      expect(log.length).toBeGreaterThan(0);
      for (const s of [PASSWORD, secret, session, path.split('/').at(-1)!, ...recovery]) expect(log).not.toContain(s);
      // Six digits can occur by chance in timestamps: the code is looked for as a JSON string.
      expect(log).not.toContain(`"${code}"`);
    });
  });
}
