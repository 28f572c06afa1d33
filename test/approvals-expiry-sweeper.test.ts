import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir, testDialects } from './support/dialects.js';
import { relayEnv, type Sink, seedMailbox, startSink } from './support/outbound-sink.js';
import { createTestApp, type TestApp } from './support/test-app.js';
import { waitFor } from './support/wait.js';

/*
 * `mailward serve` expires approvals with a sweeper of its own (on the sweeps leader), no longer in the delivery
 * loop: it sleeps until the next pending approval's expiry, and expires it then with its audit event.
 */
for (const dialect of testDialects()) {
  describe(`the approvals expiry sweeper (${dialect})`, () => {
    let t: TestApp;
    let sink: Sink;
    beforeAll(async () => {
      sink = await startSink(tempDir('mw-sink'));
      t = await createTestApp(dialect, { env: relayEnv(sink) });
    }, 60_000);
    afterAll(async () => {
      await t?.close();
      await sink?.close();
    });

    it('expires a held message when its approval comes due, with email.expired in the audit log', async () => {
      const s = await seedMailbox(t, 'gated_all');
      const r = await t.call('POST', `/v1/mailboxes/${s.mailbox.id}/send`, s.agentKey, {
        to: ['patient@clinic.example'],
        subject: 'Held',
        text: 'Hello',
      });
      expect(r.status).toBe(202);
      // Due in a second and a half: the sweeper reads that expiry and sleeps until then (at most maxMs between looks).
      await t.c.store.db
        .updateTable('approvals')
        .set({ expires_at: new Date(Date.now() + 1500).toISOString() })
        .where('message_id', '=', r.body.id)
        .execute();
      const stop = t.c.mail.approvals.startExpirySweeper({ minMs: 50, maxMs: 60_000 });
      try {
        const status = async () => (await t.call('GET', `/v1/emails/${r.body.id}`, s.agentKey)).body;
        expect(await waitFor(async () => (await status()).status === 'rejected', { timeoutMs: 30_000, everyMs: 100 })).toBe(true);
        expect((await status()).status_reason.code).toBe('expired');
      } finally {
        stop();
      }
      await t.c.audit.sync();
      const audit = await t.call('GET', `/v1/audit/events?target_id=${r.body.id}&action=email.expired`, t.adminKey);
      expect(audit.body.events).toHaveLength(1);
    });
  });
}
