import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testDialects } from './support/dialects.js';
import { seedMessages } from './support/inbound-seed.js';
import { seedMailbox } from './support/outbound-sink.js';
import { createTestApp, type TestApp } from './support/test-app.js';
import { textIds } from './support/audit-rows.js';

const THREAD = 'thr_0190a1b2c3d47e5f8a9b0c1d2e3f4a5b';

for (const dialect of testDialects()) {
  describe(`reading a mailbox with an unreadable message (${dialect})`, () => {
    let t: TestApp;
    let box: Awaited<ReturnType<typeof seedMailbox>>;
    let ids: string[];

    beforeAll(async () => {
      t = await createTestApp(dialect);
      box = await seedMailbox(t, 'autonomous');
      ids = await seedMessages(t, box.mailbox, [
        { from: 'results@lab.example', subject: 'Results one', createdAt: '2026-03-01T08:00:00.000Z', threadId: THREAD },
        { from: 'results@lab.example', subject: 'Results two', createdAt: '2026-03-01T09:00:00.000Z', threadId: THREAD },
        { from: 'results@lab.example', subject: 'Results three', createdAt: '2026-03-01T10:00:00.000Z', threadId: THREAD },
        { from: 'results@lab.example', subject: 'Results four', createdAt: '2026-03-01T11:00:00.000Z', threadId: THREAD },
      ]);
      // Two kinds of damage: a tampered authentication tag (still in the envelope format) and a value that is not an envelope at all.
      const row = await t.c.store.db.selectFrom('messages').select('content_sealed').where('id', '=', ids[1]!).executeTakeFirstOrThrow();
      // The v2 envelope ends with the 16-byte payload tag (src/kernel/crypto/envelope.ts).
      const sealed = Buffer.from(row.content_sealed as Buffer);
      randomBytes(16).copy(sealed, sealed.length - 16);
      await t.c.store.db.updateTable('messages').set({ content_sealed: sealed }).where('id', '=', ids[1]!).execute();
      await t.c.store.db.updateTable('messages').set({ content_sealed: 'not sealed' }).where('id', '=', ids[2]!).execute();
    }, 60_000);
    afterAll(async () => {
      await t?.close();
    });

    const unreadableEvents = async () => {
      await t.c.audit.sync();
      return textIds(
        await t.c.store.db.selectFrom('audit_events').selectAll().where('action', '=', 'email.unreadable').orderBy('seq').execute(),
      );
    };

    it('skips them in search, answers partial with the count, and audits each as an error', async () => {
      const before = (await unreadableEvents()).length;
      const r = await t.call('GET', `/v1/mailboxes/${box.mailbox.id}/search?q=results`, box.agentKey);
      expect(r.status).toBe(200);
      expect(r.body.messages.map((m: { id: string }) => m.id)).toEqual([ids[3], ids[0]]);
      expect(r.body.partial).toBe(true);
      expect(r.body.unreadable).toBe(2);
      const events = (await unreadableEvents()).slice(before);
      expect(events.map((e) => [e.target_id, e.outcome, e.actor_id])).toEqual(
        expect.arrayContaining([
          [ids[1], 'error', box.agent.id],
          [ids[2], 'error', box.agent.id],
        ]),
      );
      expect(events).toHaveLength(2);
      for (const e of events) {
        expect(JSON.parse(e.details)).toEqual({ mailbox_id: box.mailbox.id, code: 'decrypt_failed', during: 'search' });
      }
      await t.c.audit.sync();
      const searched = await t.c.store.db
        .selectFrom('audit_events')
        .selectAll()
        .where('action', '=', 'email.searched')
        .orderBy('seq', 'desc')
        .executeTakeFirstOrThrow();
      expect(JSON.parse(searched.details)).toMatchObject({ partial: true, unreadable: 2, message_ids: [ids[3], ids[0]] });
    });

    it('skips them in a list the same way, and keeps a clean mailbox complete', async () => {
      const before = (await unreadableEvents()).length;
      const r = await t.call('GET', `/v1/mailboxes/${box.mailbox.id}/messages`, box.agentKey);
      expect(r.status).toBe(200);
      expect(r.body.messages.map((m: { id: string }) => m.id)).toEqual([ids[3], ids[0]]);
      expect(r.body).toMatchObject({ partial: true, unreadable: 2 });
      expect((await unreadableEvents()).slice(before).map((e) => JSON.parse(e.details).during)).toEqual(['list', 'list']);

      const clean = await seedMailbox(t, 'autonomous');
      await seedMessages(t, clean.mailbox, [{ from: 'results@lab.example', subject: 'Results clean' }]);
      const ok = await t.call('GET', `/v1/mailboxes/${clean.mailbox.id}/search?q=results`, clean.agentKey);
      expect(ok.status).toBe(200);
      expect(ok.body).toMatchObject({ partial: false, unreadable: 0 });
      expect(ok.body.messages).toHaveLength(1);
    });

    it('leaves them out of the thread view, answers partial with the count, and audits each as an error', async () => {
      const before = (await unreadableEvents()).length;
      const r = await t.call('GET', `/v1/threads/${THREAD}`, box.agentKey);
      expect(r.status).toBe(200);
      expect(r.body.messages.map((m: { id: string }) => m.id)).toEqual([ids[0], ids[3]]);
      expect(r.body).toMatchObject({ partial: true, unreadable: 2 });
      const events = (await unreadableEvents()).slice(before);
      expect(events.map((e) => [e.target_id, JSON.parse(e.details)])).toEqual(
        expect.arrayContaining([
          [ids[1], { mailbox_id: box.mailbox.id, code: 'decrypt_failed', during: 'thread' }],
          [ids[2], { mailbox_id: box.mailbox.id, code: 'decrypt_failed', during: 'thread' }],
        ]),
      );
      expect(events).toHaveLength(2);
    });
  });
}
