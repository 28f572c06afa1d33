import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixedClock } from '../src/kernel/clock.js';
import { consoleClient, oathtoolCode } from './support/console-client.js';
import { tempDir, testDialects } from './support/dialects.js';
import { seedMessages } from './support/inbound-seed.js';
import { drainDeliveries, relayEnv, type Sink, seedMailbox, startSink } from './support/outbound-sink.js';
import { createTestApp, type TestApp } from './support/test-app.js';

const PASSWORD = 'correct horse battery staple 42';

for (const dialect of testDialects()) {
  describe(`the reviewer console's queue, isolation and notifications (${dialect})`, () => {
    let t: TestApp;
    let sink: Sink;
    const clock = fixedClock(new Date().toISOString());
    let n = 0;

    /** A human of `adminKey`'s organisation, signed in over inject with password and TOTP. */
    const signedIn = async (roles: string[], adminKey = t.adminKey) => {
      const h = await t.call('POST', '/v1/humans', adminKey, { name: `Person ${++n}`, email: `p${n}.${dialect}@x${n}.example`, roles });
      expect(h.status).toBe(201);
      const inv = await t.call('POST', `/v1/humans/${h.body.id}/invitations`, adminKey);
      const path = new URL(inv.body.url).pathname;
      const b = consoleClient(t.app);
      await b.request('GET', path);
      await b.request('POST', path, { form: { csrf: b.csrf(), password: PASSWORD, password_confirm: PASSWORD } });
      const page = await b.request('GET', '/console/enrol');
      const secret = /id="totp-secret">([A-Z2-7]+)</.exec(page.body)![1]!;
      const done = await b.request('POST', '/console/enrol/totp', { form: { csrf: b.csrf(), code: oathtoolCode(secret, clock.now()) } });
      expect(done.status).toBe(200);
      await b.request('GET', '/console');
      return { b, human: h.body as { id: string; email: string } };
    };

    beforeAll(async () => {
      sink = await startSink(tempDir('mw-console-notify'));
      t = await createTestApp(dialect, { clock, env: relayEnv(sink, { MAILWARD_APPROVAL_TTL: String(72 * 3600) }) });
    }, 60_000);
    afterAll(async () => {
      await t?.close();
      await sink?.close();
    });

    it('pages through 120 pending approvals with a keyset cursor, filters by reason and counts per reason', async () => {
      const { b } = await signedIn(['reviewer']);
      const seed = await seedMailbox(t, 'gated_all');
      const base = clock.now().getTime();
      const ids = await seedMessages(
        t,
        seed.mailbox,
        Array.from({ length: 120 }, (_, i) => ({
          from: `sender${i}@outside.example`,
          subject: `Held ${i}`,
          status: i % 3 === 0 ? 'quarantined' : 'pending_approval',
          createdAt: new Date(base - (120 - i) * 1000).toISOString(),
        })),
      );
      const seen: string[] = [];
      let url: string | null = `/console/queue?mailbox=${seed.mailbox.id}`;
      while (url) {
        const r = await b.request('GET', url);
        expect(r.status).toBe(200);
        seen.push(...[...r.body.matchAll(/href="\/console\/review\/(msg_[0-9a-f]{32})"/g)].map((m) => m[1]!));
        const next = /id="next-page" href="([^"]+)"/.exec(r.body)?.[1];
        url = next ? next.replaceAll('&amp;', '&') : null;
      }
      expect(seen).toEqual(ids);
      const dmarc = await b.request('GET', `/console/queue?mailbox=${seed.mailbox.id}&reason=dmarc_fail`);
      expect([...dmarc.body.matchAll(/href="\/console\/review\//g)]).toHaveLength(40);
      expect(dmarc.body).toMatch(/data-count="dmarc_fail">40</);
      expect(dmarc.body).toMatch(/data-count="oversight_mode">80</);
      // Sorted newest first, the first row is the last one seeded.
      const newest = await b.request('GET', `/console/queue?mailbox=${seed.mailbox.id}&sort=newest`);
      expect(/href="\/console\/review\/(msg_[0-9a-f]{32})"/.exec(newest.body)?.[1]).toBe(ids.at(-1));
      // A cursor not issued by a page is refused, never a silent restart.
      expect((await b.request('GET', '/console/queue?cursor=bm9wZQ')).status).toBe(400);
      // The page read is audited like GET /v1/approvals.
      const audited = await t.call('GET', '/v1/audit/events?action=approval.list&limit=500', t.adminKey);
      expect(audited.body.events.some((e: any) => e.details.view === 'console')).toBe(true);
    });

    it("answers 404 on every console URL of this organisation to another organisation's reviewer", async () => {
      const seed = await seedMailbox(t, 'gated_send');
      const sent = await t.call('POST', `/v1/mailboxes/${seed.mailbox.id}/send`, seed.agentKey, {
        to: ['patient.other@clinic.example'],
        subject: 'Only ours',
        text: 'A reminder of your visit.',
      });
      const approval = await t.c.store.db
        .selectFrom('approvals')
        .select('id')
        .where('message_id', '=', sent.body.id)
        .executeTakeFirstOrThrow();
      const other = await t.c.init({ orgName: 'Other Clinic', domain: `other-${dialect}.example` });
      const { b } = await signedIn(['reviewer', 'auditor'], other!.admin_api_key);
      const ours = await t.call('GET', `/v1/audit/events?limit=1&action=email.submitted`, t.adminKey);
      const seq = ours.body.events[0].seq as number;
      for (const url of [`/console/review/${sent.body.id}`, `/console/audit/${seq}`, `/console/audit/${seq}/proof`]) {
        expect((await b.request('GET', url)).status, url).toBe(404);
      }
      await b.request('GET', '/console/queue');
      const token = b.csrf();
      for (const action of ['approve', 'reject', 'release', 'preview']) {
        const r = await b.request('POST', `/console/review/${sent.body.id}/${action}`, {
          form: { csrf: token, approval_id: approval.id, comment: 'no', text: 'x' },
        });
        expect(r.status, `${action} ${r.body.slice(0, 3000)}`).toBe(404);
      }
      const queue = await b.request('GET', '/console/queue');
      expect(queue.status).toBe(200);
      expect(queue.body).not.toContain(sent.body.id);
      expect(queue.body).not.toContain('Only ours');
      const still = await t.call('GET', `/v1/emails/${sent.body.id}`, t.adminKey);
      expect(still.body.status).toBe('pending_approval');
    });

    it('sends an opted-in reviewer one count-only email for 50 new holds in the batch window, and escalates near expiry', async () => {
      const { b, human } = await signedIn(['reviewer']);
      await b.request('GET', '/console/queue');
      const saved = await b.request('POST', '/console/notifications', { form: { csrf: b.csrf(), enabled: 'on', batch_minutes: '15' } });
      expect(saved.status).toBe(303);
      await t.c.store.db.updateTable('approvals').set({ status: 'rejected' }).where('status', '=', 'pending').execute();

      const seed = await seedMailbox(t, 'gated_send');
      // Everyone else is off, so the sink holds only this reviewer's notices.
      for (const h of await t.c.store.db.selectFrom('humans').select(['id', 'org_id']).where('id', '!=', human.id).execute())
        await t.c.store.db
          .insertInto('reviewer_notification_prefs')
          .values({
            human_id: h.id,
            org_id: h.org_id,
            enabled: 0,
            batch_minutes: 15,
            last_digest_at: null,
            updated_at: clock.now().toISOString(),
          })
          .onConflict((oc) => oc.column('human_id').doUpdateSet({ enabled: 0 }))
          .execute();
      const identifiers: string[] = [];
      for (let i = 0; i < 50; i++) {
        const to = `patient${i}.${dialect}@clinic.example`;
        const subject = `Lab result ${i} for MRN ${4820100 + i}`;
        const sent = await t.call('POST', `/v1/mailboxes/${seed.mailbox.id}/send`, seed.agentKey, {
          to: [to],
          subject,
          text: `MRN: ${4820100 + i}`,
        });
        expect(sent.status).toBe(202);
        identifiers.push(to, subject, String(4820100 + i), sent.body.id);
      }
      const before = sink.messages.length;
      expect(await t.c.reviewNotifications.runOnce()).toBe(0); // the window is still open
      clock.advance(15 * 60_000);
      const sentNow = await t.c.reviewNotifications.runOnce();
      await drainDeliveries(t);
      expect(sentNow).toBe(1);
      expect(await t.c.reviewNotifications.runOnce()).toBe(0);
      await drainDeliveries(t);
      const got = sink.messages.slice(before).filter((m) => m.to.includes(human.email));
      expect(got).toHaveLength(1);
      const raw = got[0]!.raw.toString();
      expect(raw).toMatch(/50 new messages wait for review/);
      expect(raw).toContain('/console/queue');
      for (const id of identifiers) expect(raw.includes(id), id).toBe(false);
      expect(raw).toMatch(/^From: .*notifications@/m);

      // Off means off: a new hold, a whole window later, sends nothing.
      await b.request('GET', '/console/queue');
      expect((await b.request('POST', '/console/notifications', { form: { csrf: b.csrf(), batch_minutes: '15' } })).status).toBe(303);
      await t.call('POST', `/v1/mailboxes/${seed.mailbox.id}/send`, seed.agentKey, {
        to: ['late@clinic.example'],
        subject: 'Late',
        text: 'Hi',
      });
      clock.advance(20 * 60_000);
      expect(await t.c.reviewNotifications.runOnce()).toBe(0);
      await b.request('GET', '/console/queue');
      expect(
        (await b.request('POST', '/console/notifications', { form: { csrf: b.csrf(), enabled: 'on', batch_minutes: '15' } })).status,
      ).toBe(303);

      // Close to expiry: one escalation, once.
      clock.advance(72 * 3600 * 1000 - 35 * 60_000 - 5 * 3600 * 1000);
      await t.c.reviewNotifications.runOnce();
      expect(await t.c.reviewNotifications.runOnce()).toBe(0);
      await drainDeliveries(t);
      const esc = sink.messages.slice(before).filter((m) => m.to.includes(human.email) && /expire/.test(m.raw.toString()));
      expect(esc).toHaveLength(1);
      expect(esc[0]!.raw.toString()).toMatch(/51 held messages will expire unreviewed/); // the 50 and the late one;
    });

    it('lets an admin loosen a mailbox only after a warning, issue a key shown once and revoke it, invite, and look up consent; a reviewer gets 404', async () => {
      const { b: reviewer } = await signedIn(['reviewer']);
      expect((await reviewer.request('GET', '/console/admin')).status).toBe(404);
      const { b } = await signedIn(['admin']);
      const seed = await seedMailbox(t, 'gated_send');
      const page = await b.request('GET', '/console/admin');
      expect(page.status).toBe(200);
      expect(page.body).toContain(seed.mailbox.address);
      const warn = await b.request('POST', `/console/admin/mailboxes/${seed.mailbox.id}/mode`, {
        form: { csrf: b.csrf(), mode: 'autonomous' },
      });
      expect(warn.status).toBe(200);
      expect(warn.body).toContain('id="loosen-warning"');
      expect((await t.call('GET', `/v1/mailboxes/${seed.mailbox.id}`, t.adminKey)).body.oversight_mode).toBe('gated_send');
      const done = await b.request('POST', `/console/admin/mailboxes/${seed.mailbox.id}/mode`, {
        form: { csrf: b.csrf(), mode: 'autonomous', confirm: '1' },
      });
      expect(done.status).toBe(303);
      expect((await t.call('GET', `/v1/mailboxes/${seed.mailbox.id}`, t.adminKey)).body.oversight_mode).toBe('autonomous');

      await b.request('GET', '/console/admin');
      const issued = await b.request('POST', `/console/admin/agents/${seed.agent.id}/keys`, { form: { csrf: b.csrf() } });
      const key = /id="new-key">(mw_[^<]+)</.exec(issued.body)?.[1];
      expect(key).toBeDefined();
      expect((await t.call('GET', '/v1/me', key!)).status).toBe(200);
      const keyId = /^mw_([a-z]+_[0-9a-f]+)_/.exec(key!)?.[1];
      const listed = await b.request('GET', '/console/admin');
      expect(listed.body).toContain(`data-key="${keyId}"`);
      expect(listed.body).not.toContain(key!);
      expect((await b.request('POST', `/console/admin/keys/${keyId}/revoke`, { form: { csrf: b.csrf() } })).status).toBe(303);
      expect((await t.call('GET', '/v1/me', key!)).status).toBe(401);

      await b.request('GET', '/console/admin');
      const added = await b.request('POST', '/console/admin/humans', {
        form: { csrf: b.csrf(), name: 'New Reviewer', email: `new.${dialect}@hospital.example`, role: 'reviewer' },
      });
      expect(added.status).toBe(303);
      const humans = await t.call('GET', '/v1/humans', t.adminKey);
      const created = (humans.body.humans ?? humans.body).find((h: any) => h.email === `new.${dialect}@hospital.example`);
      await b.request('GET', '/console/admin');
      const inv = await b.request('POST', `/console/admin/humans/${created.id}/invite`, { form: { csrf: b.csrf() } });
      expect(inv.body).toMatch(/id="invitation-url">http[^<]+\/console\/invite\//);

      await t.call('PUT', `/v1/contacts/${encodeURIComponent('pat@clinic.example')}/consent`, t.adminKey, {
        electronic: true,
        categories: ['results'],
        source: 'paper_form',
      });
      const lookup = await b.request('GET', `/console/admin?email=${encodeURIComponent('pat@clinic.example')}`);
      expect(lookup.body).toMatch(/id="consent-result">Consent of pat@clinic.example: <strong>granted<\/strong>/);
    });

    it("shows a revision with the rejected version's comment and the diff, and its attachments with the text one previewed", async () => {
      const { b } = await signedIn(['reviewer']);
      const seed = await seedMailbox(t, 'gated_send');
      const first = await t.call('POST', `/v1/mailboxes/${seed.mailbox.id}/send`, seed.agentKey, {
        to: ['revision.patient@clinic.example'],
        subject: 'Your visit',
        text: 'Your visit is on Monday at 9.',
      });
      const a1 = await t.c.store.db.selectFrom('approvals').select('id').where('message_id', '=', first.body.id).executeTakeFirstOrThrow();
      const rk = await t.call('POST', `/v1/humans/${seed.reviewer.id}/api-keys`, t.adminKey, { scopes: ['reviewer'] });
      const rejected = await t.call('POST', `/v1/approvals/${a1.id}/reject`, rk.body.key, { comment: 'Say which clinic.' });
      expect(rejected.status).toBe(200);
      const second = await t.call('POST', `/v1/mailboxes/${seed.mailbox.id}/send`, seed.agentKey, {
        to: ['revision.patient@clinic.example'],
        subject: 'Your visit',
        text: 'Your visit is on Monday at 9, at the Eastside clinic.',
        revision_of: first.body.id,
        attachments: [
          {
            filename: 'directions.txt',
            content_type: 'text/plain',
            content_base64: Buffer.from('Take the <b>east</b> entrance.').toString('base64'),
          },
          { filename: 'map.png', content_type: 'image/png', content_base64: Buffer.from('not really a png').toString('base64') },
        ],
      });
      expect(second.status).toBe(202);
      const page = await b.request('GET', `/console/review/${second.body.id}`);
      expect(page.status).toBe(200);
      expect(page.body).toContain('id="rejection-comment">Say which clinic.</q>');
      // Attachments are listed; the text one is previewed, escaped.
      expect(page.body).toContain('directions.txt (text/plain');
      expect(page.body).toContain('map.png (image/png');
      expect(page.body).toContain('<pre class="attachment-preview">Take the &lt;b&gt;east&lt;/b&gt; entrance.</pre>');
      expect([...page.body.matchAll(/class="attachment-preview"/g)]).toHaveLength(1);
      expect(page.body).toMatch(/id="revision-diff">[\s\S]*\+Your visit is on Monday at 9, at the Eastside clinic\./);
      const queue = await b.request('GET', '/console/queue?reason=revision');
      expect(queue.body).toContain(`/console/review/${second.body.id}`);
      expect(queue.body).not.toContain(`/console/review/${first.body.id}"`);
    });

    it('keeps a held inbound message held with a comment, and refuses a rejection without one', async () => {
      const { b } = await signedIn(['reviewer']);
      const seed = await seedMailbox(t, 'gated_all');
      const [id] = await seedMessages(t, seed.mailbox, [
        {
          from: 'lab@outside.example',
          subject: 'Held inbound',
          text: 'x',
          status: 'pending_approval',
          createdAt: clock.now().toISOString(),
        },
      ]);
      const approval = await t.c.store.db.selectFrom('approvals').select('id').where('message_id', '=', id!).executeTakeFirstOrThrow();
      const page = await b.request('GET', `/console/review/${id}`);
      expect(page.body).toContain('id="keep-held"');
      expect(page.body).toContain('id="release"');
      const empty = await b.request('POST', `/console/review/${id}/reject`, {
        form: { csrf: b.csrf(), approval_id: approval.id, comment: ' ' },
      });
      expect(empty.status).toBe(422);
      expect(empty.body).toContain('A rejection needs a comment');
      const kept = await b.request('POST', `/console/review/${id}/reject`, {
        form: { csrf: b.csrf(), approval_id: approval.id, comment: 'Looks like phishing.' },
      });
      expect(kept.status).toBe(303);
      const agentView = await t.call('GET', `/v1/emails/${id}`, seed.agentKey);
      expect(agentView.body.status).toBe('quarantined');
      expect(agentView.body.content_hidden).toBe(true);
    });
  });
}
