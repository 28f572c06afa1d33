import { createHmac } from 'node:crypto';
import fs from 'node:fs';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir, testDialects } from './support/dialects.js';
import { type Inbound, outsideSenders, rawMessage, startInbound } from './support/inbound-mail.js';
import { seedMailbox } from './support/outbound-sink.js';
import { createTestApp, type TestApp } from './support/test-app.js';
import { type Received, type Receiver, startReceiver } from './support/webhook-receiver.js';
import { waitFor } from './support/wait.js';
import { storedOfId } from '../src/audit/audit-columns.js';

/** Standard Webhooks, "Verifying": HMAC-SHA256 over `id.timestamp.body` with the base64 key after `whsec_`; written here, not taken from the package. */
const independentSignatures = (secret: string, r: Received) => {
  const key = Buffer.from(secret.slice('whsec_'.length), 'base64');
  const expected = createHmac('sha256', key)
    .update(`${r.headers['webhook-id']}.${r.headers['webhook-timestamp']}.${r.body}`)
    .digest('base64');
  const given = r.headers['webhook-signature']!.split(' ').map((s) => s.split(',') as [string, string]);
  return { expected, given, matches: given.some(([v, s]) => v === 'v1' && s === expected) };
};

const verifiesWith = (secret: string, r: Received) => {
  try {
    new Webhook(secret).verify(r.body, r.headers);
    return true;
  } catch {
    return false;
  }
};

