import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testDialects } from './support/dialects.js';
import { appWithMcpAgent, type McpClient } from './support/mcp-client.js';
import { seedMailbox } from './support/outbound-sink.js';
import type { TestApp } from './support/test-app.js';

const LAB = 'results@lab.example';
const CRLF = '\r\n';

/** A raw inbound message whose Message-ID header carries exactly these bytes. */
const rawWithMessageId = (to: string, messageId: Buffer, subject: string) =>
  Buffer.concat([
    Buffer.from(`From: Lab <${LAB}>${CRLF}To: ${to}${CRLF}Subject: ${subject}${CRLF}Message-ID: `),
    messageId,
    Buffer.from(
      `${CRLF}Date: Mon, 23 Nov 2026 10:00:00 +0000${CRLF}MIME-Version: 1.0${CRLF}Content-Type: text/plain; charset=utf-8${CRLF}${CRLF}Results are ready.${CRLF}`,
    ),
  ]);

const problemOf = (r: { status: number; body: any; headers: Record<string, unknown> }) => ({
  status: r.status,
  code: r.body?.code as string | undefined,
  type: String(r.headers['content-type'] ?? ''),
});

for (const dialect of testDialects()) {
  describe(`input validation at the edge (${dialect})`, () => {
    let t: TestApp;
    let box: Awaited<ReturnType<typeof seedMailbox>>;
    let mcp: McpClient;
    let close: (() => Promise<void>) | undefined;

    beforeAll(async () => {
      ({ t, box, mcp, close } = await appWithMcpAgent(dialect));
    });
    afterAll(async () => {
      await close?.();
    });

    const count = async (table: 'audit_legal_holds' | 'departments') =>
      Number(
        (
          await t.c.store.db
            .selectFrom(table)
            .select((eb) => eb.fn.countAll().as('n'))
            .executeTakeFirstOrThrow()
        ).n,
      );

    it('refuses NUL in a legal-hold matter, the audit filters and the api-key filter with 400 nul_not_allowed, storing nothing', async () => {
      const holds = await count('audit_legal_holds');
      const cases = [
        await t.call('POST', '/v1/audit/legal-holds', t.adminKey, { matter: 'Case\u0000 42' }),
        await t.call('GET', '/v1/audit/events?action=email%00.sent', t.adminKey),
        await t.call('GET', '/v1/audit/events?actor_id=hum_%00', t.adminKey),
        await t.call('GET', '/v1/audit/events?target_id=%00', t.adminKey),
        await t.call('GET', '/v1/api-keys?principal_id=hum_%00', t.adminKey),
        await t.call('GET', `/v1/contacts/${encodeURIComponent('a\u0000b@x.example')}/consent`, t.adminKey),
        await t.call('PUT', '/v1/vault/secrets/portal', box.agentKey, { kind: 'note', value: 'x', metadata: { 'k\u0000': 'v' } }),
      ];
      for (const r of cases)
        expect(problemOf(r)).toEqual({ status: 400, code: 'nul_not_allowed', type: expect.stringContaining('application/problem+json') });
      expect(await count('audit_legal_holds')).toBe(holds);
    });

    it('refuses lone surrogates in JSON bodies (values and keys) with 400 invalid_unicode, storing nothing', async () => {
      const deps = await count('departments');
      const cases = [
        await t.call('POST', '/v1/departments', t.adminKey, { name: 'Cardio\ud800logy' }),
        await t.call('POST', '/v1/departments', t.adminKey, '{"name":"Cardio\\udc00logy"}'),
        await t.call('POST', '/v1/audit/legal-holds', t.adminKey, { matter: 'Case \udfff' }),
        await t.call('PUT', '/v1/vault/secrets/portal', box.agentKey, { kind: 'note', value: 'x', metadata: { 'k\ud83d': 'v' } }),
        await t.call('POST', `/v1/mailboxes/${box.mailbox.id}/send`, box.agentKey, {
          to: ['pat@example.org'],
          subject: 'Hi',
          text: 'Fine \ud83d there',
        }),
      ];
      for (const r of cases)
        expect(problemOf(r)).toEqual({ status: 400, code: 'invalid_unicode', type: expect.stringContaining('application/problem+json') });
      expect(await count('departments')).toBe(deps);
      // A well-formed surrogate pair is ordinary text and round-trips.
      const ok = await t.call('POST', '/v1/departments', t.adminKey, { name: 'Cardiology \ud83d\ude00' });
      expect(ok.status).toBe(201);
      expect((await t.call('GET', `/v1/departments/${ok.body.id}`, t.adminKey)).body.name).toBe('Cardiology \u{1f600}');
    });

    it('refuses invalid UTF-8 percent-encoding in query strings and path params with 400 problem+json', async () => {
      for (const url of ['/v1/audit/events?action=%ED%A0%80', '/v1/audit/events?action=%FF', '/v1/api-keys?principal_id=%C3']) {
        expect(problemOf(await t.call('GET', url, t.adminKey))).toEqual({
          status: 400,
          code: 'invalid_unicode',
          type: expect.stringContaining('application/problem+json'),
        });
      }
      const path = await t.call('GET', '/v1/contacts/%ED%A0%80%40x.example/consent', t.adminKey);
      expect(path.status).toBe(400);
      expect(path.headers['content-type']).toMatch(/application\/problem\+json/);
      expect(path.body.code).toBe('invalid_unicode');
    });

    it('refuses NUL and lone surrogates in MCP tool arguments with validation codes, as REST does', async () => {
      const nul = await mcp.call('check_inbox', { mailbox_id: box.mailbox.id, subject: 'a\u0000b' });
      expect(nul.isError).toBe(true);
      expect(nul.structuredContent.error).toMatchObject({ code: 'nul_not_allowed', status: 400 });
      const lone = await mcp.call('search_email', { mailbox_id: box.mailbox.id, q: 'x\udc00' });
      expect(lone.isError).toBe(true);
      expect(lone.structuredContent.error).toMatchObject({ code: 'invalid_unicode', status: 400 });
    });

    it('answers 400 invalid_cursor for a cursor no route issued, on every cursor-taking route', async () => {
      for (const url of [
        '/v1/audit/events?cursor=zzz',
        `/v1/mailboxes/${box.mailbox.id}/messages?cursor=zzz`,
        `/v1/mailboxes/${box.mailbox.id}/search?q=x&cursor=zzz`,
      ]) {
        const r = await t.call('GET', url, t.adminKey);
        expect(problemOf(r), url).toEqual({
          status: 400,
          code: 'invalid_cursor',
          type: expect.stringContaining('application/problem+json'),
        });
      }
      const page = await t.call('GET', '/v1/audit/events?limit=1', t.adminKey);
      expect(page.status).toBe(200);
      const next = await t.call('GET', `/v1/audit/events?limit=1&cursor=${page.body.next_cursor}`, t.adminKey);
      expect(next.status).toBe(200);
      expect(next.body.events[0].seq).toBeGreaterThan(page.body.events[0].seq);
      const inbox = await mcp.call('check_inbox', { mailbox_id: box.mailbox.id, cursor: 'zzz' });
      expect(inbox.structuredContent.error).toMatchObject({ code: 'invalid_cursor' });
    });

    it('answers 400 for a message status filter that is no message status', async () => {
      const r = await t.call('GET', `/v1/mailboxes/${box.mailbox.id}/messages?status=bogus`, box.agentKey);
      expect(problemOf(r)).toEqual({ status: 400, code: 'validation_failed', type: expect.stringContaining('application/problem+json') });
      expect((await t.call('GET', `/v1/mailboxes/${box.mailbox.id}/messages?status=quarantined`, box.agentKey)).status).toBe(200);
      expect((await t.call('GET', `/v1/mailboxes/${box.mailbox.id}/messages?status=delivered`, box.agentKey)).status).toBe(200);
      expect((await t.call('GET', '/v1/approvals?status=bogus', t.adminKey)).status).toBe(400);
      const inbox = await mcp.call('check_inbox', { mailbox_id: box.mailbox.id, status: 'bogus' });
      expect(inbox.structuredContent.error).toMatchObject({ code: 'validation_failed' });
    });

    it('takes only plain decimal digits as integers in query strings and path params', async () => {
      for (const bad of ['1e3', '1e1', '0x10', '+5', '5.0', ' 5', '']) {
        const q = encodeURIComponent(bad);
        expect((await t.call('GET', `/v1/audit/events?limit=${q}`, t.adminKey)).status, `limit=${bad}`).toBe(400);
        expect((await t.call('GET', `/v1/mailboxes/${box.mailbox.id}/messages?limit=${q}`, box.agentKey)).status, `limit=${bad}`).toBe(400);
        expect((await t.call('GET', `/v1/audit/consistency?first=${q}`, t.adminKey)).status, `first=${bad}`).toBe(400);
        expect((await t.call('GET', `/v1/audit/events/1/proof?tree_size=${q}`, t.adminKey)).status, `tree_size=${bad}`).toBe(400);
      }
      expect((await t.call('GET', '/v1/audit/events/1e0/proof', t.adminKey)).status).toBe(400);
      expect((await t.call('GET', '/v1/audit/events?limit=2', t.adminKey)).body.events).toHaveLength(2);
      expect((await t.call('GET', '/v1/audit/events/1/proof', t.adminKey)).status).toBe(200);
    });

    it('refuses an address whose local part exceeds 64 octets (RFC 5321 4.5.3.1.1) and accepts 64', async () => {
      const at = (n: number) => `${'a'.repeat(n)}@example.org`;
      const send = (to: string) =>
        t.call('POST', `/v1/mailboxes/${box.mailbox.id}/send`, box.agentKey, { to: [to], subject: 'Hi', text: 'Hello' });
      expect((await send(at(65))).status).toBe(400);
      expect((await send(at(64))).status).toBe(202);
      const s = await seedMailbox(t, 'autonomous');
      const mbx = await t.call('PATCH', `/v1/mailboxes/${s.mailbox.id}`, t.adminKey, { forward_to: at(65) });
      expect(mbx.status).toBe(400);
      expect((await t.call('PATCH', `/v1/mailboxes/${s.mailbox.id}`, t.adminKey, { forward_to: at(64) })).status).toBe(200);
      expect(
        (
          await t.call('PUT', `/v1/contacts/${at(65)}/consent`, t.adminKey, {
            electronic: true,
            categories: ['general'],
            source: 'paper_form',
          })
        ).status,
      ).toBe(400);
    });

    it('suppresses a retransmitted inbound message whose Message-ID holds NUL or invalid UTF-8', async () => {
      const ids = [
        Buffer.from('<abc\u0000def@lab.example>'),
        Buffer.from([0x3c, 0x61, 0xff, 0xfe, 0x40, 0x6c, 0x61, 0x62, 0x3e]),
        Buffer.from('<caf\u00e9@lab.example>'),
        Buffer.from([0xed, 0xa0, 0x80]),
      ];
      const env = { mailFrom: LAB, rcptTo: [box.mailbox.address], clientIp: '127.0.0.1', helo: 'lab.example', tls: false };
      for (const [i, id] of ids.entries()) {
        const raw = rawWithMessageId(box.mailbox.address, id, `Retransmitted ${i}`);
        const first = await t.c.inbound.receiver.receive(env, raw);
        expect(first.stored).toHaveLength(1);
        const again = await t.c.inbound.receiver.receive(env, raw);
        expect(again, `id ${i}`).toEqual({ stored: [], duplicates: 1 });
        // Another message with the same broken id is not a duplicate: the raw bytes differ.
        const other = await t.c.inbound.receiver.receive(env, rawWithMessageId(box.mailbox.address, id, `Other ${i}`));
        expect(other.stored).toHaveLength(1);
      }
    });
  });
}
