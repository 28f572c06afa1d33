import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testDialects } from './support/dialects.js';
import { appWithMcpAgent, type McpClient } from './support/mcp-client.js';
import type { seedMailbox } from './support/outbound-sink.js';
import type { TestApp } from './support/test-app.js';

const SINCE = '2026-11-24T10:00:00.000Z';
const UNTIL = '2026-11-23T10:00:00.000Z';

// STYLE.md, Dependency direction: REST and MCP normalise list and search filters through one function, so they refuse alike.
for (const dialect of testDialects()) {
  describe(`mail list and search filters, REST and MCP alike (${dialect})`, () => {
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

    it('answers invalid_filter for since >= until on the REST list, check_inbox and search_email', async () => {
      for (const [since, until] of [
        [SINCE, UNTIL],
        [SINCE, SINCE],
      ]) {
        const rest = await t.call('GET', `/v1/mailboxes/${box.mailbox.id}/messages?since=${since}&until=${until}`, box.agentKey);
        expect(rest.status).toBe(400);
        expect(rest.body.code).toBe('invalid_filter');
        const inbox = await mcp.call('check_inbox', { mailbox_id: box.mailbox.id, since, until });
        expect(inbox.isError).toBe(true);
        expect(inbox.structuredContent.error).toMatchObject({ code: 'invalid_filter', status: 400 });
        const search = await mcp.call('search_email', { mailbox_id: box.mailbox.id, q: 'x', since, until });
        expect(search.isError).toBe(true);
        expect(search.structuredContent.error).toMatchObject({ code: 'invalid_filter', status: 400 });
      }
    });

    it('compares since and until as instants whatever their offsets', async () => {
      // 12:00+02:00 is 10:00Z: the same instant as until, so the window is empty and refused.
      const inbox = await mcp.call('check_inbox', { mailbox_id: box.mailbox.id, since: '2026-11-23T12:00:00+02:00', until: UNTIL });
      expect(inbox.structuredContent.error).toMatchObject({ code: 'invalid_filter' });
      const ok = await mcp.call('check_inbox', { mailbox_id: box.mailbox.id, since: '2026-11-23T11:00:00+02:00', until: UNTIL });
      expect(ok.isError).toBeFalsy();
      expect(ok.structuredContent.messages).toEqual([]);
    });

    it('answers invalid_cursor for a cursor that names no message, on REST and MCP', async () => {
      const cursor = Buffer.from('not-a-message').toString('base64url');
      const rest = await t.call('GET', `/v1/mailboxes/${box.mailbox.id}/messages?cursor=${cursor}`, box.agentKey);
      expect(rest.body.code).toBe('invalid_cursor');
      const inbox = await mcp.call('check_inbox', { mailbox_id: box.mailbox.id, cursor });
      expect(inbox.structuredContent.error).toMatchObject({ code: 'invalid_cursor' });
    });
  });
}
