import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixedClock } from '../src/kernel/clock.js';
import { tempDir, testDialects } from './support/dialects.js';
import { type Sink, startSink, relayEnv, drainDeliveries, receivedWithId, seedMailbox } from './support/outbound-sink.js';
import { createTestApp, seedAgent, type TestApp } from './support/test-app.js';

const REMINDER = {
  subject: 'Appointment reminder',
  text: 'Hi Maria, this is a reminder of your appointment on Tuesday, March 10 at 10:30 AM at the cardiology clinic.',
};
const LAB_TEXT = 'Patient: Maria Lopez, MRN: 4820193. Diagnosis: type 2 diabetes mellitus. Please call us.';
const LAB = { subject: 'Your lab results', text: LAB_TEXT };

const consentPath = (email: string) => `/v1/contacts/${encodeURIComponent(email)}/consent`;

for (const dialect of testDialects()) {
  describe(`PHI holds and consent on the outbound path (${dialect})`, () => {
    let t: TestApp;
    let sink: Sink;
    const clock = fixedClock(new Date());
    let reviewerKey: string;
    let officerKey: string;
    let n = 0;
    /** A fresh patient address per test, with consent granted unless told otherwise. */
    const patient = async (consent: 'granted' | 'refused' | 'unknown' = 'granted') => {
      const address = `patient${++n}.${dialect}@clinic.example`;
      if (consent !== 'unknown') {
        const r = await t.call('PUT', consentPath(address), officerKey, {
          electronic: consent === 'granted',
          categories: consent === 'granted' ? ['appointment', 'results'] : [],
          source: 'paper_form',
        });
        expect(r.status).toBe(200);
      }
      return address;
    };
    const drain = () => drainDeliveries(t);
    const atSink = (messageId: string) => receivedWithId(sink, messageId);
    const mailbox = (mode: string, extra: Record<string, unknown> = {}) => seedMailbox(t, mode, extra);
    const send = (key: string, mbx: string, body: Record<string, unknown>) => t.call('POST', `/v1/mailboxes/${mbx}/send`, key, body);
    const audit = async (query: string) => (await t.call('GET', `/v1/audit/events?${query}`, t.adminKey)).body.events as any[];

    beforeAll(async () => {
      sink = await startSink(tempDir('mw-phi-sink'));
      t = await createTestApp(dialect, {
        clock,
        env: relayEnv(sink),
      });
      const seed = await seedAgent(t, 'Seed');
      reviewerKey = (await t.call('POST', `/v1/humans/${seed.reviewer.id}/api-keys`, t.adminKey, { scopes: ['reviewer'] })).body.key;
      const officer = await t.call('POST', '/v1/humans', t.adminKey, {
        name: 'Privacy Officer',
        email: 'privacy@hospital.example',
        roles: ['privacy_officer'],
      });
      officerKey = (await t.call('POST', `/v1/humans/${officer.body.id}/api-keys`, t.adminKey, {})).body.key;
    }, 60_000);
    afterAll(async () => {
      await t?.close();
      await sink?.close();
    });

    it('lets a reminder with only a first name and an appointment time flow in monitored, with a copy to forward_to', async () => {
      const s = await mailbox('monitored', { forward_to: 'supervisor@hospital.example' });
      const to = await patient();
      const r = await send(s.agentKey, s.mailbox.id, { to: [to], ...REMINDER });
      expect(r.status).toBe(202);
      expect(r.body.status).toBe('queued');
      await drain();
      const v = await t.call('GET', `/v1/emails/${r.body.id}`, s.agentKey);
      expect(v.body.status).toBe('delivered');
      expect(v.body.phi_sensitivity).toBe('low');
      expect(v.body.phi_findings.map((f: any) => f.type).sort()).toEqual(['date', 'name']);
      expect(
        atSink(v.body.message_id)
          .map((m) => m.to[0])
          .sort(),
      ).toEqual([to, 'supervisor@hospital.example']);
    });

    for (const mode of ['monitored', 'gated_send', 'gated_all'] as const) {
      it(`holds a lab result with an MRN and a diagnosis in ${mode} under the default policy`, async () => {
        const s = await mailbox(mode, mode === 'monitored' ? { forward_to: 'supervisor@hospital.example' } : {});
        const r = await send(s.agentKey, s.mailbox.id, { to: [await patient()], ...LAB });
        expect(r.status).toBe(202);
        expect(r.body.status).toBe('pending_approval');
        const v = await t.call('GET', `/v1/emails/${r.body.id}`, s.agentKey);
        expect(v.body.phi_sensitivity).toBe('high');
        const phi = v.body.approval.reasons.find((x: any) => x.code === 'phi');
        expect(phi.types).toEqual(expect.arrayContaining(['mrn', 'diagnosis']));
        if (mode !== 'monitored') expect(v.body.approval.reasons[0]).toEqual({ code: 'oversight_mode', mode });
        await drain();
        expect(atSink(v.body.message_id)).toHaveLength(0);
      });
    }

    it('holds in monitored a result told in words and a reminder naming the procedure; lets a minimal reminder at a clinic named for a condition flow', async () => {
      const s = await mailbox('monitored', { forward_to: 'supervisor@hospital.example' });
      const held = async (subject: string, text: string) =>
        (await send(s.agentKey, s.mailbox.id, { to: [await patient()], subject, text })).body.status;
      expect(await held('quick update', 'hey Marcus, your strep test came back negative so no antibiotics needed. feel better!')).toBe(
        'pending_approval',
      );
      expect(await held('Reminder', 'Hi Ana, reminder: your colonoscopy is Friday at 8:00. Start the bowel prep Thursday at 6 PM.')).toBe(
        'pending_approval',
      );
      expect(
        await held(
          'Reminder',
          'Hi Mohammed, a reminder of your visit at the Diabetes Education Center, 3rd floor, 1200 Fenwick Avenue, on Tuesday 06/10 at 1:00 PM.',
        ),
      ).toBe('queued');
      expect(await held('Invoice INV-2025-00482', 'Please find attached invoice INV-2025-00482 for the March linen service.')).toBe(
        'queued',
      );
      const statement = await send(s.agentKey, s.mailbox.id, {
        to: [await patient()],
        subject: 'Statement',
        text: 'Dear Eleanor Whitcombe, your statement for patient account ACCT-00482913 is ready. Balance due: $84.20.',
      });
      expect(statement.body.status).toBe('pending_approval');
      const v = await t.call('GET', `/v1/emails/${statement.body.id}`, s.agentKey);
      expect(v.body.phi_sensitivity).toBe('moderate');
      expect(v.body.approval.reasons).toEqual([
        {
          code: 'phi',
          types: ['account_number', 'name'],
          about: 'recipient',
          disclosures: [],
          classifier_probability: expect.any(Number),
          top_features: expect.any(Array),
        },
      ]);
    });

    it('sends the same lab result in autonomous by default, and holds it when the mailbox policy says so', async () => {
      const free = await mailbox('autonomous');
      const sent = await send(free.agentKey, free.mailbox.id, { to: [await patient()], ...LAB });
      expect(sent.body.status).toBe('queued');

      const strict = await mailbox('autonomous', { phi_policy: { hold_at: { autonomous: 'moderate' } } });
      expect(strict.mailbox.phi_policy).toEqual({ hold_at: { autonomous: 'moderate' } });
      const held = await send(strict.agentKey, strict.mailbox.id, { to: [await patient()], ...LAB });
      expect(held.body.status).toBe('pending_approval');
      const v = await t.call('GET', `/v1/emails/${held.body.id}`, strict.agentKey);
      // The message-level judgement says whom the information is about and what it discloses.
      expect(v.body.approval.reasons).toEqual([
        {
          code: 'phi',
          types: ['diagnosis', 'mrn', 'name'],
          about: 'named',
          disclosures: ['condition'],
          classifier_probability: expect.any(Number),
          top_features: expect.any(Array),
        },
      ]);

      const byType = await mailbox('autonomous', { phi_policy: { hold_types: ['mrn'] } });
      expect(
        (await send(byType.agentKey, byType.mailbox.id, { to: [await patient()], subject: 'Your chart', text: 'Your MRN is 4820193.' }))
          .body.status,
      ).toBe('pending_approval');
    });

    it('always holds Part 2 content and PHI in a subject, even in autonomous', async () => {
      const s = await mailbox('autonomous');
      const p2to = await patient();
      const p2body = { to: [p2to], subject: 'Program update', text: 'Your next session at the opioid treatment program is confirmed.' };
      // 42 CFR 2.31: Part 2 content needs a Part 2 consent naming the recipient; without one nothing is sent.
      expect((await send(s.agentKey, s.mailbox.id, p2body)).body.code).toBe('no_part2_consent');
      const granted = await t.call('POST', '/v1/part2-consents', t.adminKey, {
        recipient_address: p2to,
        purpose: 'treatment',
        source: 'signed_form',
      });
      expect(granted.status).toBe(201);
      const p2 = await send(s.agentKey, s.mailbox.id, p2body);
      expect(p2.body.status).toBe('pending_approval');
      const v2 = await t.call('GET', `/v1/emails/${p2.body.id}`, s.agentKey);
      expect(v2.body.phi_sensitivity).toBe('restricted');
      expect(v2.body.approval.reasons.map((x: any) => x.code)).toEqual(['part2', 'phi']);
      const subj = await send(s.agentKey, s.mailbox.id, {
        to: [await patient()],
        subject: 'Results for MRN 4820193',
        text: 'Please log in to the portal.',
      });
      const vs = await t.call('GET', `/v1/emails/${subj.body.id}`, s.agentKey);
      expect(vs.body.status).toBe('pending_approval');
      expect(vs.body.approval.reasons.map((x: any) => x.code)).toEqual(['phi_in_subject', 'phi']);
      expect(vs.body.phi_findings).toEqual([{ type: 'mrn', field: 'subject', start: 16, end: 23, confidence: expect.any(Number) }]);
    });

    it('shows the reviewer each finding with its type and place, without the text, in the queue and on the message', async () => {
      const s = await mailbox('gated_send');
      const r = await send(s.agentKey, s.mailbox.id, {
        to: [await patient()],
        ...LAB,
        attachments: [
          {
            filename: 'results.csv',
            content_type: 'text/csv',
            content_base64: Buffer.from('mrn,result\nMRN 4820193,HbA1c 8.2%\n').toString('base64'),
          },
        ],
      });
      const queue = await t.call('GET', '/v1/approvals?status=pending', reviewerKey);
      expect(queue.status).toBe(200);
      const apr = queue.body.approvals.find((a: any) => a.email_id === r.body.id);
      expect(apr.phi_sensitivity).toBe('high');
      const mrnInText = apr.phi_findings.find((f: any) => f.type === 'mrn' && f.field === 'text');
      expect(LAB_TEXT.slice(mrnInText.start, mrnInText.end)).toBe('4820193');
      expect(apr.phi_findings).toContainEqual({
        type: 'mrn',
        field: 'attachment',
        attachment: 0,
        start: 15,
        end: 22,
        confidence: expect.any(Number),
      });
      for (const f of apr.phi_findings)
        expect(Object.keys(f).sort()).toEqual(expect.arrayContaining(['confidence', 'end', 'field', 'start', 'type']));
      expect(JSON.stringify(apr)).not.toContain('4820193');
      const asReviewer = await t.call('GET', `/v1/emails/${r.body.id}`, reviewerKey);
      expect(asReviewer.body.phi_findings).toEqual(apr.phi_findings);
      // The audit log names the types found, never the values.
      const submitted = await audit(`action=email.submitted&target_id=${r.body.id}`);
      expect(submitted[0].details.phi).toEqual({ sensitivity: 'high', types: ['diagnosis', 'lab_value', 'mrn', 'name'], findings: 5 });
      expect(JSON.stringify(submitted)).not.toContain('4820193');
    });

    it('scans again what a reviewer edits and stores the new findings', async () => {
      const s = await mailbox('gated_send');
      const r = await send(s.agentKey, s.mailbox.id, { to: [await patient()], ...LAB });
      const apr = (await t.call('GET', `/v1/emails/${r.body.id}`, s.agentKey)).body.approval.id;
      const ok = await t.call('POST', `/v1/approvals/${apr}/approve`, reviewerKey, {
        edits: { text: 'Your results are ready in the patient portal.' },
      });
      expect(ok.status).toBe(200);
      expect(ok.body.approval.phi_findings).toEqual([]);
      expect(ok.body.approval.phi_sensitivity).toBe('none');
      const v = await t.call('GET', `/v1/emails/${r.body.id}`, s.agentKey);
      expect(v.body.phi_findings).toEqual([]);
      const approved = await audit(`action=email.approved&target_id=${r.body.id}`);
      expect(approved[0].details.phi).toEqual({ rescanned: true, sensitivity: 'none', types: [] });
      await drain();
      expect(atSink(v.body.message_id)).toHaveLength(1);
    });

    it('refuses a send to a recipient who refused email with 422 no_consent, stores nothing and audits the refusal', async () => {
      const s = await mailbox('autonomous');
      const refused = await patient('refused');
      const r = await send(s.agentKey, s.mailbox.id, { to: [await patient()], bcc: [refused], ...REMINDER });
      expect(r.status).toBe(422);
      expect(r.body.code).toBe('no_consent');
      expect(r.body.recipient_index).toBe(1);
      // Refused even without PHI: consent is about email itself (45 CFR 164.522(b)).
      expect((await send(s.agentKey, s.mailbox.id, { to: [refused], subject: 'Hello', text: 'Body' })).status).toBe(422);
      const list = await t.call('GET', `/v1/mailboxes/${s.mailbox.id}/messages`, s.agentKey);
      expect(list.body.messages).toEqual([]);
      const denied = await audit(`action=email.submitted&target_id=${s.mailbox.id}`);
      const refusals = denied.filter((e) => e.outcome === 'denied' && e.details.code === 'no_consent');
      expect(refusals).toHaveLength(2);
      expect(refusals[0].details).toEqual({ code: 'no_consent', status: 422, refused_recipients: 1 });
      expect(JSON.stringify(denied)).not.toContain('clinic.example');
      // A reply to a patient who refused since is refused the same way.
      const to = await patient();
      const ok = await send(s.agentKey, s.mailbox.id, { to: [to], subject: 'Hello', text: 'Body' });
      expect(ok.status).toBe(202);
      await t.call('PUT', consentPath(to), officerKey, { electronic: false, categories: [], source: 'verbal' });
      const rep = await t.call('POST', `/v1/emails/${ok.body.id}/reply`, s.agentKey, { text: 'More.' });
      expect(rep.status).toBe(422);
      expect(rep.body.code).toBe('no_consent');
    });

    it('holds PHI to a recipient whose consent is unknown, with a count and no address in the reasons', async () => {
      const s = await mailbox('monitored', { forward_to: 'supervisor@hospital.example' });
      const unknown = await patient('unknown');
      const r = await send(s.agentKey, s.mailbox.id, { to: [unknown, await patient()], cc: [await patient('unknown')], ...REMINDER });
      expect(r.body.status).toBe('pending_approval');
      const v = await t.call('GET', `/v1/emails/${r.body.id}`, s.agentKey);
      expect(v.body.approval.reasons).toEqual([{ code: 'consent_unknown', recipients: 2 }]);
      const held = await audit(`action=email.held&target_id=${r.body.id}`);
      expect(held[0].details.reasons).toEqual([{ code: 'consent_unknown', recipients: 2 }]);
      expect(JSON.stringify(held)).not.toContain('clinic.example');
      // Without PHI, unknown consent does not hold.
      const plain = await send(s.agentKey, s.mailbox.id, {
        to: [unknown],
        subject: 'Clinic hours',
        text: 'The clinic is closed on the holiday.',
      });
      expect(plain.body.status).toBe('queued');
    });

    it('refuses an approval when a recipient refused email while the message waited, and keeps it pending', async () => {
      const s = await mailbox('gated_send');
      const to = await patient();
      const r = await send(s.agentKey, s.mailbox.id, { to: [to], ...LAB });
      const apr = (await t.call('GET', `/v1/emails/${r.body.id}`, s.agentKey)).body.approval.id;
      await t.call('PUT', consentPath(to), officerKey, { electronic: false, categories: [], source: 'verbal' });
      const no = await t.call('POST', `/v1/approvals/${apr}/approve`, reviewerKey, {});
      expect(no.status).toBe(422);
      expect(no.body.code).toBe('no_consent');
      const v = await t.call('GET', `/v1/emails/${r.body.id}`, s.agentKey);
      expect(v.body.status).toBe('pending_approval');
      const ev = await audit(`action=email.approved&target_id=${apr}`);
      expect(ev.map((e) => [e.outcome, e.details.code])).toEqual([['denied', 'no_consent']]);
      // The reviewer can still send it to someone else.
      const edited = await t.call('POST', `/v1/approvals/${apr}/approve`, reviewerKey, { edits: { to: [await patient()] } });
      expect(edited.status).toBe(200);
    });

    it('lets an admin or privacy officer set the PHI policy, audits loosening, and refuses others', async () => {
      const s = await mailbox('gated_send');
      const url = `/v1/mailboxes/${s.mailbox.id}`;
      expect((await t.call('PATCH', url, reviewerKey, { phi_policy: { hold_at: { gated_send: 'low' } } })).status).toBe(403);
      expect((await t.call('PATCH', url, s.agentKey, { phi_policy: null })).status).toBe(404);
      expect((await t.call('PATCH', url, officerKey, { phi_policy: { hold_at: { gated_send: 'sometimes' } } })).status).toBe(400);
      expect((await t.call('PATCH', url, officerKey, { phi_policy: { hold_types: ['not_a_type'] } })).status).toBe(400);
      // A privacy officer changes the PHI policy and nothing else.
      expect((await t.call('PATCH', url, officerKey, { display_name: 'Other' })).status).toBe(404);
      const tighter = await t.call('PATCH', url, officerKey, { phi_policy: { hold_at: { gated_send: 'low' }, hold_types: ['mrn'] } });
      expect(tighter.status).toBe(200);
      expect(tighter.body.phi_policy).toEqual({ hold_at: { gated_send: 'low' }, hold_types: ['mrn'] });
      const looser = await t.call('PATCH', url, t.adminKey, { phi_policy: { hold_at: { gated_send: 'high' } } });
      expect(looser.status).toBe(200);
      const back = await t.call('PATCH', url, officerKey, { phi_policy: null });
      expect(back.body.phi_policy).toBeNull();
      const ev = await audit(`action=mailbox.updated&target_id=${s.mailbox.id}`);
      expect(ev.filter((e) => e.outcome === 'success').map((e) => e.details.phi_policy_loosened)).toEqual([false, true, false]);
      expect(ev.find((e) => e.details.phi_policy_loosened).details.phi_policy).toEqual({
        before: { hold_at: { gated_send: 'low' }, hold_types: ['mrn'] },
        after: { hold_at: { gated_send: 'high' } },
      });
    });
  });
}
