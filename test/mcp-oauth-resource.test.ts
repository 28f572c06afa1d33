import type { AddressInfo } from 'node:net';
import { discoverOAuthProtectedResourceMetadata, extractWWWAuthenticateParams } from '@modelcontextprotocol/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testDialects } from './support/dialects.js';
import { connectHttp, type McpClient } from './support/mcp-client.js';
import { createTestApp, seedAgent, type TestApp } from './support/test-app.js';

const AGENT_SCOPES = ['mail:read', 'mail:send', 'vault:read', 'vault:write', 'vault:reveal', 'vault:totp'];
const rpc = { jsonrpc: '2.0', id: 1, method: 'tools/list' };
const mcpHeaders = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };

// The resource-server side of MCP authorization (MCP 2025-06-18 / 2025-11-25 "Authorization"; RFC 9728; RFC 6750 3).
for (const dialect of testDialects()) {
  describe(`MCP as an OAuth protected resource (${dialect})`, () => {
    let t: TestApp;
    let origin: string;
    let key: string;
    let mcp: McpClient;

    beforeAll(async () => {
      t = await createTestApp(dialect);
      await t.app.listen({ host: '127.0.0.1', port: 0 });
      origin = `http://127.0.0.1:${(t.app.server.address() as AddressInfo).port}`;
      const seeded = await seedAgent(t, 'Refill Assistant');
      key = seeded.agentKey;
      // Send tools are listed only for an agent with a mailbox it may send from.
      const mb = await t.call('POST', '/v1/mailboxes', t.adminKey, {
        agent_id: seeded.agent.id,
        display_name: 'Refills',
        oversight_mode: 'gated_send',
      });
      expect(mb.status).toBe(201);
      mcp = await connectHttp((t.app.server.address() as AddressInfo).port, key);
    });

    afterAll(async () => {
      await mcp?.close().catch(() => {});
      t?.app.server.closeAllConnections();
      await t?.close();
    });

    it('answers a request without credentials with 401 and a Bearer challenge naming the resource metadata', async () => {
      const res = await fetch(`${origin}/mcp`, { method: 'POST', headers: mcpHeaders, body: JSON.stringify(rpc) });
      expect(res.status).toBe(401);
      const challenge = res.headers.get('www-authenticate') ?? '';
      expect(challenge).toBe(`Bearer resource_metadata="${origin}/.well-known/oauth-protected-resource/mcp"`);
      // The SDK client's own parser of the challenge finds the same URL (RFC 9728 5.1) and no error code (RFC 6750 3.1).
      const parsed = extractWWWAuthenticateParams(res);
      expect(parsed.resourceMetadataUrl?.href).toBe(`${origin}/.well-known/oauth-protected-resource/mcp`);
      expect(parsed.error).toBeUndefined();
      expect(((await res.json()) as { code?: string }).code).toBeTruthy();
    });

    it('says invalid_token when the Bearer credential is wrong', async () => {
      const res = await fetch(`${origin}/mcp`, {
        method: 'POST',
        headers: { ...mcpHeaders, authorization: 'Bearer mw_key_nope_nope' },
        body: JSON.stringify(rpc),
      });
      expect(res.status).toBe(401);
      const parsed = extractWWWAuthenticateParams(res);
      expect(parsed.error).toBe('invalid_token');
      expect(parsed.resourceMetadataUrl?.href).toBe(`${origin}/.well-known/oauth-protected-resource/mcp`);
    });

    it('publishes RFC 9728 metadata at the path-inserted and the root well-known URI', async () => {
      for (const path of ['/.well-known/oauth-protected-resource/mcp', '/.well-known/oauth-protected-resource']) {
        const res = await fetch(`${origin}${path}`);
        expect(res.status).toBe(200);
        expect(res.headers.get('content-type')).toMatch(/^application\/json/);
        const body = (await res.json()) as { resource: string; scopes_supported: string[] };
        expect(body).toMatchObject({ resource: `${origin}/mcp`, bearer_methods_supported: ['header'] });
        expect(body.scopes_supported).toEqual(AGENT_SCOPES);
      }
    });

    it('is discovered by the SDK client from the server URL alone', async () => {
      const meta = await discoverOAuthProtectedResourceMetadata(new URL(`${origin}/mcp`));
      expect(meta.resource).toBe(`${origin}/mcp`);
    });

    it('refuses to name an origin from a Host header that is not loopback without MAILWARD_PUBLIC_URL', async () => {
      const res = await t.call('GET', '/.well-known/oauth-protected-resource/mcp', null, undefined, { host: 'evil.example' });
      expect(res.status).toBe(503);
      expect(res.body.code).toBe('public_url_required');
      const refused = await t.call('POST', '/mcp', null, rpc, { host: 'evil.example', accept: mcpHeaders.accept });
      expect(refused.status).toBe(401);
      // No resource_metadata pointing at a host an attacker chose.
      expect(refused.headers['www-authenticate']).toBe('Bearer');
    });

    it('keeps API keys working on /mcp', async () => {
      expect(await mcp.toolNames()).toContain('whoami');
      const who = await mcp.call('whoami');
      expect(who.isError).toBeFalsy();
    });

    it('marks sending tools destructive, read tools read-only and repeatable ones idempotent', async () => {
      const tools = new Map((await mcp.client.listTools()).tools.map((tool) => [tool.name, tool.annotations ?? {}]));
      for (const name of ['send_email', 'reply_email', 'cancel_email']) {
        expect(tools.get(name), name).toMatchObject({ readOnlyHint: false, destructiveHint: true });
      }
      for (const name of ['whoami', 'list_mailboxes', 'check_inbox', 'read_email', 'get_thread', 'search_email', 'get_email_status']) {
        expect(tools.get(name), name).toMatchObject({ readOnlyHint: true });
      }
      for (const name of ['tag_email', 'cancel_email']) expect(tools.get(name), name).toMatchObject({ idempotentHint: true });
      // A retried send_email without the same idempotency_key would send again: not idempotent by its arguments alone.
      expect(tools.get('send_email')).toMatchObject({ idempotentHint: false });
    });
  });
}

describe('MCP protected resource behind MAILWARD_PUBLIC_URL', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp('sqlite', { env: { MAILWARD_PUBLIC_URL: 'https://mail.hospital.example' } });
  });
  afterAll(async () => {
    await t?.close();
  });

  it('names the public origin in the metadata and the challenge, whatever the Host header', async () => {
    const meta = await t.call('GET', '/.well-known/oauth-protected-resource/mcp', null, undefined, { host: 'internal:8025' });
    expect(meta.status).toBe(200);
    expect(meta.body.resource).toBe('https://mail.hospital.example/mcp');
    const res = await t.call('POST', '/mcp', null, rpc, { host: 'internal:8025', accept: mcpHeaders.accept });
    expect(res.status).toBe(401);
    expect(res.headers['www-authenticate']).toBe(
      'Bearer resource_metadata="https://mail.hospital.example/.well-known/oauth-protected-resource/mcp"',
    );
  });
});
