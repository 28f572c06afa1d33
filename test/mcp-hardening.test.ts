import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from './support/wait.js';
import { testDialects } from './support/dialects.js';
import { type McpClient, stdioFromSources } from './support/mcp-client.js';
import { stopChild } from './support/processes.js';
import { type Rpc, rawStdio } from './support/mcp-stdio-raw.js';
import { createTestApp, seedAgent, type TestApp } from './support/test-app.js';

const SEED = 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP';
const LIMIT = 1_048_576; // MAILWARD_BODY_LIMIT_BYTES default

const call = (id: number, name: string, args: unknown) =>
  JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call', params: { name, arguments: args } });

for (const dialect of testDialects()) {
  describe(`MCP hardening (${dialect})`, () => {
    let t: TestApp;
    let port: number;
    let agent: Awaited<ReturnType<typeof seedAgent>>;
    const clients: McpClient[] = [];

    beforeAll(async () => {
      t = await createTestApp(dialect);
      await t.app.listen({ host: '127.0.0.1', port: 0 });
      port = (t.app.server.address() as AddressInfo).port;
      agent = await seedAgent(t, 'Billing Assistant', ['mail:read', 'mail:send', 'vault:read', 'vault:write', 'vault:totp']);
    });

    afterAll(async () => {
      for (const c of clients) await c.close().catch(() => {});
      t?.app.server.closeAllConnections();
      await t?.close();
    });

    const postMcp = async (body: string) => {
      const r = await fetch(`http://127.0.0.1:${port}/mcp`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${agent.agentKey}`,
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
        },
        body,
      });
      return { status: r.status, type: r.headers.get('content-type') ?? '', body: (await r.json()) as Rpc };
    };

    it('refuses an over-long stdio line with a JSON-RPC error naming the HTTP body limit, and keeps serving', {
      timeout: 300_000,
    }, async () => {
      const s = rawStdio({ ...t.env, MAILWARD_API_KEY: agent.agentKey, MAILWARD_LOG_LEVEL: 'warn' });
      try {
        await s.send(
          JSON.stringify({
            jsonrpc: '2.0',
            id: 1,
            method: 'initialize',
            params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
          }),
        );
        expect((await s.answer((a) => a.id === 1)).result.serverInfo.name).toBe('mailward');
        await s.send(JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }));

        let from = s.answers.length;
        await s.send(call(2, 'whoami', { pad: 'x'.repeat(20 * 1024 * 1024) }));
        const huge = await s.answer((a) => a.error !== undefined, from);
        expect(huge.id).toBeNull();
        expect(huge.error?.code).toBe(-32600);
        expect(huge.error?.message).toContain(String(LIMIT));

        // 5 MB: above the limit HTTP enforces, so refused here too.
        from = s.answers.length;
        await s.send(call(3, 'whoami', { pad: 'x'.repeat(5 * 1024 * 1024) }));
        expect((await s.answer((a) => a.error !== undefined, from)).error?.code).toBe(-32600);

        from = s.answers.length;
        await s.send('{"jsonrpc":"2.0","id":4,');
        expect((await s.answer((a) => a.error !== undefined, from)).error?.code).toBe(-32700);

        await s.send(call(5, 'whoami', [1, 2]));
        const bad = await s.answer((a) => a.id === 5);
        expect(bad.error?.code).toBe(-32602);
        expect(bad.error?.message).toContain('/arguments');
        expect(bad.error?.message.length).toBeLessThan(300);
        expect(bad.error?.message).not.toContain('invalid_type');

        // Just under the limit is served.
        await s.send(call(6, 'whoami', { pad: 'x'.repeat(LIMIT - 200) }));
        const near = await s.answer((a) => a.id === 6);
        expect(near.error).toBeUndefined();
        await s.send(call(7, 'whoami', {}));
        expect((await s.answer((a) => a.id === 7)).result.structuredContent.principal.id).toBe(agent.agent.id);
        expect(s.child.exitCode).toBeNull();
        s.child.stdin.end();
        expect(await s.exited).toBe(0);
      } finally {
        await stopChild(s.child);
      }
    });

    it('answers HTTP MCP past the same limit, and bad tools/call params, with JSON-RPC errors', async () => {
      const big = await postMcp(call(1, 'whoami', { pad: 'x'.repeat(5 * 1024 * 1024) }));
      expect(big.status).toBe(413);
      expect(big.body.error?.code).toBe(-32600);
      expect(big.body.error?.message).toContain(String(LIMIT));

      const bad = await postMcp(call(2, 'whoami', [1, 2]));
      expect(bad.body.id).toBe(2);
      expect(bad.body.error?.code).toBe(-32602);
      expect(bad.body.error?.message).not.toContain('invalid_type');

      const broken = await postMcp('{"jsonrpc":');
      expect(broken.status).toBe(400);
      expect(broken.body.error?.code).toBe(-32700);
    });

    it('refuses every code and send over stdio once the revocation of the key has returned', { timeout: 300_000 }, async () => {
      const put = await t.call('PUT', '/v1/vault/secrets/portal-totp', agent.agentKey, {
        kind: 'totp',
        otpauth_uri: `otpauth://totp/Portal:billing?secret=${SEED}&issuer=Portal`,
      });
      expect(put.status).toBe(200);
      const mb = await t.call('POST', '/v1/mailboxes', t.adminKey, {
        agent_id: agent.agent.id,
        display_name: 'Billing',
        oversight_mode: 'autonomous',
      });
      expect(mb.status).toBe(201);
      const k = await t.call('POST', `/v1/agents/${agent.agent.id}/api-keys`, t.adminKey, { scopes: ['mail:send', 'vault:totp'] });
      // A long auth-cache poll makes the window the cache would leave obvious: the check must not depend on it.
      const c = await stdioFromSources({
        ...t.env,
        MAILWARD_API_KEY: k.body.key,
        MAILWARD_AUTH_CACHE_MS: '5000',
        MAILWARD_LOG_LEVEL: 'warn',
      });
      clients.push(c);
      expect((await c.call('get_totp_code', { name: 'portal-totp' })).isError).toBeFalsy();

      let revoked = false;
      let stop = false;
      const after: { ok: boolean; code?: string }[] = [];
      let before = 0;
      const hammer = (async () => {
        while (!stop) {
          const startedAfterRevoke = revoked;
          const r = await c.call('get_totp_code', { name: 'portal-totp' });
          if (startedAfterRevoke) after.push({ ok: !r.isError, code: r.structuredContent?.error?.code });
          else if (!r.isError) before++;
        }
      })();
      await waitFor(() => before >= 5, { timeoutMs: 120_000 });
      expect((await t.call('DELETE', `/v1/api-keys/${k.body.id}`, t.adminKey)).status).toBe(200);
      revoked = true;
      await waitFor(() => after.length >= 20, { timeoutMs: 120_000 });
      stop = true;
      await hammer;
      expect(after.length).toBeGreaterThanOrEqual(20);
      expect(after.filter((a) => a.ok)).toEqual([]);
      expect(new Set(after.map((a) => a.code))).toEqual(new Set(['unauthorized']));

      const send = await c.call('send_email', {
        mailbox_id: mb.body.id,
        to: ['billing@payer.example'],
        subject: 'Claim',
        text: 'Status?',
        idempotency_key: 'after-revoke-1',
      });
      expect(send.structuredContent.error.code).toBe('unauthorized');
      const sent = await t.call('GET', `/v1/mailboxes/${mb.body.id}/messages?direction=outbound`, agent.agentKey);
      expect(sent.body.messages).toEqual([]);

      const denied = await t.call('GET', `/v1/audit/events?action=auth.denied&target_id=${k.body.id}`, t.adminKey);
      expect(denied.body.events.length).toBeGreaterThan(0);
    });
  });
}
