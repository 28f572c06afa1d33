import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixedClock } from '../src/kernel/clock.js';
import { headerValue, splitMessage } from '../src/mail/mime.js';
import { PART2_NOTICE } from '../src/mail/outbound-pipeline.js';
import { tempDir, testDialects } from './support/dialects.js';
import { seedMessages } from './support/inbound-seed.js';
import { drainDeliveries, receivedWithId, relayEnv, type Sink, seedMailbox, startSink } from './support/outbound-sink.js';
import { createTestApp, type TestApp } from './support/test-app.js';
import { storedOfId } from '../src/audit/audit-columns.js';

const JWCRYPTO = path.join(import.meta.dirname, 'support', 'jwcrypto-verify.py');

const PART2_TEXT =
  'Dear Ms. Alvarez, your take-home methadone doses from the Riverside opioid treatment program are ready for pick-up, ' +
  'and your counselling group at the recovery program meets on Thursday.';

for (const dialect of testDialects()) {
  describe(`clinical workflows: revisions, consent by category, Part 2 (${dialect})`, () => {
    let t: TestApp;
    let sink: Sink;
    let reviewerKey: string;
    const clock = fixedClock(new Date());

    beforeAll(async () => {
      sink = await startSink(tempDir('mw-sink'));
      t = await createTestApp(dialect, { clock, env: relayEnv(sink) });
      const rev = await t.call('POST', '/v1/humans', t.adminKey, {
        name: 'Dr. Okafor',
        email: 'okafor@hospital.example',
        roles: ['reviewer'],
      });
      reviewerKey = (await t.call('POST', `/v1/humans/${rev.body.id}/api-keys`, t.adminKey, {})).body.key;
    }, 60_000);
    afterAll(async () => {
      await t?.close();
      await sink?.close();
    });

    const send = (key: string, mbx: string, body: Record<string, unknown>) =>
      t.call('POST', `/v1/mailboxes/${mbx}/send`, key, { subject: 'Follow-up', text: 'See you soon.', ...body });

    it('links a revision of a rejected message to the rejection, shows the comment and a diff, and never names the rejected message in its headers', async () => {
      const s = await seedMailbox(t, 'gated_send');
      const [question] = await seedMessages(t, s.mailbox, [{ from: 'pat.lee@patients.example', subject: 'Question about my visit' }]);
      const parent = (await t.c.store.db.selectFrom('messages').select('message_id').where('id', '=', question!).executeTakeFirstOrThrow())
        .message_id;
      const first = await t.call('POST', `/v1/emails/${question}/reply`, s.agentKey, { text: 'Your visit is on Monday at 9.' });
      expect(first.body.status).toBe('pending_approval');
      const held = await t.call('GET', `/v1/emails/${first.body.id}`, reviewerKey);
      const rejected = await t.call('POST', `/v1/approvals/${held.body.approval.id}/reject`, reviewerKey, {
        comment: 'Wrong day: it is Tuesday.',
      });
      expect(rejected.status).toBe(200);

      // Only a rejected message can be revised, and only once.
      expect((await t.call('POST', `/v1/emails/${question}/reply`, s.agentKey, { text: 'x', revision_of: question })).body.code).toBe(
        'not_revisable',
      );
      const rev = await t.call('POST', `/v1/emails/${question}/reply`, s.agentKey, {
        text: 'Your visit is on Tuesday at 9.',
        revision_of: first.body.id,
      });
      expect(rev.status).toBe(202);
      expect(rev.body.thread_id).toBe(first.body.thread_id);
      expect((await t.call('POST', `/v1/emails/${question}/reply`, s.agentKey, { text: 'y', revision_of: first.body.id })).body.code).toBe(
        'already_revised',
      );

      // The reviewer sees the earlier rejection, its comment and what changed.
      const view = await t.call('GET', `/v1/emails/${rev.body.id}`, reviewerKey);
      expect(view.body.approval.revision_of).toBe(held.body.approval.id);
      expect(view.body.revision).toMatchObject({
        of_email_id: first.body.id,
        of_approval_id: held.body.approval.id,
        rejection_comment: 'Wrong day: it is Tuesday.',
        changes: [{ field: 'text', before: 'Your visit is on Monday at 9.', after: 'Your visit is on Tuesday at 9.' }],
      });
      expect(view.body.revision.text_diff).toContain('-Your visit is on Monday at 9.');
      expect(view.body.revision.text_diff).toContain('+Your visit is on Tuesday at 9.');
      const pending = await t.call('GET', '/v1/approvals?status=pending', reviewerKey);
      expect(pending.body.approvals.find((a: { email_id: string }) => a.email_id === rev.body.id).revision_of).toBe(held.body.approval.id);

      expect((await t.call('POST', `/v1/approvals/${view.body.approval.id}/approve`, reviewerKey, {})).status).toBe(200);
      await drainDeliveries(t);
      const delivered = await t.call('GET', `/v1/emails/${rev.body.id}`, s.agentKey);
      expect(delivered.body.status).toBe('delivered');
      const raw = receivedWithId(sink, delivered.body.message_id)[0]!.raw;
      const header = splitMessage(raw).header;
      expect(headerValue(header, 'In-Reply-To')).toBe(parent);
      expect(raw.toString()).not.toContain(held.body.message_id);

      // The chain of revisions is in the audit log.
      await t.c.audit.sync();
      const audit = await t.c.store.db
        .selectFrom('audit_events')
        .selectAll()
        .where('action', '=', 'email.submitted')
        .where('target_id', '=', storedOfId(rev.body.id))
        .executeTakeFirstOrThrow();
      expect(JSON.parse(audit.details)).toMatchObject({ revision_of: first.body.id, revision_of_approval: held.body.approval.id });
    });

    it("holds, or refuses when the organisation says so, a message whose category a recipient's consent does not cover", async () => {
      const s = await seedMailbox(t, 'autonomous');
      const patient = 'cat.only.appointments@patients.example';
      expect(
        (
          await t.call('PUT', `/v1/contacts/${patient}/consent`, t.adminKey, {
            electronic: true,
            categories: ['appointment'],
            source: 'paper_form',
          })
        ).status,
      ).toBe(200);
      const held = await send(s.agentKey, s.mailbox.id, {
        to: [patient],
        category: 'results',
        text: 'Your results are ready in the portal.',
      });
      expect(held.body.status).toBe('pending_approval');
      expect((await t.call('GET', '/v1/consent-policy', t.adminKey)).body).toEqual({ category_mismatch: 'hold' });
      expect((await t.call('PUT', '/v1/consent-policy', s.agentKey, { category_mismatch: 'refuse' })).status).toBe(404);
      expect((await t.call('PUT', '/v1/consent-policy', t.adminKey, { category_mismatch: 'refuse' })).status).toBe(200);
      const refused = await send(s.agentKey, s.mailbox.id, {
        to: [patient],
        category: 'results',
        text: 'Your results are ready in the portal.',
      });
      expect(refused.status).toBe(422);
      expect(refused.body).toMatchObject({ code: 'no_consent', category: 'results', recipient_index: 0 });
      expect((await send(s.agentKey, s.mailbox.id, { to: [patient], category: 'appointment' })).body.status).toBe('queued');
      await t.call('PUT', '/v1/consent-policy', t.adminKey, { category_mismatch: 'hold' });
    });

    it('refuses Part 2 content to a recipient without a Part 2 consent; with one it is delivered with the 42 CFR 2.32 notice', async () => {
      const s = await seedMailbox(t, 'gated_send');
      const to = ['intake@partner-clinic.example'];
      const without = await send(s.agentKey, s.mailbox.id, { to, subject: 'Transfer of care', text: PART2_TEXT });
      expect(without.status).toBe(422);
      expect(without.body.code).toBe('no_part2_consent');
      await t.c.audit.sync();
      const denied = await t.c.store.db
        .selectFrom('audit_events')
        .selectAll()
        .where('action', '=', 'email.submitted')
        .where('outcome', '=', 'denied')
        .execute();
      expect(denied.some((e) => JSON.parse(e.details).code === 'no_part2_consent')).toBe(true);

      // A consent naming the recipient organisation and a purpose (agents cannot record one).
      const body = { recipient_domain: 'partner-clinic.example', purpose: 'treatment', source: 'signed_form' };
      expect((await t.call('POST', '/v1/part2-consents', s.agentKey, body)).status).toBe(404);
      const consent = await t.call('POST', '/v1/part2-consents', t.adminKey, body);
      expect(consent.status).toBe(201);
      const sent = await send(s.agentKey, s.mailbox.id, { to, subject: 'Transfer of care', text: PART2_TEXT });
      expect(sent.status).toBe(202);
      const held = await t.call('GET', `/v1/emails/${sent.body.id}`, reviewerKey);
      expect(held.body.approval.reasons.map((r: { code: string }) => r.code)).toContain('part2');
      expect(held.body.system_tags).toContain('part2');
      await t.c.audit.sync();
      const audit = await t.c.store.db
        .selectFrom('audit_events')
        .selectAll()
        .where('action', '=', 'email.submitted')
        .where('target_id', '=', storedOfId(sent.body.id))
        .executeTakeFirstOrThrow();
      expect(JSON.parse(audit.details).part2).toEqual({ consents: [consent.body.id] });
      expect((await t.call('POST', `/v1/approvals/${held.body.approval.id}/approve`, reviewerKey, {})).status).toBe(200);
      await drainDeliveries(t);
      const delivered = await t.call('GET', `/v1/emails/${sent.body.id}`, s.agentKey);
      expect(delivered.body.status).toBe('delivered');
      const raw = receivedWithId(sink, delivered.body.message_id)[0]!
        .raw.toString()
        .replace(/=\r?\n/g, '')
        .replace(/\r?\n/g, ' ');
      expect(raw).toContain(PART2_NOTICE);

      // A revocation while a message waits stops its approval.
      const second = await send(s.agentKey, s.mailbox.id, { to, subject: 'Transfer of care', text: PART2_TEXT });
      const waiting = await t.call('GET', `/v1/emails/${second.body.id}`, reviewerKey);
      expect((await t.call('POST', `/v1/part2-consents/${consent.body.id}/revoke`, t.adminKey)).status).toBe(200);
      const approve = await t.call('POST', `/v1/approvals/${waiting.body.approval.id}/approve`, reviewerKey, {});
      expect(approve.status).toBe(422);
      expect(approve.body.code).toBe('no_part2_consent');
    });
    it('sends a refill on behalf of a clinician under a live grant, names the clinician and NPI in the identity header, and refuses once the grant is revoked', async () => {
      const s = await seedMailbox(t, 'autonomous');
      const pharmacy = 'refills@pharmacy.example';
      await t.call('PUT', `/v1/contacts/${pharmacy}/consent`, t.adminKey, {
        electronic: true,
        categories: ['refill'],
        source: 'ehr_import',
      });
      expect(
        (
          await t.call('POST', '/v1/humans', t.adminKey, {
            name: 'Dr. Bad',
            email: 'bad@hospital.example',
            roles: ['clinician'],
            npi: '1234567890',
          })
        ).status,
      ).toBe(400);
      const dr = await t.call('POST', '/v1/humans', t.adminKey, {
        name: 'Dr. Xavier Mensah',
        email: 'x.mensah@hospital.example',
        roles: ['clinician'],
        npi: '1234567893',
      });
      expect(dr.status).toBe(201);
      expect(dr.body.npi).toBe('1234567893');
      const refill = {
        to: [pharmacy],
        subject: 'Refill request',
        text: 'Please renew the lisinopril refill for patient Ana Ruiz.',
        category: 'refill',
      };
      const body = { ...refill, on_behalf_of: dr.body.id };

      expect((await send(s.agentKey, s.mailbox.id, { ...body, category: undefined })).body.code).toBe('category_required');
      expect((await send(s.agentKey, s.mailbox.id, body)).body.code).toBe('no_grant');
      const expires = new Date(clock.now().getTime() + 30 * 86_400_000).toISOString();
      const grantBody = { agent_id: s.agent.id, clinician_id: dr.body.id, categories: ['refill'], expires_at: expires };
      expect((await t.call('POST', '/v1/grants', s.agentKey, grantBody)).status).toBe(404);
      const grant = await t.call('POST', '/v1/grants', t.adminKey, grantBody);
      expect(grant.status).toBe(201);
      // The grant covers refills only.
      expect((await send(s.agentKey, s.mailbox.id, { ...body, category: 'results' })).body.code).toBe('no_grant');

      const sent = await send(s.agentKey, s.mailbox.id, body);
      expect(sent.status).toBe(202);
      expect(sent.body.status).toBe('queued');
      await drainDeliveries(t);
      const view = await t.call('GET', `/v1/emails/${sent.body.id}`, t.adminKey);
      expect(view.body.on_behalf_of).toEqual({
        id: dr.body.id,
        name: 'Dr. Xavier Mensah',
        npi: '1234567893',
        category: 'refill',
        grant_id: grant.body.id,
      });
      const raw = receivedWithId(sink, view.body.message_id)[0]!.raw.toString();
      const token = raw.match(/^X-Agent-Identity:([^\r\n]*(?:\r?\n[ \t][^\r\n]*)*)/im)![1]!.replace(/\s+/g, '');
      const kid = JSON.parse(Buffer.from(token.split('.')[0]!, 'base64url').toString()).kid as string;
      const jwks = await t.call('GET', '/.well-known/jwks.json', null);
      const jwk = jwks.body.keys.find((k: { kid: string }) => k.kid === kid);
      // Verified by python3-jwcrypto, not by Mailward's own code.
      const claims = JSON.parse(execFileSync('/usr/bin/python3', [JWCRYPTO, JSON.stringify(jwk), token], { encoding: 'utf8' }));
      expect(claims.on_behalf_of).toMatchObject({ sub: dr.body.id, name: 'Dr. Xavier Mensah', npi: '1234567893', category: 'refill' });
      expect(claims.act).toMatchObject({ sub: s.agent.id, type: 'agent', act: { sub: dr.body.id, type: 'clinician', npi: '1234567893' } });
      await t.c.audit.sync();
      const audit = await t.c.store.db
        .selectFrom('audit_events')
        .selectAll()
        .where('action', '=', 'email.submitted')
        .where('target_id', '=', storedOfId(sent.body.id))
        .executeTakeFirstOrThrow();
      expect(JSON.parse(audit.details).on_behalf_of).toEqual({
        id: dr.body.id,
        npi: '1234567893',
        category: 'refill',
        grant_id: grant.body.id,
      });

      // Revoking stops new sends at once.
      expect((await t.call('DELETE', `/v1/grants/${grant.body.id}`, t.adminKey)).status).toBe(200);
      const after = await send(s.agentKey, s.mailbox.id, body);
      expect(after.status).toBe(403);
      expect(after.body.code).toBe('no_grant');
    });
  });
}
