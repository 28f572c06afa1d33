import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testDialects } from './support/dialects.js';
import { seedMailbox } from './support/outbound-sink.js';
import { createTestApp, type TestApp } from './support/test-app.js';

const LAB = 'results@lab.example';
const CRLF = '\r\n';

const rawMessage = (to: string, n: string, word: string) =>
  Buffer.from(
    `From: Lab <${LAB}>${CRLF}To: ${to}${CRLF}Subject: Results ${n}${CRLF}Message-ID: <reads.${n}@lab.example>${CRLF}` +
      `Date: Mon, 23 Nov 2026 10:00:00 +0000${CRLF}MIME-Version: 1.0${CRLF}Content-Type: text/plain; charset=utf-8${CRLF}${CRLF}` +
      `Your ${word} results are ready.${CRLF}`,
  );

/*
 * The store transaction of a received message reads the mailbox, its agent, whether the message is already stored
 * and the organisation's newest live content-index key in one statement (receive-service.ts). These check each of
 * those answers against what the separate reads gave: the key a message is indexed under, duplicates, and a
 * mailbox changed while the message was analysed.
 */
for (const dialect of testDialects()) {
  describe(`the reads of an inbound store transaction (${dialect})`, () => {
    let t: TestApp;
    let box: Awaited<ReturnType<typeof seedMailbox>>;
    const env = () => ({ mailFrom: LAB, rcptTo: [box.mailbox.address], clientIp: '127.0.0.1', helo: 'lab.example', tls: false });

    beforeAll(async () => {
      t = await createTestApp(dialect);
      box = await seedMailbox(t, 'autonomous');
    }, 60_000);
    afterAll(async () => {
      await t?.close();
    });

    const stored = async (id: string) => {
      const m = await t.c.store.db
        .selectFrom('messages')
        .select(['search_key_version', 'status'])
        .where('id', '=', id)
        .executeTakeFirstOrThrow();
      const idx = await t.c.store.db.selectFrom('recipient_index').select('key_version').where('message_id', '=', id).execute();
      return { version: Number(m.search_key_version), status: m.status, indexed: [...new Set(idx.map((r) => Number(r.key_version)))] };
    };
    const addKey = async (version: number, retired: boolean) => {
      const key = randomBytes(32);
      await t.c.store.db
        .insertInto('recipient_index_keys')
        .values({
          org_id: t.orgId,
          version,
          key_wrapped: JSON.stringify(t.c.ring.wrap(key, `recipient-index-key|${t.orgId}|${version}`)),
          created_at: new Date().toISOString(),
          retired_at: retired ? new Date().toISOString() : null,
        })
        .execute();
    };
    const search = async (word: string) => {
      const r = await t.call('GET', `/v1/mailboxes/${box.mailbox.id}/search?q=${word}`, box.agentKey);
      expect(r.status).toBe(200);
      return r.body.messages.map((m: { id: string }) => m.id);
    };

    it('indexes each message under the newest live key, skipping retired ones, and finds it by a word', async () => {
      const first = await t.c.inbound.receiver.receive(env(), rawMessage(box.mailbox.address, 'a', 'potassium'));
      expect(first.stored).toHaveLength(1);
      const keys = await t.c.store.db.selectFrom('recipient_index_keys').select('version').where('org_id', '=', t.orgId).execute();
      const newest = Math.max(...keys.map((k) => Number(k.version)));
      expect(await stored(first.stored[0]!.id)).toEqual({ version: newest, status: 'received', indexed: [newest] });

      await addKey(newest + 1, false);
      await addKey(newest + 2, true);
      const second = await t.c.inbound.receiver.receive(env(), rawMessage(box.mailbox.address, 'b', 'glucose'));
      expect(await stored(second.stored[0]!.id)).toEqual({ version: newest + 1, status: 'received', indexed: [newest + 1] });
      expect(await search('glucose')).toEqual([second.stored[0]!.id]);
      expect(await search('potassium')).toEqual([first.stored[0]!.id]);
    });

    it('stores a retransmission once, and the same Message-ID with other bytes again', async () => {
      const raw = rawMessage(box.mailbox.address, 'c', 'sodium');
      expect((await t.c.inbound.receiver.receive(env(), raw)).stored).toHaveLength(1);
      expect(await t.c.inbound.receiver.receive(env(), raw)).toEqual({ stored: [], duplicates: 1 });
      const other = await t.c.inbound.receiver.receive(env(), rawMessage(box.mailbox.address, 'c', 'calcium'));
      expect(other.stored).toHaveLength(1);
    });

    it('holds mail for a mailbox whose mode was tightened after the mailbox was cached, as read in the transaction', async () => {
      await t.c.store.db.updateTable('mailboxes').set({ oversight_mode: 'gated_all' }).where('id', '=', box.mailbox.id).execute();
      const held = await t.c.inbound.receiver.receive(env(), rawMessage(box.mailbox.address, 'd', 'iron'));
      expect((await stored(held.stored[0]!.id)).status).toBe('pending_approval');
      await t.c.store.db.updateTable('mailboxes').set({ oversight_mode: 'autonomous' }).where('id', '=', box.mailbox.id).execute();
      const again = await t.c.inbound.receiver.receive(env(), rawMessage(box.mailbox.address, 'e', 'zinc'));
      expect((await stored(again.stored[0]!.id)).status).toBe('received');
    });
  });
}
