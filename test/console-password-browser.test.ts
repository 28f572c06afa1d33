import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixedClock } from '../src/kernel/clock.js';
import { oathtoolCode } from './support/console-client.js';
import { closeConsoleApp, openConsoleApp } from './support/console-browser.js';
import { testDialects } from './support/dialects.js';
import { seedMailbox } from './support/outbound-sink.js';
import type { TestApp } from './support/test-app.js';

const PASSWORD = 'lantern orchard copper meadow';

for (const dialect of testDialects()) {
  describe(`a reviewer's first sign-in with password and TOTP, in Chromium (${dialect})`, () => {
    let t: TestApp;
    let browser: Browser;
    let origin = '';
    const clock = fixedClock('2026-03-02T10:00:00.000Z');

    beforeAll(async () => {
      ({ t, origin, browser } = await openConsoleApp(dialect, { clock }));
    }, 60_000);
    afterAll(() => closeConsoleApp({ t, browser }));

    it('opens the invitation, sets a password, enrols TOTP, signs out, signs in with password and code, lands on the console, and signs an approval after a step-up', async () => {
      const host = new URL(origin).host;
      const human = await t.call('POST', '/v1/humans', t.adminKey, {
        name: 'Dr. Amara Okafor',
        email: 'okafor@hospital.example',
        roles: ['reviewer'],
      });
      const inv = await t.call('POST', `/v1/humans/${human.body.id}/invitations`, t.adminKey, undefined, { host });
      expect(inv.status).toBe(201);
      expect(inv.body.url.startsWith(`${origin}/console/invite/`)).toBe(true);

      const context = await browser.newContext();
      const page = await context.newPage();
      // Every console error but the one expected 403 (the refused decision below): a CSP violation or a missing asset shows here.
      const cspErrors: string[] = [];
      page.on('console', (m) => {
        if (m.type() === 'error' && !m.text().includes('status of 403')) cspErrors.push(m.text());
      });
      page.on('pageerror', (e) => cspErrors.push(e.message));
      await page.goto(inv.body.url);
      await page.fill('#password', PASSWORD);
      await page.fill('#password_confirm', PASSWORD);
      await page.click('#set-password');
      await page.waitForURL(`${origin}/console/enrol`);
      const secret = (await page.textContent('#totp-secret'))!.trim();
      expect(secret).toMatch(/^[A-Z2-7]{32}$/);
      await page.fill('#code', oathtoolCode(secret, clock.now()));
      await page.click('#confirm-totp');
      await expect.poll(() => page.locator('#recovery-codes li').count()).toBe(10);
      await page.click('#continue');
      await page.waitForURL(`${origin}/console`);
      expect(await page.textContent('#signed-in-as')).toBe('Dr. Amara Okafor');

      // The session cookie as the browser holds it: __Host-, Secure, HttpOnly, SameSite=Strict, even over http://localhost.
      const cookie = (await context.cookies()).find((c) => c.name === '__Host-mw_session');
      expect(cookie).toMatchObject({ secure: true, httpOnly: true, sameSite: 'Strict', path: '/' });
      expect(await page.evaluate('document.cookie')).not.toContain('mw_session');

      await page.click('#sign-out');
      await page.waitForSelector('text=You are signed out.');
      expect((await context.cookies()).find((c) => c.name === '__Host-mw_session')).toBeUndefined();
      await page.goto(`${origin}/console`);
      await page.waitForURL(`${origin}/console/sign-in`);

      clock.advance(30_000);
      await page.fill('#email', 'okafor@hospital.example');
      await page.fill('#password', PASSWORD);
      await page.click('#sign-in');
      await page.waitForURL(`${origin}/console/second-factor`);
      await page.fill('#code', oathtoolCode(secret, clock.now()));
      await page.click('#verify');
      await page.waitForURL(`${origin}/console`);
      expect(await page.textContent('#signed-in-as')).toBe('Dr. Amara Okafor');
      expect(await page.locator('#sessions tr[data-session]').count()).toBeGreaterThanOrEqual(1);

      // Deciding a held message from the signed-in page, 6 minutes after the last code: refused with the step-up prompt.
      const seed = await seedMailbox(t, 'gated_send');
      const sent = await t.call('POST', `/v1/mailboxes/${seed.mailbox.id}/send`, seed.agentKey, {
        to: ['patient.browser@clinic.example'],
        subject: 'Appointment reminder',
        text: 'A reminder of your appointment on Tuesday.',
      });
      const approvalId = (
        await t.c.store.db.selectFrom('approvals').select('id').where('message_id', '=', sent.body.id).executeTakeFirstOrThrow()
      ).id;
      // Runs in the page (the tests compile without DOM types, so as a string): the console's own CSRF token and cookie.
      const approve = (id: string): Promise<{ status: number; body: any }> =>
        page.evaluate(`(async () => {
          const csrf = document.querySelector('meta[name="csrf-token"]').getAttribute('content');
          const r = await fetch('/v1/approvals/${id}/approve', { method: 'POST', headers: { 'content-type': 'application/json', 'x-csrf-token': csrf }, body: '{}' });
          return { status: r.status, body: await r.json() };
        })()`);
      clock.advance(6 * 60_000);
      const refused = await approve(approvalId);
      expect(refused.status).toBe(403);
      expect(refused.body.code).toBe('step_up_required');
      await page.goto(`${origin}${refused.body.step_up_url}`);
      await page.fill('#code', oathtoolCode(secret, clock.now()));
      await page.click('#step-up');
      await page.waitForURL(`${origin}/console`);
      const signed = await approve(approvalId);
      expect(signed.status).toBe(200);
      expect(signed.body.approval.signature).toEqual({
        signer_id: human.body.id,
        signer_name: 'Dr. Amara Okafor',
        signed_at: clock.now().toISOString(),
        meaning: 'approved for sending',
        auth_method: 'totp',
      });
      expect(cspErrors).toEqual([]);
      await context.close();
    }, 60_000);
  });
}
