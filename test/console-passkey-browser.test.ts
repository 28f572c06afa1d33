import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closeConsoleApp, openConsoleApp } from './support/console-browser.js';
import { testDialects } from './support/dialects.js';
import type { TestApp } from './support/test-app.js';

const PASSWORD = 'violet harbour pine kettle';

for (const dialect of testDialects()) {
  describe(`passkeys in Chromium's virtual authenticator (${dialect})`, () => {
    let t: TestApp;
    let browser: Browser;
    let origin = '';

    beforeAll(async () => {
      ({ t, origin, browser } = await openConsoleApp(dialect));
    }, 60_000);
    afterAll(() => closeConsoleApp({ t, browser }));

    it('enrols a passkey at the invitation, then signs in with it alone and steps up with it', async () => {
      const host = new URL(origin).host;
      const human = await t.call('POST', '/v1/humans', t.adminKey, {
        name: 'Nurse Lee',
        email: 'lee@hospital.example',
        roles: ['reviewer'],
      });
      const inv = await t.call('POST', `/v1/humans/${human.body.id}/invitations`, t.adminKey, undefined, { host });

      const context = await browser.newContext();
      const page = await context.newPage();
      const cdp = await context.newCDPSession(page);
      await cdp.send('WebAuthn.enable');
      const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
        options: { protocol: 'ctap2', transport: 'internal', hasResidentKey: true, hasUserVerification: true, isUserVerified: true },
      });

      await page.goto(inv.body.url);
      await page.fill('#password', PASSWORD);
      await page.fill('#password_confirm', PASSWORD);
      await page.click('#set-password');
      await page.waitForURL(`${origin}/console/enrol`);
      await page.click('#add-passkey');
      await expect.poll(() => page.locator('#recovery-codes li').count()).toBe(10);
      const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
      expect(credentials).toHaveLength(1);
      expect(credentials[0]!.isResidentCredential).toBe(true);
      await page.click('#continue');
      await page.waitForURL(`${origin}/console`);

      await page.click('#sign-out');
      await page.waitForSelector('text=You are signed out.');
      await page.goto(`${origin}/console/sign-in`);
      await page.click('#passkey-sign-in');
      await page.waitForURL(`${origin}/console`);
      expect(await page.textContent('#signed-in-as')).toBe('Nurse Lee');

      await page.goto(`${origin}/console/step-up`);
      await page.click('#passkey-step-up');
      await page.waitForURL(`${origin}/console`);

      const events = (await t.call('GET', `/v1/audit/events?limit=500&actor_id=${human.body.id}`, t.adminKey)).body.events as any[];
      const actions = events.map(
        (e) => `${e.action}${e.details?.method ? `:${e.details.method}` : ''}${e.details?.factor ? `:${e.details.factor}` : ''}`,
      );
      expect(actions).toEqual(
        expect.arrayContaining(['human.factor_enrolled:webauthn', 'human.signed_in:webauthn', 'human.step_up:webauthn', 'session.ended']),
      );
      const { credentials: after } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
      const stored = await t.c.store.db.selectFrom('webauthn_credentials').selectAll().where('human_id', '=', human.body.id).execute();
      expect(stored).toHaveLength(1);
      expect(stored[0]!.counter).toBe(after[0]!.signCount);
      await context.close();
    }, 60_000);
  });
}
