import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testDialects } from './support/dialects.js';
import { connectHttp } from './support/mcp-client.js';
import { seedMailbox } from './support/outbound-sink.js';
import { createTestApp, type TestApp } from './support/test-app.js';

const consentPath = (email: string) => `/v1/contacts/${encodeURIComponent(email)}/consent`;
const LAB = { subject: 'Your lab results', text: 'Your potassium came back at 5.9 mmol/L; please call the clinic.' };
const REMINDER = { subject: 'Appointment reminder', text: 'A reminder of your appointment on Tuesday at the clinic.' };

for (const dialect of testDialects()) {
  describe(`approval queue and consent categories (${dialect})`, () => {
    let t: TestApp;
    let port: number;
    let reviewerKey: string;
    let officerKey: string;
    let auditorKey: string;
    let n = 0;
    /** A fresh patient address whose recorded consent covers only `categories` (empty: every category). */
    const patient = async (categories: string[]) => {
      const address = `patient${++n}.${dialect}@clinic.example`;
      const r = await t.call('PUT', consentPath(address), officerKey, { electronic: true, categories, source: 'paper_form' });
      expect(r.status).toBe(200);
      return address;
    };
    const events = async (query: string) => (await t.call('GET', `/v1/audit/events?limit=500&${query}`, auditorKey)).body.events as any[];
    const row = (id: string) => t.c.store.db.selectFrom('messages').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
    const approvalOf = async (emailId: string) => (await row(emailId)).approval_id as string;

    beforeAll(async () => {
      t = await createTestApp(dialect);
      await t.app.listen({ host: '127.0.0.1', port: 0 });
      port = (t.app.server.address() as AddressInfo).port;
      const seed = await seedMailbox(t, 'autonomous');
      reviewerKey = (await t.call('POST', `/v1/humans/${seed.reviewer.id}/api-keys`, t.adminKey, { scopes: ['reviewer'] })).body.key;
      const officer = await t.call('POST', '/v1/humans', t.adminKey, {
        name: 'Privacy Officer',
        email: 'privacy@hospital.example',
        roles: ['privacy_officer'],
      });
      officerKey = (await t.call('POST', `/v1/humans/${officer.body.id}/api-keys`, t.adminKey, {})).body.key;
      const auditor = await t.call('POST', '/v1/humans', t.adminKey, {
        name: 'Auditor',
        email: 'auditor@hospital.example',
        roles: ['auditor'],
      });
      auditorKey = (await t.call('POST', `/v1/humans/${auditor.body.id}/api-keys`, t.adminKey, {})).body.key;
    }, 60_000);
    afterAll(async () => {
      t?.app.server.closeAllConnections();
      await t?.close();
    });

    it('pages GET /v1/approvals with a cursor: every pending approval once, oldest first, more rows than one page', async () => {
      const s = await seedMailbox(t, 'gated_send');
      const ids: string[] = [];
      for (let i = 0; i < 7; i++) {
        const r = await t.call('POST', `/v1/mailboxes/${s.mailbox.id}/send`, s.agentKey, {
          to: [`queue${i}.${dialect}@clinic.example`],
          ...REMINDER,
        });
        expect(r.body.status).toBe('pending_approval');
        ids.push(await approvalOf(r.body.id));
      }
      const seen: string[] = [];
      const sizes: number[] = [];
      let cursor: string | null = null;
      for (let page = 0; page < 50; page++) {
        const r = await t.call('GET', `/v1/approvals?status=pending&limit=3${cursor ? `&cursor=${cursor}` : ''}`, reviewerKey);
        expect(r.status).toBe(200);
        sizes.push(r.body.approvals.length);
        seen.push(...r.body.approvals.map((a: { id: string }) => a.id));
        cursor = r.body.next_cursor;
        if (!cursor) break;
      }
      expect(seen).toEqual([...seen].sort());
      expect(new Set(seen).size).toBe(seen.length);
      expect(seen.filter((id) => ids.includes(id))).toEqual(ids);
      expect(sizes.at(-1)).toBeGreaterThan(0);
      expect(sizes.slice(0, -1).every((x) => x === 3)).toBe(true);

      const bad = await t.call('GET', `/v1/approvals?cursor=${Buffer.from('not-an-id').toString('base64url')}`, reviewerKey);
      expect(bad.status).toBe(400);
      expect(bad.body.code).toBe('invalid_cursor');
      expect((await t.call('GET', '/v1/approvals?limit=0', reviewerKey)).status).toBe(400);
    });

    it('audits every read of the approval queue, with the count and no PHI', async () => {
      const s = await seedMailbox(t, 'gated_send');
      const r = await t.call('POST', `/v1/mailboxes/${s.mailbox.id}/send`, s.agentKey, { to: [await patient([])], ...LAB });
      expect(r.body.status).toBe('pending_approval');
      const list = await t.call('GET', '/v1/approvals?status=pending&limit=2', reviewerKey);
      expect(list.status).toBe(200);
      const reads = await events('action=approval.list');
      const mine = reads.at(-1);
      expect(mine).toMatchObject({
        outcome: 'success',
        actor: { type: 'human' },
        details: { status: 'pending', limit: 2, count: list.body.approvals.length, has_cursor: false },
      });
      expect(mine.details.filter_hash).toMatch(/^[0-9a-f]{64}$/);
      expect(JSON.stringify(mine)).not.toMatch(/potassium|5\.9 mmol|clinic\.example/);
    });

    it('audits reads of the audit log and of inclusion proofs', async () => {
      const first = await t.call('GET', '/v1/audit/events?limit=5&action=consent.recorded', auditorKey);
      expect(first.status).toBe(200);
      const reads = await events('action=audit.events.read');
      const read = reads.find(
        (e) =>
          e.details.filters?.includes('action') &&
          e.details.count === first.body.events.length &&
          e.details.last_seq === first.body.events.at(-1)?.seq,
      );
      expect(read).toMatchObject({ outcome: 'success', actor: { type: 'human' }, details: { filters: ['action'] } });
      expect(read.details.filter_hash).toMatch(/^[0-9a-f]{64}$/);

      const seq = first.body.events[0].seq;
      const proof = await t.call('GET', `/v1/audit/events/${seq}/proof`, auditorKey);
      expect(proof.status).toBe(200);
      const proofs = await events(`action=audit.proof.read&target_id=${seq}`);
      expect(proofs).toHaveLength(1);
      expect(proofs[0]).toMatchObject({
        outcome: 'success',
        target: { type: 'audit_event', id: String(seq) },
        details: { seq, tree_size: proof.body.tree_size },
      });
    });

    it('ends audit paging at the end of the log even though each read appends an event', async () => {
      let cursor: string | null = null;
      let pages = 0;
      for (; pages < 1000; pages++) {
        const r = await t.call('GET', `/v1/audit/events?limit=50${cursor ? `&cursor=${cursor}` : ''}`, auditorKey);
        expect(r.status).toBe(200);
        cursor = r.body.next_cursor;
        if (!cursor) break;
      }
      expect(cursor).toBeNull();
    });

    it('holds a lab result to a contact who consented only to appointments, with reason consent_category (REST send and reply)', async () => {
      const s = await seedMailbox(t, 'autonomous');
      const to = await patient(['appointment']);
      const lab = await t.call('POST', `/v1/mailboxes/${s.mailbox.id}/send`, s.agentKey, { to: [to], ...LAB, category: 'results' });
      expect(lab.status).toBe(202);
      expect(lab.body.status).toBe('pending_approval');
      const v = await t.call('GET', `/v1/emails/${lab.body.id}`, s.agentKey);
      expect(v.body.approval.reasons).toContainEqual({ code: 'consent_category', category: 'results', recipients: 1 });
      expect(v.body.status_reason.reasons).toContainEqual({ code: 'consent_category', category: 'results', recipients: 1 });

      const ok = await t.call('POST', `/v1/mailboxes/${s.mailbox.id}/send`, s.agentKey, { to: [to], ...REMINDER, category: 'appointment' });
      expect(ok.body.status).toBe('queued');
      // A contact who consented without naming categories accepts every category.
      const open = await t.call('POST', `/v1/mailboxes/${s.mailbox.id}/send`, s.agentKey, {
        to: [await patient([])],
        ...LAB,
        category: 'results',
      });
      expect(open.body.status).toBe('queued');

      const reply = await t.call('POST', `/v1/emails/${ok.body.id}/reply`, s.agentKey, { text: LAB.text, category: 'results' });
      expect(reply.status).toBe(202);
      expect(reply.body.status).toBe('pending_approval');
      expect((await t.call('GET', `/v1/emails/${reply.body.id}`, s.agentKey)).body.approval.reasons).toContainEqual({
        code: 'consent_category',
        category: 'results',
        recipients: 1,
      });
      const submitted = (await events(`action=email.submitted&target_id=${reply.body.id}`))[0];
      expect(submitted.details.category).toBe('results');

      const bad = await t.call('POST', `/v1/mailboxes/${s.mailbox.id}/send`, s.agentKey, { to: [to], ...REMINDER, category: 'marketing' });
      expect(bad.status).toBe(400);
    });

    it('checks the category of an MCP send_email and reply_email', async () => {
      const s = await seedMailbox(t, 'autonomous');
      const to = await patient(['appointment']);
      const mcp = await connectHttp(port, s.agentKey);
      try {
        const r = await mcp.call('send_email', {
          mailbox_id: s.mailbox.id,
          to: [to],
          ...LAB,
          category: 'results',
          idempotency_key: `k-${dialect}-1`,
        });
        expect(r.isError).toBeFalsy();
        expect(r.structuredContent.status).toBe('pending_approval');
        expect((await row(r.structuredContent.id)).status_reason).toContain('consent_category');
        const base = await mcp.call('send_email', {
          mailbox_id: s.mailbox.id,
          to: [to],
          ...REMINDER,
          category: 'appointment',
          idempotency_key: `k-${dialect}-2`,
        });
        expect(base.structuredContent.status).toBe('queued');
        const re = await mcp.call('reply_email', {
          email_id: base.structuredContent.id,
          text: LAB.text,
          category: 'results',
          idempotency_key: `k-${dialect}-3`,
        });
        expect(re.structuredContent.status).toBe('pending_approval');
      } finally {
        await mcp.close();
      }
    });

    it('refuses to approve a message whose category a recipient did not consent to, until the reviewer reclassifies it', async () => {
      const s = await seedMailbox(t, 'autonomous');
      const to = await patient(['appointment']);
      const lab = await t.call('POST', `/v1/mailboxes/${s.mailbox.id}/send`, s.agentKey, { to: [to], ...LAB, category: 'results' });
      const apr = await approvalOf(lab.body.id);
      const refused = await t.call('POST', `/v1/approvals/${apr}/approve`, reviewerKey, {});
      expect(refused.status).toBe(422);
      expect(refused.body).toMatchObject({ code: 'consent_category', category: 'results', recipient_index: 0 });
      expect((await row(lab.body.id)).status).toBe('pending_approval');
      const denied = (await events(`action=email.approved&target_id=${apr}`)).filter((e) => e.outcome === 'denied');
      expect(denied).toHaveLength(1);
      expect(denied[0].details).toMatchObject({ code: 'consent_category', category: 'results', held_recipients: 1 });

      const other = await t.call('POST', `/v1/approvals/${apr}/approve`, reviewerKey, { category: 'billing' });
      expect(other.status).toBe(422);
      const ok = await t.call('POST', `/v1/approvals/${apr}/approve`, reviewerKey, { category: 'appointment' });
      expect(ok.status).toBe(200);
      expect(ok.body.status).toBe('queued');
      expect((await row(lab.body.id)).category).toBe('appointment');
      const approved = (await events(`action=email.approved&target_id=${lab.body.id}`)).filter((e) => e.outcome === 'success');
      expect(approved[0].details).toMatchObject({ category: 'appointment', category_before: 'results' });

      // A consent narrowed while a message waited is seen at approval.
      const gated = await seedMailbox(t, 'gated_send');
      const later = await patient([]);
      const held = await t.call('POST', `/v1/mailboxes/${gated.mailbox.id}/send`, gated.agentKey, {
        to: [later],
        ...LAB,
        category: 'results',
      });
      expect(
        (await t.call('GET', `/v1/emails/${held.body.id}`, gated.agentKey)).body.approval.reasons.map((x: { code: string }) => x.code),
      ).not.toContain('consent_category');
      await t.call('PUT', consentPath(later), officerKey, { electronic: true, categories: ['appointment'], source: 'patient_portal' });
      expect((await t.call('POST', `/v1/approvals/${await approvalOf(held.body.id)}/approve`, reviewerKey, {})).body.code).toBe(
        'consent_category',
      );
    });

    it('lets only one decision win: a second decision answers 409 and is audited as denied', async () => {
      const s = await seedMailbox(t, 'gated_send');
      const r = await t.call('POST', `/v1/mailboxes/${s.mailbox.id}/send`, s.agentKey, { to: [await patient([])], ...REMINDER });
      const apr = await approvalOf(r.body.id);
      expect((await t.call('POST', `/v1/approvals/${apr}/approve`, reviewerKey, {})).status).toBe(200);
      const again = await t.call('POST', `/v1/approvals/${apr}/reject`, reviewerKey, { comment: 'Too late.' });
      expect(again.status).toBe(409);
      expect(again.body.code).toBe('approval_decided');
      expect((await row(r.body.id)).status).toBe('queued');
      const denied = await events(`action=email.rejected&target_id=${apr}`);
      expect(denied).toHaveLength(1);
      expect(denied[0]).toMatchObject({ outcome: 'denied', details: { code: 'approval_decided', status: 409 } });
      expect((await events(`action=email.rejected&target_id=${r.body.id}`)).filter((e) => e.outcome === 'success')).toHaveLength(0);
    });
  });
}
