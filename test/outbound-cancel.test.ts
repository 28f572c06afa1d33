import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { claimOutboxJobs } from '../src/queue/outbox-repo.js';
import { tempDir, testDialects } from './support/dialects.js';
import { drainDeliveries, relayEnv, type Sink, seedMailbox, startSink } from './support/outbound-sink.js';
import { createTestApp, type TestApp } from './support/test-app.js';
import { storedOfId } from '../src/audit/audit-columns.js';

const PATIENT = 'patient@clinic.example';

for (const dialect of testDialects()) {
  describe(`POST /v1/emails/{id}/cancel (${dialect})`, () => {
    let t: TestApp;
    let sink: Sink;
    beforeAll(async () => {
      sink = await startSink(tempDir('mw-cancel'));
      t = await createTestApp(dialect, { env: relayEnv(sink) });
    }, 60_000);
    afterAll(async () => {
      await t?.close();
      await sink?.close();
    });

    const send = async (key: string, mailboxId: string, subject = 'Your results') => {
      const r = await t.call('POST', `/v1/mailboxes/${mailboxId}/send`, key, { to: [PATIENT], subject, text: 'Please call the clinic.' });
      expect(r.status).toBe(202);
      return r.body as { id: string; status: string };
    };
    const row = (id: string) => t.c.store.db.selectFrom('messages').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
    const jobsOf = (id: string) => t.c.store.db.selectFrom('outbox').select(['status', 'last_code']).where('message_id', '=', id).execute();
    const auditOf = async (id: string) => {
      await t.c.audit.sync();
      return t.c.store.db
        .selectFrom('audit_events')
        .select(['action', 'outcome'])
        .where('target_id', '=', storedOfId(id))
        .where('action', '=', 'email.cancelled')
        .execute();
    };

    it('lets the agent cancel a held message, closing its approval so no reviewer can release it', async () => {
      const s = await seedMailbox(t, 'gated_send');
      const m = await send(s.agentKey, s.mailbox.id);
      expect(m.status).toBe('pending_approval');
      const r = await t.call('POST', `/v1/emails/${m.id}/cancel`, s.agentKey);
      expect(r.status).toBe(200);
      expect(r.body).toMatchObject({ id: m.id, status: 'cancelled' });

      const pending = await t.call('GET', '/v1/approvals?status=pending', t.adminKey);
      expect(pending.body.approvals.map((a: { email_id: string }) => a.email_id)).not.toContain(m.id);
      const reviewerKey = (await t.call('POST', `/v1/humans/${s.reviewer.id}/api-keys`, t.adminKey, {})).body.key;
      const approve = await t.call('POST', `/v1/approvals/${(await row(m.id)).approval_id}/approve`, reviewerKey, {});
      expect(approve.status).toBe(409);

      const seen = await t.call('GET', `/v1/emails/${m.id}`, s.agentKey);
      expect(seen.body.status).toBe('cancelled');
      expect(seen.body.events.map((e: { type: string }) => e.type)).toContain('cancelled');
      expect(await auditOf(m.id)).toEqual([{ action: 'email.cancelled', outcome: 'success' }]);
      await drainDeliveries(t);
      expect(sink.messages.filter((x) => x.raw.toString().includes(m.id))).toEqual([]);
    });

    it('cancels a queued message before the worker claims it: nothing reaches the relay', async () => {
      const s = await seedMailbox(t, 'autonomous');
      const m = await send(s.agentKey, s.mailbox.id, 'Queued then cancelled');
      expect(m.status).toBe('queued');
      const before = sink.messages.length;
      const r = await t.call('POST', `/v1/emails/${m.id}/cancel`, s.agentKey);
      expect(r.status).toBe(200);
      expect(await jobsOf(m.id)).toEqual([{ status: 'failed', last_code: 'cancelled' }]);
      await drainDeliveries(t);
      expect(sink.messages.length).toBe(before);
      expect((await row(m.id)).status).toBe('cancelled');
      // Cancelling twice: the message is final now.
      const again = await t.call('POST', `/v1/emails/${m.id}/cancel`, s.agentKey);
      expect(again.status).toBe(409);
      expect(again.body.code).toBe('not_cancellable');
    });

    it('cancels a deferred message between retries', async () => {
      const s = await seedMailbox(t, 'autonomous');
      sink.replies.push({ code: 451, text: 'Try again later' });
      const m = await send(s.agentKey, s.mailbox.id, 'Deferred then cancelled');
      await t.c.mail.delivery.runOnce();
      expect((await row(m.id)).status).toBe('deferred');
      const before = sink.messages.length;
      expect((await t.call('POST', `/v1/emails/${m.id}/cancel`, t.adminKey)).status).toBe(200);
      await drainDeliveries(t);
      expect(sink.messages.length).toBe(before);
      expect((await row(m.id)).status).toBe('cancelled');
    });

    it('answers 409 not_cancellable for a message being sent or delivered, and changes nothing', async () => {
      const s = await seedMailbox(t, 'autonomous');
      const sending = await send(s.agentKey, s.mailbox.id, 'Claimed by a worker');
      // A worker has claimed its job (it is in SMTP now).
      const claimed = await claimOutboxJobs(t.c.store.db, dialect, 'wrk_test', new Date(Date.now() + 1000), 60_000, 100);
      expect(claimed.map((j) => j.message_id)).toContain(sending.id);
      const r = await t.call('POST', `/v1/emails/${sending.id}/cancel`, s.agentKey);
      expect(r.status).toBe(409);
      expect(r.body.code).toBe('not_cancellable');
      expect((await row(sending.id)).status).not.toBe('cancelled');
      expect((await jobsOf(sending.id)).map((j) => j.status)).toEqual(['sending']);
      expect((await auditOf(sending.id)).map((e) => e.outcome)).not.toContain('success');
      // Release the claim so the rest of the suite can deliver.
      await t.c.store.db
        .updateTable('outbox')
        .set({ status: 'pending', claimed_by: null, lease_until: null })
        .where('claimed_by', '=', 'wrk_test')
        .execute();

      const delivered = await send(s.agentKey, s.mailbox.id, 'Delivered');
      await drainDeliveries(t);
      expect((await row(delivered.id)).status).toBe('delivered');
      const late = await t.call('POST', `/v1/emails/${delivered.id}/cancel`, s.agentKey);
      expect(late.status).toBe(409);
      expect(late.body.code).toBe('not_cancellable');
      expect((await row(delivered.id)).status).toBe('delivered');
    });

    it('lets only the sending agent or an admin cancel', async () => {
      const s = await seedMailbox(t, 'gated_send');
      const other = await seedMailbox(t, 'gated_send');
      const readOnlyKey = (await t.call('POST', `/v1/agents/${s.agent.id}/api-keys`, t.adminKey, { scopes: ['mail:read'] })).body.key;
      const reviewerKey = (await t.call('POST', `/v1/humans/${s.reviewer.id}/api-keys`, t.adminKey, {})).body.key;
      const m = await send(s.agentKey, s.mailbox.id);
      expect((await t.call('POST', `/v1/emails/${m.id}/cancel`, other.agentKey)).status).toBe(404);
      const noScope = await t.call('POST', `/v1/emails/${m.id}/cancel`, readOnlyKey);
      expect([noScope.status, noScope.body.code]).toEqual([403, 'scope_required']);
      const reviewer = await t.call('POST', `/v1/emails/${m.id}/cancel`, reviewerKey);
      expect([reviewer.status, reviewer.body.code]).toEqual([403, 'role_required']);
      expect((await row(m.id)).status).toBe('pending_approval');
      const admin = await t.call('POST', `/v1/emails/${m.id}/cancel`, t.adminKey);
      expect(admin.status).toBe(200);
      expect((await row(m.id)).status).toBe('cancelled');
    });
  });
}
