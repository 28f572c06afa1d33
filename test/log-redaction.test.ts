import type { AddressInfo } from 'node:net';
import net from 'node:net';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/app/config.js';
import { type Container, createContainer } from '../src/app/container.js';
import { buildServer } from '../src/app/http-server.js';
import { createLogger } from '../src/kernel/log.js';
import { waitFor } from './support/wait.js';
import { freshDatabase, testDialects } from './support/dialects.js';

const SEED = 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP';
const VAULT_VALUE = 'Vault-Value-9f3c1e77-never-log';
const QUERY_SECRET = 'query-secret-5d1a0b';
const COOKIE_SECRET = 'cookie-secret-77ab02';

/** Sends raw bytes on a fresh connection and resolves with whatever the server answers before it closes. */
const rawHttp = (port: number, bytes: string) =>
  new Promise<string>((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    let got = '';
    s.on('data', (d) => {
      got += d;
    });
    s.on('error', (e) => ((e as NodeJS.ErrnoException).code === 'ECONNRESET' ? resolve(got) : reject(e)));
    s.on('close', () => resolve(got));
    s.end(bytes);
  });

/** The log as text plus every serialized Buffer (`{"type":"Buffer","data":[...]}`) decoded, so raw bytes cannot hide a key. */
const searchable = (log: string) => {
  const decoded = [...log.matchAll(/"data":\[([0-9,]+)\]/g)].map((m) =>
    Buffer.from((m[1] as string).split(',').map(Number)).toString('latin1'),
  );
  return [log, ...decoded].join('\n');
};

for (const dialect of testDialects()) {
  describe(`logs at MAILWARD_LOG_LEVEL=trace hold no keys or secrets (${dialect})`, () => {
    let c: Container;
    let app: Awaited<ReturnType<typeof buildServer>>;
    let drop: () => Promise<void>;
    let port: number;
    let log = '';
    let adminKey: string;

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
      // The logger `serve` builds (createLogger at config.logLevel), writing into the test instead of stdout.
      c = await createContainer(config, { createMasterKey: true, logger: createLogger({ level: config.logLevel, destination: sink }) });
      const init = await c.init({ orgName: 'General Hospital', domain: 'logs.example' });
      adminKey = init?.admin_api_key as string;
      app = await buildServer(c);
      await app.listen({ host: '127.0.0.1', port: 0 });
      port = (app.server.address() as AddressInfo).port;
    });

    afterAll(async () => {
      app?.server.closeAllConnections();
      await app?.close();
      await c?.close();
      await drop?.();
    });

    it('redacts keys, vault values, TOTP seeds, cookies and query strings from client errors and normal traffic', async () => {
      const api = async (method: string, url: string, key: string, body?: unknown) => {
        const r = await fetch(`http://127.0.0.1:${port}${url}`, {
          method,
          headers: {
            authorization: `Bearer ${key}`,
            cookie: `session=${COOKIE_SECRET}`,
            ...(body ? { 'content-type': 'application/json' } : {}),
          },
          body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
        });
        return { status: r.status, body: (await r.json().catch(() => null)) as any };
      };
      const dep = await api('POST', '/v1/departments', adminKey, { name: 'Billing' });
      const human = await api('POST', '/v1/humans', adminKey, { name: 'Dr. Okafor', email: 'okafor@logs.example', roles: ['reviewer'] });
      const agent = await api('POST', '/v1/agents', adminKey, {
        name: 'Claims Assistant',
        department_id: dep.body.id,
        responsible_human_id: human.body.id,
      });
      const key = await api('POST', `/v1/agents/${agent.body.id}/api-keys`, adminKey, {
        scopes: ['vault:read', 'vault:write', 'vault:reveal', 'vault:totp'],
      });
      expect(key.status).toBe(201);
      const agentKey = key.body.key as string;
      expect((await api('PUT', '/v1/vault/secrets/portal-password', agentKey, { kind: 'password', value: VAULT_VALUE })).status).toBe(200);
      expect(
        (
          await api('PUT', '/v1/vault/secrets/portal-totp', agentKey, {
            kind: 'totp',
            otpauth_uri: `otpauth://totp/Portal:claims?secret=${SEED}&issuer=Portal`,
          })
        ).status,
      ).toBe(200);
      expect((await api('GET', '/v1/vault/secrets/portal-password', agentKey)).body.value).toBe(VAULT_VALUE);
      const code = (await api('POST', '/v1/vault/secrets/portal-totp/totp', agentKey)).body.code as string;
      expect(code).toMatch(/^\d{6}$/);
      // Errors along the way: a query string with a secret, an unknown route, a broken JSON body holding a value, a bad key.
      await api('GET', `/v1/me?api_key=${agentKey}&token=${QUERY_SECRET}`, agentKey);
      await api('GET', `/nowhere?token=${QUERY_SECRET}`, agentKey);
      await api('PUT', '/v1/vault/secrets/broken', agentKey, `{"kind":"password","value":"${VAULT_VALUE}`);
      await api('GET', '/v1/me', `${agentKey}0`);

      // Client errors: headers past Node's limit, and a header line that is not a header; both carry real keys.
      const overflow = await rawHttp(
        port,
        `GET /v1/me?token=${QUERY_SECRET} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${adminKey}\r\nCookie: s=${COOKIE_SECRET}\r\nX-Pad: ${'a'.repeat(20_000)}\r\n\r\n`,
      );
      expect(overflow).toContain('431');
      const malformed = await rawHttp(
        port,
        `GET /v1/me?token=${QUERY_SECRET} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${agentKey}\r\nnot a header\r\n\r\n`,
      );
      expect(malformed).toContain('400');

      // The trace lines for both client errors are written (so the search below searches something).
      await waitFor(() => log.includes('client header_overflow') && log.includes('client error'));
      expect(log).toContain('client header_overflow');
      expect(log).toContain('client error');

      const text = searchable(log);
      const secrets = {
        adminKey,
        adminSecret: adminKey.split('_').at(-1) as string,
        agentKey,
        agentSecret: agentKey.split('_').at(-1) as string,
        vaultValue: VAULT_VALUE,
        seed: SEED,
        querySecret: QUERY_SECRET,
        cookieSecret: COOKIE_SECRET,
        reviewerAddress: 'okafor@logs.example',
      };
      const found = Object.entries(secrets)
        .filter(([, v]) => text.includes(v))
        .map(([k]) => k);
      expect(found).toEqual([]);
      expect(text).not.toContain('rawPacket');
      expect(text).not.toMatch(/"code":"\d{6}"/);
    });
  });
}
