import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixedClock } from '../src/kernel/clock.js';
import { consoleClient, oathtoolCode } from './support/console-client.js';
import { testDialects } from './support/dialects.js';
import { seedMailbox } from './support/outbound-sink.js';
import { createTestApp, type TestApp } from './support/test-app.js';

const PASSWORD = 'correct horse battery staple 42';

for (const dialect of testDialects()) {
  describe(`humans sign in: invitation, TOTP, sessions, step-up (${dialect})`, () => {
    let t: TestApp;
    const clock = fixedClock('2026-03-02T09:00:00.000Z');
    let seed: Awaited<ReturnType<typeof seedMailbox>>;
    let secret = '';
    let recovery: string[] = [];
    let human = { id: '', email: '' };
    let n = 0;

    const events = async (action: string) =>
      (await t.call('GET', `/v1/audit/events?limit=500&action=${action}`, t.adminKey)).body.events as any[];

    /** A reviewer who has used the invitation and enrolled TOTP; returns the signed-in client. */
    const enrolled = async () => {
      const h = await t.call('POST', '/v1/humans', t.adminKey, {
        name: 'Dr. Rivera',
        email: `reviewer${++n}.${dialect}@hospital.example`,
        roles: ['reviewer'],
      });
      human = h.body;
      const inv = await t.call('POST', `/v1/humans/${human.id}/invitations`, t.adminKey);
      expect(inv.status).toBe(201);
      const path = new URL(inv.body.url).pathname;
      const b = consoleClient(t.app);
      expect((await b.request('GET', path)).status).toBe(200);
      const set = await b.request('POST', path, { form: { csrf: b.csrf(), password: PASSWORD, password_confirm: PASSWORD } });
      expect(set.status).toBe(303);
      expect(set.location).toBe('/console/enrol');
      const page = await b.request('GET', '/console/enrol');
      secret = /id="totp-secret">([A-Z2-7]+)</.exec(page.body)![1]!;
      const done = await b.request('POST', '/console/enrol/totp', { form: { csrf: b.csrf(), code: oathtoolCode(secret, clock.now()) } });
      expect(done.status).toBe(200);
      recovery = [...done.body.matchAll(/<li>([0-9a-f-]{24})<\/li>/g)].map((m) => m[1]!);
      expect(recovery).toHaveLength(10);
      return b;
    };

    beforeAll(async () => {
      t = await createTestApp(dialect, { clock });
      seed = await seedMailbox(t, 'gated_send');
    }, 60_000);
    afterAll(async () => {
      await t?.close();
    });

    it('sends a signed-out visitor of /console to the sign-in page', async () => {
      const r = await consoleClient(t.app).request('GET', '/console');
      expect(r.status).toBe(303);
      expect(r.location).toBe('/console/sign-in');
    });

    it('refuses weak passwords and reaches nothing but enrolment before a second factor', async () => {
      const inv = await t.call('POST', `/v1/humans/${seed.reviewer.id}/invitations`, t.adminKey);
      const path = new URL(inv.body.url).pathname;
      const b = consoleClient(t.app);
      await b.request('GET', path);
      for (const weak of ['short', 'password1234', 'aaaaaaaaaaaaaaaa']) {
        const r = await b.request('POST', path, { form: { csrf: b.csrf(), password: weak, password_confirm: weak } });
        expect(r.status).toBe(422);
      }
      const set = await b.request('POST', path, { form: { csrf: b.csrf(), password: PASSWORD, password_confirm: PASSWORD } });
      expect(set.location).toBe('/console/enrol');
      expect((await b.request('GET', '/console')).location).toBe('/console/enrol');
      expect((await b.request('GET', '/v1/me')).status).toBe(401);
      // The link is one-time.
      expect((await consoleClient(t.app).request('GET', path)).status).toBe(404);
    });

    it('enrols TOTP, signs out, signs in with password and code, and lands on the console', async () => {
      const b = await enrolled();
      const home = await b.request('GET', '/console');
      expect(home.status).toBe(200);
      expect(home.body).toContain('Dr. Rivera');
      expect(home.headers['content-security-policy']).toContain("frame-ancestors 'none'");
      expect(home.headers['content-security-policy']).toContain("script-src 'self'");
      const cookie = String(b.jar.get('__Host-mw_session'));
      expect(cookie.length).toBeGreaterThan(30);
      // The session works for the REST API too.
      const me = await b.request('GET', '/v1/me');
      expect(me.json.principal.id).toBe(human.id);

      expect((await b.request('POST', '/console/sign-out', { form: { csrf: b.csrf() } })).status).toBe(200);
      expect((await b.request('GET', '/console')).location).toBe('/console/sign-in');
      // The old cookie value is dead in the store, not just forgotten by this client.
      expect((await t.app.inject({ method: 'GET', url: '/v1/me', headers: { cookie: `__Host-mw_session=${cookie}` } })).statusCode).toBe(
        401,
      );

      clock.advance(31_000);
      const c = consoleClient(t.app);
      await c.request('GET', '/console/sign-in');
      const pw = await c.request('POST', '/console/sign-in', { form: { csrf: c.csrf(), email: human.email, password: PASSWORD } });
      expect(pw.location).toBe('/console/second-factor');
      expect((await c.request('GET', '/v1/me')).status).toBe(401);
      await c.request('GET', '/console/second-factor');
      const code = oathtoolCode(secret, clock.now());
      const ok = await c.request('POST', '/console/second-factor', { form: { csrf: c.csrf(), code } });
      expect(ok.location).toBe('/console');
      expect((await c.request('GET', '/console')).body).toContain('id="signed-in-as">Dr. Rivera<');

      // The same code cannot be used twice in its window.
      const d = consoleClient(t.app);
      await d.request('GET', '/console/sign-in');
      await d.request('POST', '/console/sign-in', { form: { csrf: d.csrf(), email: human.email, password: PASSWORD } });
      await d.request('GET', '/console/second-factor');
      expect((await d.request('POST', '/console/second-factor', { form: { csrf: d.csrf(), code } })).status).toBe(401);
      // A recovery code works once.
      expect((await d.request('POST', '/console/second-factor', { form: { csrf: d.csrf(), code: recovery[0]! } })).location).toBe(
        '/console',
      );

      const signedIn = await events('human.signed_in');
      expect(signedIn.length).toBeGreaterThanOrEqual(2);
      expect(signedIn.at(-1).delegation_chain.map((e: { type: string }) => e.type)).toEqual(['organization', 'human']);
    });

    it('refuses a form without its CSRF token or from another origin', async () => {
      const b = await enrolled();
      await b.request('GET', '/console');
      expect((await b.request('POST', '/console/sign-out', { form: { csrf: 'wrong' } })).status).toBe(403);
      expect(
        (await b.request('POST', '/console/sign-out', { form: { csrf: b.csrf() }, headers: { origin: 'https://evil.example' } })).status,
      ).toBe(403);
      // REST calls with the session need x-csrf-token for anything but reads.
      const token = b.csrf();
      expect((await b.request('DELETE', `/v1/humans/${human.id}/sessions`)).status).toBe(403);
      expect((await b.request('GET', '/v1/sessions')).status).toBe(200);
      expect(
        (await b.request('GET', '/v1/sessions', { headers: { 'x-csrf-token': token } })).json.sessions.some((s: any) => s.current),
      ).toBe(true);
    });

    it('lists sessions, revokes one, and an admin ends them all; deactivation ends them at once', async () => {
      const a = await enrolled();
      clock.advance(31_000);
      const b = consoleClient(t.app);
      await b.request('GET', '/console/sign-in');
      await b.request('POST', '/console/sign-in', { form: { csrf: b.csrf(), email: human.email, password: PASSWORD } });
      await b.request('GET', '/console/second-factor');
      await b.request('POST', '/console/second-factor', { form: { csrf: b.csrf(), code: oathtoolCode(secret, clock.now()) } });
      const list = (await b.request('GET', '/v1/sessions')).json.sessions as any[];
      const other = list.find((s) => !s.current)!;
      await b.request('GET', '/console');
      expect((await b.request('POST', `/console/sessions/${other.id}/revoke`, { form: { csrf: b.csrf() } })).status).toBe(303);
      expect((await a.request('GET', '/v1/me')).status).toBe(401);
      expect((await b.request('GET', '/v1/me')).status).toBe(200);
      const ended = await t.call('DELETE', `/v1/humans/${human.id}/sessions`, t.adminKey);
      expect(ended.status).toBe(200);
      expect((await b.request('GET', '/v1/me')).status).toBe(401);
      expect((await events('session.ended')).length).toBeGreaterThan(0);
    });

    it('ends a session after 15 minutes idle (fake clock)', async () => {
      const b = await enrolled();
      expect((await b.request('GET', '/v1/me')).status).toBe(200);
      clock.advance(14 * 60_000);
      expect((await b.request('GET', '/v1/me')).status).toBe(200);
      clock.advance(15 * 60_000 + 1000);
      expect((await b.request('GET', '/v1/me')).status).toBe(401);
      const idle = (await events('session.ended')).filter((e) => e.details?.reason === 'idle_timeout');
      expect(idle.length).toBeGreaterThan(0);
    });

    it('ends a session 12 hours after sign-in however busy it is, and an invitation after 72 hours', async () => {
      const b = await enrolled();
      const stale = await t.call('POST', `/v1/humans/${human.id}/invitations`, t.adminKey);
      expect((await consoleClient(t.app).request('GET', new URL(stale.body.url).pathname)).status).toBe(200);
      for (let i = 0; i < 12 * 6 - 1; i++) {
        clock.advance(10 * 60_000);
        expect((await b.request('GET', '/v1/me')).status).toBe(200);
      }
      clock.advance(10 * 60_000);
      expect((await b.request('GET', '/v1/me')).status).toBe(401);
      const expired = (await events('session.ended')).filter((e) => e.details?.reason === 'expired');
      expect(expired.length).toBeGreaterThan(0);
      clock.advance(60 * 3600_000);
      expect((await consoleClient(t.app).request('GET', new URL(stale.body.url).pathname)).status).toBe(404);
    });

    it('refuses an approval through a session without a recent second factor, then records the signature after step-up', async () => {
      const b = await enrolled();
      const sent = await t.call('POST', `/v1/mailboxes/${seed.mailbox.id}/send`, seed.agentKey, {
        to: ['patient.stepup@clinic.example'],
        subject: 'Appointment reminder',
        text: 'A reminder of your appointment on Tuesday.',
      });
      expect(sent.body.status).toBe('pending_approval');
      const approvalId = (
        await t.c.store.db.selectFrom('approvals').select('id').where('message_id', '=', sent.body.id).executeTakeFirstOrThrow()
      ).id;
      clock.advance(6 * 60_000);
      await b.request('GET', '/console');
      const refused = await b.request('POST', `/v1/approvals/${approvalId}/approve`, { json: {}, headers: { 'x-csrf-token': b.csrf() } });
      expect(refused.status).toBe(403);
      expect(refused.json.code).toBe('step_up_required');
      expect(refused.json.step_up_url).toBe('/console/step-up');

      await b.request('GET', '/console/step-up');
      const up = await b.request('POST', '/console/step-up', {
        form: { csrf: b.csrf(), code: oathtoolCode(secret, clock.now()), return_to: '/console' },
      });
      expect(up.status).toBe(303);
      await b.request('GET', '/console');
      const ok = await b.request('POST', `/v1/approvals/${approvalId}/approve`, { json: {}, headers: { 'x-csrf-token': b.csrf() } });
      expect(ok.status).toBe(200);
      expect(ok.json.approval.signature).toEqual({
        signer_id: human.id,
        signer_name: 'Dr. Rivera',
        signed_at: clock.now().toISOString(),
        meaning: 'approved for sending',
        auth_method: 'totp',
      });
      const email = await t.call('GET', `/v1/emails/${sent.body.id}`, seed.agentKey);
      expect(email.body.approval.signature.meaning).toBe('approved for sending');
      const listed = await b.request('GET', '/v1/approvals?status=approved');
      expect(listed.json.approvals.find((a: any) => a.id === approvalId).signature.signer_name).toBe('Dr. Rivera');
    });

    it('restricts a human key to reads: approvals are listed but cannot be decided with it; agent keys cannot be read-only', async () => {
      const key = await t.call('POST', `/v1/humans/${seed.reviewer.id}/api-keys`, t.adminKey, { scopes: ['reviewer'], read_only: true });
      expect(key.status).toBe(201);
      expect(key.body.read_only).toBe(true);
      expect((await t.call('GET', '/v1/approvals?status=pending', key.body.key)).status).toBe(200);
      const sent = await t.call('POST', `/v1/mailboxes/${seed.mailbox.id}/send`, seed.agentKey, {
        to: ['patient.readonly@clinic.example'],
        subject: 'Appointment reminder',
        text: 'A reminder of your appointment on Tuesday.',
      });
      const approvalId = (
        await t.c.store.db.selectFrom('approvals').select('id').where('message_id', '=', sent.body.id).executeTakeFirstOrThrow()
      ).id;
      const refused = await t.call('POST', `/v1/approvals/${approvalId}/approve`, key.body.key, {});
      expect(refused.status).toBe(403);
      expect(refused.body.code).toBe('read_only_key');
      const denied = (await t.call('GET', '/v1/audit/events?limit=500&action=auth.denied', t.adminKey)).body.events as any[];
      expect(denied.some((e) => e.details.reason === 'read_only_key' && e.target.id === key.body.id)).toBe(true);
      // A full reviewer key still decides, and its signature says it was an API key.
      const full = await t.call('POST', `/v1/humans/${seed.reviewer.id}/api-keys`, t.adminKey, { scopes: ['reviewer'] });
      const ok = await t.call('POST', `/v1/approvals/${approvalId}/reject`, full.body.key, { comment: 'Wrong clinic.' });
      expect(ok.status).toBe(200);
      expect(ok.body.approval.signature).toMatchObject({ signer_id: seed.reviewer.id, meaning: 'rejected', auth_method: 'api_key' });
      const agentKey = await t.call('POST', `/v1/agents/${seed.agent.id}/api-keys`, t.adminKey, { read_only: true });
      expect(agentKey.status).toBe(422);
    });

    it('slows and then refuses 20 wrong passwords from one address, locks the account, and never tells whether it exists', async () => {
      await enrolled();
      const run = async (email: string, ip: string) => {
        const c = consoleClient(t.app, { ip });
        await c.request('GET', '/console/sign-in');
        const seen: { status: number; error: string }[] = [];
        let wrong = 0;
        for (let i = 0; i < 80 && wrong < 20; i++) {
          const r = await c.request('POST', '/console/sign-in', { form: { csrf: c.csrf(), email, password: `wrong password ${i}!` } });
          seen.push({ status: r.status, error: /id="error">([^<]*)</.exec(r.body)?.[1] ?? '' });
          if (r.status === 401) wrong++;
          else {
            expect(r.status).toBe(429);
            clock.advance(Number(r.headers['retry-after']) * 1000);
          }
        }
        const after = await c.request('POST', '/console/sign-in', { form: { csrf: c.csrf(), email, password: PASSWORD } });
        return { seen, after: after.status, c };
      };
      const real = await run(human.email, '203.0.113.7');
      const ghost = await run('nobody.here@hospital.example', '203.0.113.8');
      expect(real.seen.filter((s) => s.status === 429).length).toBeGreaterThan(0);
      expect(real.after).toBe(429);
      expect(ghost.seen).toEqual(real.seen);
      expect(ghost.after).toBe(real.after);

      // Locked: the right password from elsewhere still fails, with the same answer as a wrong one.
      const elsewhere = consoleClient(t.app, { ip: '198.51.100.1' });
      await elsewhere.request('GET', '/console/sign-in');
      const locked = await elsewhere.request('POST', '/console/sign-in', {
        form: { csrf: elsewhere.csrf(), email: human.email, password: PASSWORD },
      });
      expect(locked.status).toBe(401);
      expect((await events('human.locked')).length).toBe(1);

      const unlocked = await t.call('POST', `/v1/humans/${human.id}/unlock`, t.adminKey);
      expect(unlocked.body.was_locked).toBe(true);
      expect((await events('human.unlocked')).length).toBe(1);
      const again = await elsewhere.request('POST', '/console/sign-in', {
        form: { csrf: elsewhere.csrf(), email: human.email, password: PASSWORD },
      });
      expect(again.location).toBe('/console/second-factor');
      expect((await elsewhere.request('GET', '/v1/me')).status).toBe(401);
      expect((await elsewhere.request('GET', '/console')).location).toBe('/console/second-factor');
    });
  });
}
