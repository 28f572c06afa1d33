import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium, listenLocal } from './support/browser.js';
import { consoleClient } from './support/console-client.js';
import { testDialects } from './support/dialects.js';
import { startOidcProvider, type TestProvider } from './support/oidc-provider.js';
import { createTestApp, type TestApp } from './support/test-app.js';

const SECRET = 'mailward-client-secret-0123456789abcdef';
const OTHER_SECRET = 'other-client-secret-0123456789abcdef';

for (const dialect of testDialects()) {
  describe(`single sign-on against a real OpenID provider (${dialect})`, () => {
    let t: TestApp;
    let browser: Browser;
    let op: TestProvider;
    let origin = '';
    let callback = '';
    let reviewerId = '';
    // other-app's own redirect URI: a listener that keeps the last code it was sent.
    let otherCode = '';
    let otherUri = '';
    const otherApp = http.createServer((req, res) => {
      otherCode = new URL(req.url ?? '/', 'http://x').searchParams.get('code') ?? otherCode;
      res.end('other app');
    });

    // Read from the store: a refusal before the state names an organisation belongs to none, so no tenant's audit API lists it.
    const failures = async () =>
      (
        await t.c.audit
          .sync()
          .then(() =>
            t.c.store.db.selectFrom('audit_events').selectAll().where('action', '=', 'human.sign_in_failed').orderBy('seq').execute(),
          )
      )
        .map((e) => JSON.parse(e.details) as { method?: string; reason?: string })
        .filter((d) => d.method === 'sso')
        .map((d) => String(d.reason));

    /** Through the provider's login and consent pages, as a person would. */
    const providerLogin = async (page: Page, login: string) => {
      await page.waitForSelector('input[name=login]');
      await page.fill('input[name=login]', login);
      await page.fill('input[name=password]', 'any password');
      await page.click('button[type=submit]');
      await consentIfAsked(page);
    };
    const consentIfAsked = async (page: Page) => {
      const consent = page.locator('button:has-text("Continue")');
      if (await consent.isVisible({ timeout: 3000 }).catch(() => false)) await consent.click();
    };
    /** A later visit within the provider's session: login if asked, consent if asked. */
    const passProvider = async (page: Page, login: string) => {
      if (
        await page
          .locator('input[name=login]')
          .isVisible()
          .catch(() => false)
      )
        await providerLogin(page, login);
      else await consentIfAsked(page);
    };

    const failedPage = async (page: Page) => {
      const ok = await page
        .waitForSelector('text=Single sign-on failed', { timeout: 15_000 })
        .then(() => true)
        .catch(() => false);
      if (!ok) throw new Error(`no refusal page at ${page.url()}: ${(await page.content()).slice(0, 1500)}`);
    };

    beforeAll(async () => {
      t = await createTestApp(dialect);
      ({ origin } = await listenLocal(t));
      callback = `${origin}/console/sso/callback`;
      await new Promise<void>((r) => otherApp.listen(0, '127.0.0.1', r));
      otherUri = `http://127.0.0.1:${(otherApp.address() as AddressInfo).port}/other`;
      op = await startOidcProvider({
        clients: [
          { client_id: 'mailward', client_secret: SECRET, redirect_uris: [callback] },
          { client_id: 'other-app', client_secret: OTHER_SECRET, redirect_uris: [callback, otherUri] },
        ],
        accounts: {
          okafor: { email: 'okafor@hospital.example', email_verified: true, name: 'Dr. Okafor', groups: ['mailward-reviewers'] },
          stranger: { email: 'stranger@elsewhere.example', email_verified: true },
          unverified: { email: 'lee@hospital.example', email_verified: false },
        },
      });
      const h = await t.call('POST', '/v1/humans', t.adminKey, {
        name: 'Dr. Okafor',
        email: 'okafor@hospital.example',
        roles: ['reviewer', 'auditor'],
      });
      reviewerId = h.body.id;
      await t.call('POST', '/v1/humans', t.adminKey, { name: 'Nurse Lee', email: 'lee@hospital.example', roles: ['reviewer'] });
      const cfg = await t.call('PUT', '/v1/sso', t.adminKey, {
        issuer: op.issuer,
        client_id: 'mailward',
        client_secret: SECRET,
        role_claim: 'groups',
        role_map: { 'mailward-reviewers': 'reviewer' },
      });
      expect(cfg.status).toBe(200);
      expect(JSON.stringify(cfg.body)).not.toContain(SECRET);
      browser = await launchChromium();
    }, 60_000);
    afterAll(async () => {
      await browser?.close();
      await op?.close();
      otherApp.closeAllConnections();
      otherApp.close();
      t?.app.server.closeAllConnections();
      await t?.close();
    });

    it('signs the reviewer in through the provider login page; the code cannot be replayed', async () => {
      const context = await browser.newContext();
      const page = await context.newPage();
      const callbacks: string[] = [];
      page.on('request', (r) => {
        if (r.url().startsWith(callback)) callbacks.push(r.url());
      });
      await page.goto(`${origin}/console/sign-in`);
      await page.click('a.sso');
      expect(page.url().startsWith(op.issuer)).toBe(true);
      await providerLogin(page, 'okafor');
      await page.waitForURL(`${origin}/console`);
      expect(await page.textContent('#signed-in-as')).toBe('Dr. Okafor');
      // Roles stay granted in Mailward; the claim only narrows them (auditor is not mapped).
      expect(await page.textContent('#whoami')).toContain('roles: reviewer.');
      // Step-up through the provider: it asks for the login again (max_age=0, prompt=login); the session gets a new id.
      const before = (await context.cookies()).find((c) => c.name === '__Host-mw_session')!.value;
      await page.goto(`${origin}/console/step-up`);
      await page.click('#sso-step-up');
      await providerLogin(page, 'okafor');
      await page.waitForURL(`${origin}/console`);
      const after = (await context.cookies()).find((c) => c.name === '__Host-mw_session')!.value;
      expect(after).not.toBe(before);
      const stepUps = (await t.call('GET', `/v1/audit/events?limit=50&action=human.step_up&actor_id=${reviewerId}`, t.adminKey)).body
        .events as any[];
      expect(stepUps.map((e) => e.details.method)).toEqual(['sso']);
      const url = new URL(callbacks[0]!);
      expect(url.searchParams.get('code')).toBeTruthy();
      expect(url.searchParams.get('iss')).toBe(op.issuer);
      const creds = await t.c.store.db
        .selectFrom('human_credentials')
        .selectAll()
        .where('human_id', '=', reviewerId)
        .executeTakeFirstOrThrow();
      expect(creds.sso_subject).toBe('okafor');

      // The same callback again: the state was consumed.
      const replay = await consoleClient(t.app).request('GET', `${url.pathname}${url.search}`, { headers: { host: new URL(origin).host } });
      expect(replay.status).toBe(401);
      // The same code with a fresh, valid state: the provider refuses a code it already redeemed.
      const fresh = new URL(await t.c.accounts.sso.start(t.orgId, callback));
      const again = new URL(url);
      again.searchParams.set('state', fresh.searchParams.get('state')!);
      const replayed = await consoleClient(t.app).request('GET', `${again.pathname}${again.search}`, {
        headers: { host: new URL(origin).host },
      });
      expect(replayed.status).toBe(401);
      expect(replayed.body).toContain('Sign-in failed');
      const reasons = await failures();
      expect(reasons).toContain('bad_state');
      expect(reasons.some((r) => r.startsWith('token_refused'))).toBe(true);
      await context.close();
    }, 60_000);

    it('refuses a wrong state', async () => {
      const before = (await failures()).filter((r) => r === 'bad_state').length;
      const c = consoleClient(t.app);
      const r = await c.request('GET', `/console/sso/callback?code=abc&state=not-a-state-we-issued&iss=${encodeURIComponent(op.issuer)}`, {
        headers: { host: new URL(origin).host },
      });
      expect(r.status).toBe(401);
      expect(c.jar.has('__Host-mw_session')).toBe(false);
      expect((await failures()).filter((x) => x === 'bad_state').length).toBe(before + 1);
    });

    it('refuses a code issued to another client, and a real ID token whose audience is another client', async () => {
      const context = await browser.newContext();
      const page = await context.newPage();
      // 1. A code for other-app delivered to Mailward's callback with a state Mailward issued.
      const ours = new URL(await t.c.accounts.sso.start(t.orgId, callback));
      ours.searchParams.set('client_id', 'other-app');
      await page.goto(ours.href);
      await providerLogin(page, 'okafor');
      await failedPage(page);
      // The provider will not redeem another client's code for Mailward.
      expect((await failures()).at(-1)).toBe('token_refused:invalid_grant');

      // 2. other-app's genuine ID token (signed by the provider, aud other-app), handed to Mailward in place of its own.
      const otherToken = await (async () => {
        const a = new URL(await t.c.accounts.sso.start(t.orgId, callback));
        const verifierRow = await t.c.store.db
          .selectFrom('auth_challenges')
          .selectAll()
          .where('kind', '=', 'oidc')
          .orderBy('expires_at', 'desc')
          .executeTakeFirstOrThrow();
        const { verifier } = JSON.parse(verifierRow.payload) as { verifier: string };
        a.searchParams.set('client_id', 'other-app');
        a.searchParams.set('redirect_uri', otherUri);
        otherCode = '';
        await page.goto(a.href);
        await passProvider(page, 'okafor');
        await expect.poll(() => otherCode, { timeout: 10_000 }).not.toBe('');
        const code = otherCode;
        const res = await fetch(`${op.issuer}/token`, {
          method: 'POST',
          headers: {
            'content-type': 'application/x-www-form-urlencoded',
            authorization: `Basic ${Buffer.from(`other-app:${OTHER_SECRET}`).toString('base64')}`,
          },
          body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: otherUri, code_verifier: verifier }),
        });
        const body = (await res.json()) as { id_token?: string };
        expect(body.id_token).toBeTruthy();
        const aud = JSON.parse(Buffer.from(body.id_token!.split('.')[1]!, 'base64url').toString()).aud;
        expect(aud).toBe('other-app');
        return body.id_token!;
      })();
      op.swapNextIdToken(otherToken);
      await page.goto(`${origin}/console/sign-in`);
      await page.click('a.sso');
      await passProvider(page, 'okafor');
      await failedPage(page);
      expect((await context.cookies()).find((c) => c.name === '__Host-mw_session')).toBeUndefined();
      // openid-client compared the ID token's `aud` with our client id and refused it.
      expect((await failures()).at(-1)).toBe('token_refused:OAUTH_JWT_CLAIM_COMPARISON_FAILED');
      await context.close();
    }, 60_000);

    it('refuses a person Mailward does not know, and an email the provider has not verified', async () => {
      for (const login of ['stranger', 'unverified']) {
        const context = await browser.newContext();
        const page = await context.newPage();
        await page.goto(`${origin}/console/sign-in`);
        await page.click('a.sso');
        await providerLogin(page, login);
        await failedPage(page);
        await context.close();
      }
      expect((await failures()).slice(-2)).toEqual(['unknown_person', 'unknown_person']);
    }, 60_000);
  });
}