for (const dialect of testDialects()) {
  describe(`webhooks (${dialect})`, () => {
    let t: TestApp;
    let rx: Receiver;
    let smtp: Inbound;
    let senders: ReturnType<typeof outsideSenders>;

    const create = async (body: Record<string, unknown>) => t.call('POST', '/v1/webhooks', t.adminKey, body);
    const consentEvent = (n: number) =>
      t.call('PUT', `/v1/contacts/${encodeURIComponent(`patient${n}@example.org`)}/consent`, t.adminKey, {
        electronic: true,
        categories: ['appointment'],
        source: 'portal',
      });
    const delivered = (path: string, type?: string) =>
      rx.got.filter((r) => r.path === path && (!type || (JSON.parse(r.body) as { type: string }).type === type));

    beforeAll(async () => {
      rx = await startReceiver(({ path, nth }) => {
        if (path === '/flaky') return { status: nth <= 3 ? 500 : 200 };
        if (path === '/redirect') return { status: 302, headers: { location: 'http://169.254.169.254/latest/meta-data/' } };
        if (path === '/down') return { status: 503 };
        return { status: 200 };
      });
      const dir = tempDir('mw-webhooks');
      senders = outsideSenders(dir, { orgDomain: 'hospital.example' });
      // The same overrides file answers A look-ups: a name that resolves to a private address.
      const overrides = JSON.parse(fs.readFileSync(senders.file, 'utf8'));
      overrides.A = { 'internal.example': ['10.0.0.1'], 'metadata.example': ['169.254.169.254'], 'public.example': ['93.184.215.14'] };
      fs.writeFileSync(senders.file, JSON.stringify(overrides));
      t = await createTestApp(dialect, {
        env: {
          MAILWARD_DNS_OVERRIDES: senders.file,
          MAILWARD_WEBHOOK_ALLOW_HOSTS: `127.0.0.1:${rx.port}`,
          MAILWARD_WEBHOOK_RETRY_SCHEDULE: '1,1,1',
          MAILWARD_WEBHOOK_POLL_MS: '50',
          MAILWARD_WEBHOOK_TIMEOUT_MS: '3000',
        },
      });
      smtp = await startInbound(t);
      t.c.webhooks.worker.start();
    }, 60_000);
    afterAll(async () => {
      await smtp?.close();
      await t?.close();
      await rx?.close();
    });

    it('delivers email.received for a message sent over SMTP, signed so that the standardwebhooks verifier and an independent HMAC check both accept it', async () => {
      const box = await seedMailbox(t, 'autonomous');
      const made = await create({ url: rx.url('/ok'), event_types: ['email.received'], description: 'interface engine' });
      expect(made.status).toBe(201);
      expect(made.body.secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
      expect(made.body).toMatchObject({ url: rx.url('/ok'), event_types: ['email.received'], status: 'active' });

      const raw = await senders.sign(rawMessage({ to: box.mailbox.address, subject: 'Lab results ready', body: 'Potassium 4.1 mmol/L' }));
      const sentAt = Date.now();
      expect((await smtp.sendRaw(raw, { from: 'results@lab.example', to: [box.mailbox.address] })).response).toMatch(/^250 /);
      const acceptedAt = Date.now();
      expect(await waitFor(() => delivered('/ok', 'email.received').length >= 1, { timeoutMs: 10_000 })).toBe(true);
      const r = delivered('/ok', 'email.received')[0]!;
      // The issue asks for 2 s; measured, not asserted (tests never assert on time): see the report.
      console.info(
        `email.received reached the receiver ${r.at - sentAt} ms after the SMTP send began, ${r.at - acceptedAt} ms after its 250`,
      );

      const event = JSON.parse(r.body);
      expect(event).toMatchObject({ type: 'email.received', org_id: t.orgId, mailbox_id: box.mailbox.id, data: { status: 'received' } });
      expect(event.id).toMatch(/^evt_[0-9a-f]{32}$/);
      expect(r.headers['webhook-id']).toBe(event.id);
      expect(Math.abs(Number(r.headers['webhook-timestamp']) - Date.now() / 1000)).toBeLessThan(300);
      // No PHI in the event: neither the body, the subject nor an address.
      for (const s of ['Potassium', 'Lab results', 'lab.example', box.mailbox.address]) expect(r.body).not.toContain(s);

      expect(verifiesWith(made.body.secret, r)).toBe(true);
      const ind = independentSignatures(made.body.secret, r);
      expect(ind.given).toHaveLength(1);
      expect(ind.matches).toBe(true);
      // A changed body fails both checks.
      const tampered = { ...r, body: r.body.replace('received', 'quarantined') };
      expect(verifiesWith(made.body.secret, tampered)).toBe(false);
      expect(independentSignatures(made.body.secret, tampered).matches).toBe(false);

      // The URL and the secret are sealed at rest.
      const row = await t.c.store.db.selectFrom('webhook_endpoints').selectAll().where('id', '=', made.body.id).executeTakeFirstOrThrow();
      expect(Buffer.from(row.url_sealed).toString('latin1')).not.toContain('127.0.0.1');
      const secrets = await t.c.store.db.selectFrom('webhook_secrets').selectAll().where('endpoint_id', '=', made.body.id).execute();
      expect(secrets.map((s) => Buffer.from(s.secret_sealed).toString('latin1')).join()).not.toContain(made.body.secret.slice(6, 20));
      // The list never shows the secret.
      const list = await t.call('GET', '/v1/webhooks', t.adminKey);
      expect(JSON.stringify(list.body)).not.toContain(made.body.secret);
      await t.call('DELETE', `/v1/webhooks/${made.body.id}`, t.adminKey);
    });

    it('retries a receiver that answers 500 three times: it gets the event exactly once more with 200, and the delivery log shows four attempts without bodies', async () => {
      const made = await create({ url: rx.url('/flaky'), event_types: ['consent.changed'] });
      expect(made.status).toBe(201);
      expect((await consentEvent(1)).status).toBe(200);
      const job = () =>
        t.c.store.db.selectFrom('webhook_deliveries').selectAll().where('endpoint_id', '=', made.body.id).executeTakeFirst();
      expect(await waitFor(async () => (await job())?.status === 'done', { timeoutMs: 20_000 })).toBe(true);
      const got = delivered('/flaky');
      expect(got.map((g) => g.status)).toEqual([500, 500, 500, 200]);
      expect(new Set(got.map((g) => g.headers['webhook-id'])).size).toBe(1);
      expect(got.filter((g) => g.status === 200)).toHaveLength(1);

      const log = await t.call('GET', `/v1/webhooks/${made.body.id}/deliveries`, t.adminKey);
      expect(log.status).toBe(200);
      expect(log.body.deliveries).toHaveLength(4);
      expect(log.body.deliveries.map((d: { attempt: number }) => d.attempt)).toEqual([4, 3, 2, 1]);
      expect(log.body.deliveries.map((d: { status_code: number }) => d.status_code)).toEqual([200, 500, 500, 500]);
      expect(log.body.deliveries[1]).toMatchObject({ outcome: 'failed', error: 'http_500', event_id: got[0]!.headers['webhook-id'] });
      expect(log.body.deliveries.every((d: { latency_ms: number }) => Number.isInteger(d.latency_ms) && d.latency_ms >= 0)).toBe(true);
      expect(JSON.stringify(log.body)).not.toContain('receiver says no');
      // The operator's metrics count the attempts by outcome (no ids, no URLs).
      const metrics = (await t.app.inject({ method: 'GET', url: '/metrics' })).body;
      const count = (o: string) =>
        Number(new RegExp(`^mailward_webhook_attempts_total\\{outcome="${o}"\\} (\\d+)`, 'm').exec(metrics)?.[1] ?? -1);
      expect(count('retrying')).toBeGreaterThanOrEqual(3);
      expect(count('delivered')).toBeGreaterThanOrEqual(1);
      // An agent or a reviewer does not manage webhooks.
      const box = await seedMailbox(t, 'autonomous');
      expect((await t.call('GET', `/v1/webhooks/${made.body.id}/deliveries`, box.agentKey)).status).toBe(404);
      await t.call('DELETE', `/v1/webhooks/${made.body.id}`, t.adminKey);
    });

    it('signs with both secrets during a rotation overlap and with only the new one afterwards', async () => {
      const made = await create({ url: rx.url('/rotate'), event_types: ['consent.changed'] });
      const oldSecret = made.body.secret as string;
      const rot = await t.call('POST', `/v1/webhooks/${made.body.id}/rotate-secret`, t.adminKey, { overlap_seconds: 2 });
      expect(rot.status).toBe(200);
      const newSecret = rot.body.secret as string;
      expect(newSecret).not.toBe(oldSecret);

      await consentEvent(2);
      expect(await waitFor(() => delivered('/rotate').length >= 1)).toBe(true);
      const during = delivered('/rotate')[0]!;
      expect(during.headers['webhook-signature']!.split(' ')).toHaveLength(2);
      expect(verifiesWith(newSecret, during)).toBe(true);
      expect(verifiesWith(oldSecret, during)).toBe(true);
      expect(independentSignatures(newSecret, during).matches).toBe(true);
      expect(independentSignatures(oldSecret, during).matches).toBe(true);

      // After the overlap only the new secret signs.
      expect(await waitFor(() => Date.now() > Date.parse(rot.body.previous_expires_at) + 50, { timeoutMs: 5000 })).toBe(true);
      await consentEvent(3);
      expect(await waitFor(() => delivered('/rotate').length >= 2)).toBe(true);
      const after = delivered('/rotate')[1]!;
      expect(after.headers['webhook-signature']!.split(' ')).toHaveLength(1);
      expect(verifiesWith(newSecret, after)).toBe(true);
      expect(verifiesWith(oldSecret, after)).toBe(false);
      expect(independentSignatures(oldSecret, after).matches).toBe(false);

      // A rotation without overlap right after a delivery (whatever this process had cached): only the newest secret signs.
      const now0 = await t.call('POST', `/v1/webhooks/${made.body.id}/rotate-secret`, t.adminKey, { overlap_seconds: 0 });
      await consentEvent(30);
      expect(await waitFor(() => delivered('/rotate').length >= 3)).toBe(true);
      const immediate = delivered('/rotate')[2]!;
      expect(immediate.headers['webhook-signature']!.split(' ')).toHaveLength(1);
      expect(verifiesWith(now0.body.secret, immediate)).toBe(true);
      expect(verifiesWith(newSecret, immediate)).toBe(false);
      await t.call('DELETE', `/v1/webhooks/${made.body.id}`, t.adminKey);
    });

    it('refuses loopback without the allow-list, the metadata address, a name resolving to 10.0.0.1, plain http, and a redirect to any of them', async () => {
      const refused = async (url: string, reason: string) => {
        const r = await create({ url });
        expect(r.status, url).toBe(422);
        expect(r.body).toMatchObject({ code: 'webhook_url_refused', reason });
      };
      await refused('https://127.0.0.1/hook', 'loopback');
      await refused(`https://127.0.0.1:${rx.port + 1}/hook`, 'loopback');
      await refused('https://169.254.169.254/latest/meta-data/', 'link_local');
      await refused('https://metadata.example/', 'link_local');
      await refused('https://internal.example/hook', 'private');
      await refused('https://[::1]/hook', 'loopback');
      await refused('https://[::ffff:10.0.0.1]/hook', 'private');
      await refused('https://100.64.1.1/hook', 'cgnat');
      await refused('http://public.example/hook', 'https_required');
      await refused('https://user:pw@public.example/hook', 'credentials_in_url');
      // A public name passes the check (nothing is sent to it here).
      const ok = await create({ url: 'https://public.example/hook', event_types: ['webhook.disabled'] });
      expect(ok.status).toBe(201);
      // Update is checked the same way.
      const upd = await t.call('PATCH', `/v1/webhooks/${ok.body.id}`, t.adminKey, { url: 'https://internal.example/x' });
      expect(upd.status).toBe(422);
      expect(upd.body.reason).toBe('private');
      await t.call('DELETE', `/v1/webhooks/${ok.body.id}`, t.adminKey);

      // An allow-listed receiver that redirects to the metadata address: not followed, a failed attempt.
      const made = await create({ url: rx.url('/redirect'), event_types: ['consent.changed'] });
      await consentEvent(4);
      const attempts = () => t.call('GET', `/v1/webhooks/${made.body.id}/deliveries`, t.adminKey);
      expect(await waitFor(async () => (await attempts()).body.deliveries.length >= 1)).toBe(true);
      expect((await attempts()).body.deliveries[0]).toMatchObject({ outcome: 'failed', status_code: 302, error: 'redirect_refused (302)' });
      await t.call('DELETE', `/v1/webhooks/${made.body.id}`, t.adminKey);
    });

    it('checks the address again at every attempt: a name that resolved publicly at creation and now answers 127.0.0.1 is refused, and nothing is sent', async () => {
      const rebind = await createTestApp(dialect, {
        env: { MAILWARD_WEBHOOK_RETRY_SCHEDULE: '1', MAILWARD_WEBHOOK_POLL_MS: '50' },
        // A DNS rebinding: the first answer is public, later ones point at this machine.
        hostLookup: async (host) => {
          if (host !== 'rebind.example') throw new Error('ENOTFOUND');
          return [{ address: answers.shift() ?? '127.0.0.1', family: 4 }];
        },
      });
      const answers = ['93.184.215.14'];
      try {
        rebind.c.webhooks.worker.start();
        const made = await rebind.call('POST', '/v1/webhooks', rebind.adminKey, {
          url: `https://rebind.example:${rx.port}/rebound`,
          event_types: ['consent.changed'],
        });
        expect(made.status).toBe(201);
        await rebind.call('PUT', '/v1/contacts/rebind%40example.org/consent', rebind.adminKey, {
          electronic: true,
          categories: ['appointment'],
          source: 'portal',
        });
        const log = () => rebind.call('GET', `/v1/webhooks/${made.body.id}/deliveries`, rebind.adminKey);
        expect(await waitFor(async () => (await log()).body.deliveries.length >= 2, { timeoutMs: 15_000 })).toBe(true);
        for (const a of (await log()).body.deliveries)
          expect(a).toMatchObject({ outcome: 'refused', status_code: null, error: 'url_refused: loopback' });
        expect(delivered('/rebound')).toEqual([]);
      } finally {
        await rebind.close();
      }
    });

    it('disables an endpoint whose deliveries failed for a whole schedule, with webhook.disabled in the event log and the audit log, and replays after it is enabled', async () => {
      // Admins are mailed (from notifications@) when an endpoint is disabled.
      const stopNotices = t.c.startWebhookDisabledNotices();
      const made = await create({ url: rx.url('/down'), event_types: ['consent.changed'] });
      await consentEvent(5);
      const ep = () => t.call('GET', `/v1/webhooks/${made.body.id}`, t.adminKey);
      expect(await waitFor(async () => (await ep()).body.status === 'disabled', { timeoutMs: 20_000 })).toBe(true);
      expect((await ep()).body).toMatchObject({ disabled_reason: 'failing', consecutive_failures: 4 });
      const ev = await t.call('GET', '/v1/events?types=webhook.disabled&order=desc&limit=5', t.adminKey);
      expect(ev.body.events.find((e: { data: { webhook_id: string } }) => e.data.webhook_id === made.body.id)).toBeTruthy();
      await t.c.audit.sync();
      const audit = await t.c.store.db.selectFrom('audit_events').selectAll().where('target_id', '=', storedOfId(made.body.id)).execute();
      expect(audit.map((a) => a.action)).toContain('webhook.disabled');
      const notices = async () => {
        const box = await t.c.store.db
          .selectFrom('mailboxes')
          .select('id')
          .where('address', '=', `notifications@${t.domain}`)
          .executeTakeFirst();
        if (!box) return [];
        return t.c.store.db
          .selectFrom('messages')
          .select('id')
          .where('mailbox_id', '=', box.id)
          .where('direction', '=', 'outbound')
          .execute();
      };
      expect(await waitFor(async () => (await notices()).length > 0, { timeoutMs: 20_000 })).toBe(true);
      const notice = await t.call('GET', `/v1/emails/${(await notices())[0]!.id}`, t.adminKey);
      expect(notice.body.subject).toBe(`Mailward: webhook ${made.body.id} disabled`);
      expect(notice.body.text).toContain(`PATCH /v1/webhooks/${made.body.id}`);
      // Never the endpoint's URL (it may carry a token).
      expect(JSON.stringify(notice.body)).not.toContain(rx.url('/down'));
      stopNotices();

      // Replay: refused while disabled; after enabling, one event by id and every event since a time.
      const firstId = delivered('/down')[0]!.headers['webhook-id']!;
      expect((await t.call('POST', `/v1/webhooks/${made.body.id}/replay`, t.adminKey, { event_id: firstId })).status).toBe(422);
      expect((await t.call('PATCH', `/v1/webhooks/${made.body.id}`, t.adminKey, { url: rx.url('/ok'), status: 'active' })).status).toBe(
        200,
      );
      const one = await t.call('POST', `/v1/webhooks/${made.body.id}/replay`, t.adminKey, { event_id: firstId });
      expect(one.body).toMatchObject({ queued: 1, capped: false, last_event_id: firstId });
      expect(await waitFor(() => delivered('/ok').some((r) => r.headers['webhook-id'] === firstId))).toBe(true);
      const since = await t.call('POST', `/v1/webhooks/${made.body.id}/replay`, t.adminKey, {
        since: new Date(Date.now() - 3600_000).toISOString(),
      });
      expect(since.status).toBe(200);
      // Every consent event of the last hour matches the filter.
      const consents = await t.call('GET', '/v1/events?types=consent.changed&limit=500', t.adminKey);
      expect(consents.body.events.length).toBeGreaterThanOrEqual(2);
      expect(since.body.queued).toBe(consents.body.events.length);
      expect((await t.call('POST', `/v1/webhooks/${made.body.id}/replay`, t.adminKey, {})).status).toBe(400);
      await t.call('DELETE', `/v1/webhooks/${made.body.id}`, t.adminKey);
    });
  });
}
