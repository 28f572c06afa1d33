import { dkimVerify } from 'mailauth/lib/dkim/verify.js';
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixedClock } from '../src/kernel/clock.js';
import { dnsRecordsFor } from '../src/mail/dns-records.js';
import { headerValue, splitMessage } from '../src/mail/mime.js';
import { tempDir, testDialects } from './support/dialects.js';
import { startSink, type Sink, relayEnv, drainDeliveries, receivedWithId, seedMailbox } from './support/outbound-sink.js';
import { createTestApp, seedAgent, type TestApp } from './support/test-app.js';

const PATIENT = 'patient@clinic.example';

for (const dialect of testDialects()) {
  describe(`outbound mail with graduated oversight (${dialect})`, () => {
    let t: TestApp;
    let sink: Sink;
    const clock = fixedClock(new Date());
    let seed: Awaited<ReturnType<typeof seedAgent>>;
    let reviewerKey: string;

    const drain = () => drainDeliveries(t);
    const atSink = (messageId: string) => receivedWithId(sink, messageId);
    const mailbox = (mode: string, extra: Record<string, unknown> = {}) => seedMailbox(t, mode, extra);
    const send = (key: string, mbx: string, body: Record<string, unknown> = {}, headers: Record<string, string> = {}) =>
      t.call(
        'POST',
        `/v1/mailboxes/${mbx}/send`,
        key,
        { to: [PATIENT], subject: 'Your appointment', text: 'See you Tuesday at 10:00.', ...body },
        headers,
      );

    beforeAll(async () => {
      sink = await startSink(tempDir('mw-sink'));
      t = await createTestApp(dialect, {
        clock,
        env: relayEnv(sink),
      });
      seed = await seedAgent(t, 'Scheduling Assistant');
      const k = await t.call('POST', `/v1/humans/${seed.reviewer.id}/api-keys`, t.adminKey, { scopes: ['reviewer'] });
      reviewerKey = k.body.key;
    }, 60_000);
    afterAll(async () => {
      await t?.close();
      await sink?.close();
    });

    it('creates mailboxes in gated_send by default and hides them from other agents', async () => {
      const r = await t.call('POST', '/v1/mailboxes', t.adminKey, { agent_id: seed.agent.id, display_name: 'Scheduling' });
      expect(r.status).toBe(201);
      expect(r.body.oversight_mode).toBe('gated_send');
      expect(r.body.address).toBe(seed.agent.address);
      const other = await seedAgent(t, 'Other Agent');
      expect((await t.call('GET', `/v1/mailboxes/${r.body.id}`, other.agentKey)).status).toBe(404);
      expect((await send(other.agentKey, r.body.id)).status).toBe(404);
      const own = await t.call('GET', '/v1/mailboxes', seed.agentKey);
      expect(own.body.mailboxes.map((m: { id: string }) => m.id)).toEqual([r.body.id]);
    });

    it('holds a gated_send message, delivers the reviewer-edited version once, signed twice and with a verifiable identity header', async () => {
      const s = await mailbox('gated_send');
      const sent = await send(s.agentKey, s.mailbox.id);
      expect(sent.status).toBe(202);
      expect(sent.body.status).toBe('pending_approval');
      const held = await t.call('GET', `/v1/emails/${sent.body.id}`, s.agentKey);
      expect(held.body.status).toBe('pending_approval');
      expect(held.body.approval.reasons).toEqual([{ code: 'oversight_mode', mode: 'gated_send' }]);

      // Agents can never approve (they hold no roles): the approval does not exist for them.
      const agentTry = await t.call('POST', `/v1/approvals/${held.body.approval.id}/approve`, s.agentKey, {});
      expect(agentTry.status).toBe(404);
      const pending = await t.call('GET', '/v1/approvals?status=pending', reviewerKey);
      expect(pending.body.approvals.map((a: { email_id: string }) => a.email_id)).toContain(sent.body.id);

      const approved = await t.call('POST', `/v1/approvals/${held.body.approval.id}/approve`, reviewerKey, {
        comment: 'Added the room.',
        edits: { text: 'See you Tuesday at 10:00 in room 4.' },
      });
      expect(approved.status).toBe(200);
      expect(approved.body.approval.edits.map((e: { field: string }) => e.field)).toEqual(['text']);
      expect((await t.call('POST', `/v1/approvals/${held.body.approval.id}/approve`, reviewerKey, {})).status).toBe(409);
      await drain();

      const view = await t.call('GET', `/v1/emails/${sent.body.id}`, s.agentKey);
      expect(view.body.status).toBe('delivered');
      expect(view.body.text).toBe('See you Tuesday at 10:00 in room 4.');
      expect(view.body.original).toEqual({ text: 'See you Tuesday at 10:00.' });
      expect(view.body.approval.comment).toBe('Added the room.');
      expect(view.body.events.map((e: { type: string }) => e.type)).toEqual([
        'submitted',
        'held',
        'approved',
        'queued',
        'delivery_attempted',
        'delivered',
      ]);

      const got = atSink(view.body.message_id);
      expect(got).toHaveLength(1);
      expect(got[0]!.tls).toBe(true);
      expect(got[0]!.to).toEqual([PATIENT]);
      const raw = got[0]!.raw;
      expect(raw.toString()).toContain('room 4');

      // Both DKIM signatures verify with the published records (DNS faked, nothing else).
      const ed = await t.c.store.db
        .selectFrom('signing_keys')
        .selectAll()
        .where('org_id', '=', t.orgId)
        .where('purpose', 'in', ['dkim-ed25519', 'dkim-rsa'])
        .execute();
      const records = dnsRecordsFor(t.domain, ed);
      const resolver = async (name: string, type: string) => {
        const r = records.find((x) => x.name === name && type === 'TXT');
        if (!r) throw Object.assign(new Error('not found'), { code: 'ENOTFOUND' });
        return [[r.value]];
      };
      // mailauth's types omit fields it returns (algo, bodyHash, signingHeaders).
      const dkim = (await dkimVerify(raw, { resolver })) as unknown as {
        results: { signingDomain: string; algo: string; bodyHash: string; status: { result: string }; signingHeaders?: { keys: string } }[];
      };
      expect(dkim.results.map((r) => [r.signingDomain, r.algo, r.status.result]).sort()).toEqual([
        [t.domain, 'ed25519-sha256', 'pass'],
        [t.domain, 'rsa-sha256', 'pass'],
      ]);
      for (const r of dkim.results) expect(String(r.signingHeaders?.keys ?? '').toLowerCase()).toContain('x-agent-identity');

      // X-Agent-Identity verifies with jose against /.well-known/jwks.json.
      const jwks = await t.call('GET', '/.well-known/jwks.json', null);
      const token = headerValue(splitMessage(raw).header, 'X-Agent-Identity')!.replace(/\s+/g, '');
      expect(decodeProtectedHeader(token).kid).toBeTruthy();
      const { payload } = await jwtVerify(token, createLocalJWKSet(jwks.body), { algorithms: ['ES256'] });
      expect(payload).toMatchObject({
        ai_generated: true,
        iss: t.domain,
        sub: s.agent.id,
        agent_address: s.mailbox.address,
        oversight_mode: 'gated_send',
        approved_by: s.reviewer.id === seed.reviewer.id ? s.reviewer.id : seed.reviewer.id,
        approval_id: held.body.approval.id,
        message_id: view.body.message_id,
        responsible_human: { id: s.reviewer.id, name: 'Dr. Rivera' },
      });
      expect((payload.delegation_chain as { type: string }[]).map((e) => e.type)).toEqual(['organization', 'department', 'agent']);
      expect(payload.body_hash).toBe(dkim.results[0]!.bodyHash);

      // The verify route agrees, and notices a changed body.
      const ok = await t.app.inject({
        method: 'POST',
        url: '/v1/identity/verify',
        headers: { authorization: `Bearer ${reviewerKey}`, 'content-type': 'message/rfc822' },
        payload: raw,
      });
      expect(ok.json()).toMatchObject({
        valid: true,
        ai_generated: true,
        agent: { id: s.agent.id },
        approved_by: seed.reviewer.id,
        reasons: [],
      });
      const tampered = Buffer.from(raw.toString().replace('room 4', 'room 5'));
      const bad = await t.app.inject({
        method: 'POST',
        url: '/v1/identity/verify',
        headers: { authorization: `Bearer ${reviewerKey}`, 'content-type': 'message/rfc822' },
        payload: tampered,
      });
      expect(bad.json()).toMatchObject({ valid: false, reasons: ['body_hash_mismatch'] });
      const doubled = Buffer.concat([Buffer.from(`X-Agent-Identity: ${token}\r\n`), raw]);
      const twice = await t.app.inject({
        method: 'POST',
        url: '/v1/identity/verify',
        headers: { authorization: `Bearer ${reviewerKey}`, 'content-type': 'message/rfc822' },
        payload: doubled,
      });
      expect(twice.json()).toMatchObject({ valid: false, reasons: ['multiple_headers'] });

      // The audit log: submit, hold, approve with the diff (hashes, never text), deliver; each with the chain.
      const audit = await t.call('GET', `/v1/audit/events?target_id=${sent.body.id}`, t.adminKey);
      const all = audit.body.events as {
        action: string;
        details: Record<string, unknown>;
        delegation_chain: { type: string }[];
        content_hash: string | null;
        prev_hash: string;
        hash: string;
      }[];
      // Reads of the message are audited too (45 CFR 164.312(b)); the life cycle is the rest.
      expect(all.some((e) => e.action === 'email.read')).toBe(true);
      const events = all.filter((e) => e.action !== 'email.read');
      expect(events.map((e) => e.action)).toEqual([
        'email.submitted',
        'email.held',
        'email.approved',
        'email.delivery_attempted',
        'email.delivered',
      ]);
      const approvedEvt = events.find((e) => e.action === 'email.approved')!;
      expect(approvedEvt.details.edits).toEqual([
        { field: 'text', before_hash: expect.stringMatching(/^[0-9a-f]{64}$/), after_hash: expect.stringMatching(/^[0-9a-f]{64}$/) },
      ]);
      expect(JSON.stringify(events)).not.toContain('room 4');
      expect(JSON.stringify(events)).not.toContain(PATIENT);
      expect(events[0]!.delegation_chain.map((e) => e.type)).toEqual(['organization', 'department', 'agent']);
      expect(approvedEvt.delegation_chain.map((e) => e.type)).toEqual(['organization', 'human']);
      expect(events.at(-1)!.delegation_chain.map((e) => e.type)).toEqual(['organization', 'department', 'agent']);
      for (const e of events) expect(e.hash).toMatch(/^[0-9a-f]{64}$/);
      expect(events[0]!.content_hash).toMatch(/^[0-9a-f]{64}$/);
    });

    it('refuses to send from a read_only mailbox with 403 mailbox_read_only', async () => {
      const s = await mailbox('read_only');
      const r = await send(s.agentKey, s.mailbox.id);
      expect(r.status).toBe(403);
      expect(r.body.code).toBe('mailbox_read_only');
    });

    it('delivers an autonomous message without a stop through the running worker loop', async () => {
      const s = await mailbox('autonomous');
      t.c.mail.delivery.start();
      try {
        const r = await send(s.agentKey, s.mailbox.id, { subject: 'Reminder' });
        expect(r.status).toBe(202);
        expect(r.body.status).toBe('queued');
        const mid = (await t.c.store.db.selectFrom('messages').select('message_id').where('id', '=', r.body.id).executeTakeFirstOrThrow())
          .message_id;
        for (let i = 0; i < 500 && atSink(mid).length === 0; i++) await new Promise((res) => setTimeout(res, 20));
        expect(atSink(mid)).toHaveLength(1);
      } finally {
        await t.c.mail.delivery.stop();
      }
      await drain();
    });

    it('copies monitored mail to forward_to', async () => {
      const s = await mailbox('monitored', { forward_to: 'supervisor@hospital.example' });
      const r = await send(s.agentKey, s.mailbox.id);
      expect(r.body.status).toBe('queued');
      await drain();
      const v = await t.call('GET', `/v1/emails/${r.body.id}`, s.agentKey);
      expect(v.body.status).toBe('delivered');
      const got = atSink(v.body.message_id);
      expect(got.map((m) => m.to[0]).sort()).toEqual([PATIENT, 'supervisor@hospital.example']);
      const reviewerSees = await t.call('GET', `/v1/mailboxes/${s.mailbox.id}/messages`, reviewerKey);
      expect(reviewerSees.body.messages.map((m: { id: string }) => m.id)).toContain(r.body.id);
    });

    it('never delivers a rejected message and lets the agent read why', async () => {
      const s = await mailbox('gated_send');
      const r = await send(s.agentKey, s.mailbox.id, { text: 'Your results are in.' });
      const apr = (await t.call('GET', `/v1/emails/${r.body.id}`, s.agentKey)).body.approval.id;
      expect((await t.call('POST', `/v1/approvals/${apr}/reject`, reviewerKey, {})).status).toBe(400);
      const rej = await t.call('POST', `/v1/approvals/${apr}/reject`, reviewerKey, {
        comment: 'Results go through the portal, not email.',
      });
      expect(rej.status).toBe(200);
      await drain();
      const v = await t.call('GET', `/v1/emails/${r.body.id}`, s.agentKey);
      expect(v.body.status).toBe('rejected');
      expect(v.body.approval.comment).toBe('Results go through the portal, not email.');
      expect(v.body.status_reason.code).toBe('rejected_by_reviewer');
      expect(atSink(v.body.message_id)).toHaveLength(0);
      const list = await t.call('GET', `/v1/mailboxes/${s.mailbox.id}/messages?status=rejected`, s.agentKey);
      expect(list.body.messages.map((m: { id: string }) => m.id)).toEqual([r.body.id]);
    });

    it('rejects an approval that expired, with reason expired', async () => {
      const s = await mailbox('gated_all');
      const r = await send(s.agentKey, s.mailbox.id);
      clock.advance(3601 * 1000);
      await drain();
      const v = await t.call('GET', `/v1/emails/${r.body.id}`, s.agentKey);
      expect(v.body.status).toBe('rejected');
      expect(v.body.status_reason.code).toBe('expired');
      expect(v.body.approval.decision_reason).toEqual({ code: 'expired' });
      const late = await t.call('POST', `/v1/approvals/${v.body.approval.id}/approve`, reviewerKey, {});
      expect(late.status).toBe(409);
      const audit = await t.call('GET', `/v1/audit/events?target_id=${r.body.id}&action=email.expired`, t.adminKey);
      expect(audit.body.events).toHaveLength(1);
      expect(atSink(v.body.message_id)).toHaveLength(0);
    });

    it('retries after 451 twice and delivers once with every attempt recorded', async () => {
      const s = await mailbox('autonomous');
      sink.replies.push({ code: 451, text: '4.3.0 try again later' }, { code: 451, text: '4.3.0 try again later' });
      const r = await send(s.agentKey, s.mailbox.id);
      await t.c.mail.delivery.runOnce();
      expect((await t.call('GET', `/v1/emails/${r.body.id}`, s.agentKey)).body.status).toBe('deferred');
      await drain();
      const v = await t.call('GET', `/v1/emails/${r.body.id}`, s.agentKey);
      expect(v.body.status).toBe('delivered');
      const attempts = v.body.events.filter((e: { type: string }) => e.type === 'delivery_attempted');
      expect(attempts.map((e: { details: { result: string; code: number } }) => [e.details.result, e.details.code])).toEqual([
        ['deferred', 451],
        ['deferred', 451],
        ['accepted', 250],
      ]);
      expect(atSink(v.body.message_id)).toHaveLength(1);
      const audit = await t.call('GET', `/v1/audit/events?target_id=${r.body.id}&action=email.delivery_attempted`, t.adminKey);
      expect(audit.body.events).toHaveLength(3);
    });

    it('marks a message bounced on 550', async () => {
      const s = await mailbox('autonomous');
      sink.replies.push({ code: 550, text: '5.1.1 no such user' });
      const r = await send(s.agentKey, s.mailbox.id);
      await drain();
      const v = await t.call('GET', `/v1/emails/${r.body.id}`, s.agentKey);
      expect(v.body.status).toBe('bounced');
      expect(v.body.status_reason).toMatchObject({ code: 'smtp_permanent_failure', smtp_code: 550 });
      expect(atSink(v.body.message_id)).toHaveLength(0);
      const audit = await t.call('GET', `/v1/audit/events?target_id=${r.body.id}&action=email.bounced`, t.adminKey);
      expect(audit.body.events).toHaveLength(1);
    });

    it('makes one message for one Idempotency-Key, even when the requests race', async () => {
      const s = await mailbox('gated_send');
      const a = await send(s.agentKey, s.mailbox.id, {}, { 'idempotency-key': 'k-1' });
      const b = await send(s.agentKey, s.mailbox.id, {}, { 'idempotency-key': 'k-1' });
      expect(a.status).toBe(202);
      expect(b.status).toBe(202);
      expect(b.body.id).toBe(a.body.id);
      const c = await send(s.agentKey, s.mailbox.id, { subject: 'Different' }, { 'idempotency-key': 'k-1' });
      expect(c.status).toBe(409);
      expect(c.body.code).toBe('idempotency_key_reused');
      const race = await Promise.all(
        Array.from({ length: 8 }, () => send(s.agentKey, s.mailbox.id, { subject: 'Race' }, { 'idempotency-key': 'k-race' })),
      );
      expect(race.map((r) => r.status)).toEqual(Array(8).fill(202));
      expect(new Set(race.map((r) => r.body.id)).size).toBe(1);
      const rows = await t.c.store.db.selectFrom('messages').select('id').where('mailbox_id', '=', s.mailbox.id).execute();
      expect(rows).toHaveLength(2);
    });

    it('validates recipients, subject and header fields at the edge', async () => {
      const s = await mailbox('gated_send');
      const many = Array.from({ length: 51 }, (_, i) => `p${i}@clinic.example`);
      expect((await send(s.agentKey, s.mailbox.id, { to: many })).body.code).toBe('validation_failed');
      expect((await send(s.agentKey, s.mailbox.id, { subject: 'x'.repeat(999) })).status).toBe(400);
      expect((await send(s.agentKey, s.mailbox.id, { subject: 'Hi\r\nBcc: evil@attacker.example' })).status).toBe(400);
      expect((await send(s.agentKey, s.mailbox.id, { to: ['a@b.example\r\nX: y'] })).status).toBe(400);
      const human = await send(reviewerKey, s.mailbox.id);
      expect(human.status).toBe(403);
    });

    it('threads a reply with In-Reply-To and References and keeps cc when asked', async () => {
      const s = await mailbox('autonomous');
      const first = await send(s.agentKey, s.mailbox.id, { cc: ['nurse@clinic.example'] });
      const rep = await t.call('POST', `/v1/emails/${first.body.id}/reply`, s.agentKey, { text: 'One more thing.', reply_all: true });
      expect(rep.status).toBe(202);
      expect(rep.body.thread_id).toBe(first.body.thread_id);
      await drain();
      const v1 = await t.call('GET', `/v1/emails/${first.body.id}`, s.agentKey);
      const v2 = await t.call('GET', `/v1/emails/${rep.body.id}`, s.agentKey);
      expect(v2.body.subject).toBe('Re: Your appointment');
      expect(v2.body.cc).toEqual(['nurse@clinic.example']);
      const header = splitMessage(atSink(v2.body.message_id)[0]!.raw).header;
      expect(headerValue(header, 'In-Reply-To')).toBe(v1.body.message_id);
      expect(headerValue(header, 'References')).toBe(v1.body.message_id);
      const thread = await t.call('GET', `/v1/threads/${first.body.thread_id}`, s.agentKey);
      expect(thread.body.messages.map((m: { id: string }) => m.id)).toEqual([first.body.id, rep.body.id]);
    });

    it('lets a reviewer tighten oversight but only an admin loosen it, audited as loosened', async () => {
      const s = await mailbox('gated_send');
      const loosen = await t.call('PATCH', `/v1/mailboxes/${s.mailbox.id}`, reviewerKey, { oversight_mode: 'autonomous' });
      expect(loosen.status).toBe(403);
      const tighten = await t.call('PATCH', `/v1/mailboxes/${s.mailbox.id}`, reviewerKey, { oversight_mode: 'gated_all' });
      expect(tighten.status).toBe(200);
      expect((await t.call('PATCH', `/v1/mailboxes/${s.mailbox.id}`, s.agentKey, { oversight_mode: 'autonomous' })).status).toBe(404);
      const admin = await t.call('PATCH', `/v1/mailboxes/${s.mailbox.id}`, t.adminKey, { oversight_mode: 'autonomous' });
      expect(admin.body.oversight_mode).toBe('autonomous');
      const audit = await t.call('GET', `/v1/audit/events?target_id=${s.mailbox.id}&action=mailbox.updated`, t.adminKey);
      const ok = audit.body.events.filter((e: { outcome: string }) => e.outcome === 'success');
      expect(ok.map((e: { details: { loosened: boolean } }) => e.details.loosened)).toEqual([false, true]);
      expect(ok[1].actor.type).toBe('human');
    });

    it('replaces tags on a message and audits them', async () => {
      const s = await mailbox('gated_send');
      const r = await send(s.agentKey, s.mailbox.id, { tags: ['reminder'] });
      const put = await t.call('PUT', `/v1/emails/${r.body.id}/tags`, s.agentKey, { tags: ['reminder', 'cardiology'] });
      expect(put.body).toEqual({
        id: r.body.id,
        tags: ['reminder', 'cardiology'],
        system_tags: [],
        agent_tags: ['reminder', 'cardiology'],
      });
      expect((await t.call('GET', `/v1/emails/${r.body.id}`, s.agentKey)).body.tags).toEqual(['reminder', 'cardiology']);
      const other = await seedAgent(t, 'Tag Snoop');
      expect((await t.call('PUT', `/v1/emails/${r.body.id}/tags`, other.agentKey, { tags: [] })).status).toBe(404);
    });

    it('stores bodies and attachments sealed, never in clear text', async () => {
      const s = await mailbox('autonomous');
      const r = await send(s.agentKey, s.mailbox.id, {
        text: 'Diagnosis: secret-marker-123',
        attachments: [
          { filename: 'lab.txt', content_type: 'text/plain', content_base64: Buffer.from('attachment-marker-456').toString('base64') },
        ],
      });
      await drain();
      const row = await t.c.store.db.selectFrom('messages').selectAll().where('id', '=', r.body.id).executeTakeFirstOrThrow();
      const dump = JSON.stringify(row);
      expect(dump).not.toContain('secret-marker-123');
      expect(dump).not.toContain(Buffer.from('attachment-marker-456').toString('base64'));
      expect(dump).not.toContain(PATIENT);
      const v = await t.call('GET', `/v1/emails/${r.body.id}`, s.agentKey);
      expect(v.body.attachments).toEqual([{ index: 0, filename: 'lab.txt', content_type: 'text/plain', size: 21 }]);
      expect(atSink(v.body.message_id)[0]!.raw.toString()).toContain(Buffer.from('attachment-marker-456').toString('base64'));
    });
  });
}
