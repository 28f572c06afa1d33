import type { AddressInfo } from 'node:net';
import net from 'node:net';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/app/config.js';
import { type Container, createContainer } from '../src/app/container.js';
import { buildServer } from '../src/app/http-server.js';
import { createLogger } from '../src/kernel/log.js';
import { waitFor } from './support/wait.js';
import { freshDatabase, tempDir, testDialects } from './support/dialects.js';
import { type Inbound, outsideSenders, rawMessage, smtpCode, startInbound } from './support/inbound-mail.js';
import { freePort } from './support/processes.js';

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

for (const dialect of testDialects()) {
  describe(`operator log lines: one per request, delivery attempt and inbound session, without PHI (${dialect})`, () => {
    const PATIENT = 'jane.patient@clinic.example';
    const SUBJECT = 'Biopsy results for Jane';
    let log = '';
    const lines = () =>
      log
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, any>);

    it('logs each request at info by route pattern and principal, each attempt like Postfix with the network error, each SMTP session', async () => {
      const dir = tempDir('mw-logs');
      const deadPort = await freePort();
      const sink = new Writable({
        write(chunk, _enc, done) {
          log += chunk;
          done();
        },
      });
      const senders = outsideSenders(dir);
      const db = await freshDatabase(dialect);
      const config = loadConfig({
        ...db.env,
        MAILWARD_LOG_LEVEL: 'info',
        // Nothing listens there: every attempt is refused at TCP, the deferral must say so.
        MAILWARD_SMTP_RELAY: `smtp://127.0.0.1:${deadPort}`,
        MAILWARD_DELIVERY_RETRY_SCHEDULE: '3600',
        MAILWARD_DNS_OVERRIDES: senders.file,
      });
      const c = await createContainer(config, { createMasterKey: true, logger: createLogger({ level: 'info', destination: sink }) });
      const app = await buildServer(c);
      await app.ready();
      const t = {
        c,
        app,
        domain: 'logs.example',
        call: async (method: string, url: string, key: string | null, body?: unknown) => {
          const r = await app.inject({
            method: method as 'GET',
            url,
            headers: { ...(key ? { authorization: `Bearer ${key}` } : {}), ...(body ? { 'content-type': 'application/json' } : {}) },
            ...(body ? { payload: JSON.stringify(body) } : {}),
          });
          return { status: r.statusCode, body: r.json() as any };
        },
      };
      const init = await c.init({ orgName: 'General Hospital', domain: t.domain });
      const admin = init?.admin_api_key as string;
      let smtp: Inbound | undefined;
      try {
        const dep = await t.call('POST', '/v1/departments', admin, { name: 'Oncology' });
        const human = await t.call('POST', '/v1/humans', admin, { name: 'Dr. Lee', email: 'lee@logs.example', roles: ['reviewer'] });
        const agent = await t.call('POST', '/v1/agents', admin, {
          name: 'Results Assistant',
          department_id: dep.body.id,
          responsible_human_id: human.body.id,
        });
        const key = await t.call('POST', `/v1/agents/${agent.body.id}/api-keys`, admin, {});
        const mbx = await t.call('POST', '/v1/mailboxes', admin, {
          agent_id: agent.body.id,
          display_name: 'Results',
          oversight_mode: 'autonomous',
        });
        expect(
          (await t.call('PUT', `/v1/contacts/${PATIENT}/consent`, admin, { electronic: true, categories: [], source: 'paper_form' }))
            .status,
        ).toBe(200);
        const sent = await t.call('POST', `/v1/mailboxes/${mbx.body.id}/send`, key.body.key, {
          to: [PATIENT],
          subject: SUBJECT,
          text: 'Call us.',
        });
        expect(sent.status).toBe(202);
        await c.mail.delivery.runOnce();

        // The deferral says what happened, in the message events and in the delivery log line.
        const email = await t.call('GET', `/v1/emails/${sent.body.id}`, key.body.key);
        expect(email.body.status).toBe('deferred');
        const attempt = email.body.events.find((e: { type: string }) => e.type === 'delivery_attempted');
        expect(attempt.details.error.code).toBe('ECONNREFUSED');
        expect(attempt.details.error.message).toContain(`ECONNREFUSED 127.0.0.1:${deadPort}`);
        expect(attempt.details.host).toBe(`127.0.0.1:${deadPort}`);
        const delivery = lines().find((l) => l.msg === 'delivery deferred');
        expect(delivery?.level).toBe(30);
        expect(delivery?.delivery).toMatchObject({
          message: sent.body.id,
          relay: `127.0.0.1:${deadPort}`,
          status: 'deferred',
          code: null,
          retry_in_seconds: 3600,
        });
        expect(delivery?.delivery.error).toContain(`ECONNREFUSED 127.0.0.1:${deadPort}`);
        expect(typeof delivery?.delivery.delay_seconds).toBe('number');

        // The request lines: route patterns, status, duration, request id, principal; the consent route's address never.
        const consent = lines().find((l) => l.msg === 'request' && l.route === '/v1/contacts/:email/consent');
        expect(consent).toMatchObject({ level: 30, method: 'PUT', status: 200, principal: { type: 'human', id: init?.admin_human_id } });
        expect(typeof consent?.duration_ms).toBe('number');
        expect(String(consent?.reqId)).toMatch(/^req_/);
        const send = lines().find((l) => l.msg === 'request' && l.route === '/v1/mailboxes/:id/send');
        expect(send?.principal).toEqual({ type: 'agent', id: agent.body.id });

        // An inbound session: one stored message and one refused recipient, then the session line.
        smtp = await startInbound({ c } as never, (x) => x, { logger: c.logger, withMetrics: true });
        const raw = await senders.sign(rawMessage({ to: mbx.body.address, subject: SUBJECT }));
        await smtp.sendRaw(raw, { from: 'results@lab.example', to: [mbx.body.address] });
        await smtpCode(smtp.sendRaw(rawMessage({ to: `nobody@${t.domain}` }), { from: 'results@lab.example', to: [`nobody@${t.domain}`] }));
        await waitFor(() => lines().filter((l) => l.msg === 'inbound session closed').length >= 2);
        const sessions = lines().filter((l) => l.msg === 'inbound session closed');
        expect(sessions.map((s) => s.smtp.verdict).sort()).toEqual(['550', 'accepted']);
        expect(sessions.find((s) => s.smtp.verdict === 'accepted')?.smtp).toMatchObject({
          tls: true,
          tls_version: expect.stringMatching(/^TLSv1\.[23]$/),
          cipher: expect.any(String),
          stored: 1,
          refused: 0,
        });

        // Nothing that names the patient, the reviewer, a mailbox address or the subject.
        const text = log;
        for (const phi of [PATIENT, SUBJECT, 'lee@logs.example', mbx.body.address, `nobody@${t.domain}`, 'results@lab.example', 'Call us.'])
          expect(text).not.toContain(phi);
      } finally {
        await smtp?.close();
        await app.close();
        await c.close();
        await db.drop();
      }
    });
  });
}
