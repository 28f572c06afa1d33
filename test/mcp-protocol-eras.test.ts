import type { AddressInfo } from 'node:net';
import { ProtocolErrorCode } from '@modelcontextprotocol/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testDialects } from './support/dialects.js';
import { connectHttp, connectHttp1x, stdioFromSources } from './support/mcp-client.js';
import { rawStdio } from './support/mcp-stdio-raw.js';
import { createTestApp, seedAgent, type TestApp } from './support/test-app.js';

const META = (version: string) => ({
  'io.modelcontextprotocol/protocolVersion': version,
  'io.modelcontextprotocol/clientInfo': { name: 'modern-test-client', version: '1.0.0' },
  'io.modelcontextprotocol/clientCapabilities': {},
});

// Both eras on one endpoint and one server instance: a 2025-era client (the MCP SDK 1.x client, initialize at
// 2025-06-18 on the wire) and a 2026-07-28 client (the MCP SDK 2.x client negotiating with server/discover), both served
// by the MCP SDK 2.x server. The Inspector 2.x CLI speaks both too (test/mcp-inspector.test.ts).
for (const dialect of testDialects()) {
  describe(`MCP protocol eras on one endpoint (${dialect})`, () => {
    let t: TestApp;
    let url: string;
    let port: number;
    let key: string;
    let agentId: string;
    const post = async (body: unknown, headers: Record<string, string> = {}, auth: string | null = key) => {
      const res = await fetch(url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
          ...(auth ? { authorization: `Bearer ${auth}` } : {}),
          ...headers,
        },
        body: JSON.stringify(body),
      });
      return { status: res.status, body: (await res.json()) as any };
    };
    // SEP-2243: a 2026-07-28 POST names its version and method in headers as well as in the body.
    const modern = (id: number, method: string, params: Record<string, unknown> = {}, version = '2026-07-28') =>
      post(
        { jsonrpc: '2.0', id, method, params: { ...params, _meta: META(version) } },
        {
          'mcp-protocol-version': version,
          'mcp-method': method,
          ...(typeof params.name === 'string' ? { 'mcp-name': params.name } : {}),
        },
      );

    beforeAll(async () => {
      t = await createTestApp(dialect);
      await t.app.listen({ host: '127.0.0.1', port: 0 });
      port = (t.app.server.address() as AddressInfo).port;
      url = `http://127.0.0.1:${port}/mcp`;
      const seeded = await seedAgent(t, 'Refill Assistant');
      key = seeded.agentKey;
      agentId = seeded.agent.id;
    });

    afterAll(async () => {
      t?.app.server.closeAllConnections();
      await t?.close();
    });

    it('answers a 2025-06-18 initialize with 2025-06-18 in one JSON body, and an SDK 1.x client lists and calls tools', async () => {
      const init = await post({
        jsonrpc: '2.0',
        id: 1,
        method: 'initialize',
        params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'old-client', version: '1.0.0' } },
      });
      expect(init.status).toBe(200);
      expect(init.body.result.protocolVersion).toBe('2025-06-18');
      const listed = await post({ jsonrpc: '2.0', id: 2, method: 'tools/list' }, { 'mcp-protocol-version': '2025-06-18' });
      expect(listed.body.result.tools.map((x: { name: string }) => x.name)).toContain('whoami');
      expect(listed.body.result.resultType).toBeUndefined();
      const old = await connectHttp1x(port, key);
      try {
        expect(old.getServerVersion()?.name).toBe('mailward');
        expect((await old.listTools()).tools.map((x) => x.name)).toContain('whoami');
        const who = await old.callTool({ name: 'whoami', arguments: {} });
        expect((who.structuredContent as any).principal.id).toBe(agentId);
      } finally {
        await old.close();
      }
    });

    it('serves an SDK 2.x client that negotiates 2026-07-28 with server/discover, next to the 1.x client on the same server', async () => {
      const now = await connectHttp(port, key, 'modern');
      const old = await connectHttp1x(port, key);
      try {
        expect(now.client.getNegotiatedProtocolVersion()).toBe('2026-07-28');
        expect(now.client.getServerVersion()?.name).toBe('mailward');
        expect(now.client.getInstructions()).toMatch(/whoami/);
        expect(await now.toolNames()).toContain('whoami');
        const [a, b] = await Promise.all([now.call('whoami'), old.callTool({ name: 'whoami', arguments: {} })]);
        expect(a.structuredContent.principal.id).toBe(agentId);
        expect((b.structuredContent as any).principal.id).toBe(agentId);
        const bad = await now.call('read_email', { email_id: 'not-an-id' });
        expect(bad.isError).toBe(true);
        expect(bad.structuredContent.error.code).toBe('validation_failed');
      } finally {
        await now.close();
        await old.close();
      }
    });

    it('never claims 2026-07-28 through initialize: that era has no handshake', async () => {
      const init = await post({
        jsonrpc: '2.0',
        id: 1,
        method: 'initialize',
        params: { protocolVersion: '2026-07-28', capabilities: {}, clientInfo: { name: 'confused', version: '1.0.0' } },
      });
      expect(init.body.result.protocolVersion).toBe('2025-11-25');
    });

    it('answers server/discover from a 2026-07-28 client with every version it speaks', async () => {
      const d = await modern(1, 'server/discover');
      expect(d.status).toBe(200);
      expect(d.body.id).toBe(1);
      expect(d.body.result).toMatchObject({
        resultType: 'complete',
        capabilities: { tools: {} },
        // 2026-07-28: every result names the server in _meta.
        _meta: { 'io.modelcontextprotocol/serverInfo': { name: 'mailward' } },
      });
      // supportedVersions lists the modern revisions; 2025-era versions are negotiated through initialize.
      expect(d.body.result.supportedVersions).toContain('2026-07-28');
      expect(d.body.result.instructions).toMatch(/whoami/);
    });

    it('serves tools/list and tools/call to a 2026-07-28 client without initialize, with resultType (and cache fields on the list)', async () => {
      const listed = await modern(2, 'tools/list');
      expect(listed.status).toBe(200);
      expect(listed.body.result.resultType).toBe('complete');
      // SEP-2549 CacheableResult, required of list results in 2026-07-28: not cached, private to the caller.
      expect(listed.body.result).toMatchObject({ ttlMs: 0, cacheScope: 'private' });
      expect(listed.body.result.tools.map((x: { name: string }) => x.name)).toContain('whoami');
      const who = await modern(3, 'tools/call', { name: 'whoami', arguments: {} });
      expect(who.status).toBe(200);
      expect(who.body.result.resultType).toBe('complete');
      expect(who.body.result.isError).toBeFalsy();
      expect(who.body.result.structuredContent.principal.id).toBe(agentId);
      expect(who.body.result.ttlMs).toBeUndefined();
    });

    it('refuses a protocol version it does not speak with UnsupportedProtocolVersionError naming the supported one', async () => {
      const r = await modern(4, 'tools/list', {}, '2027-01-01');
      expect(r.status).toBe(400);
      expect(r.body.id).toBe(4);
      expect(r.body.error.code).toBe(ProtocolErrorCode.UnsupportedProtocolVersion);
      expect(r.body.error.data.supported).toEqual(['2026-07-28']);
    });

    it('keeps discovery behind authentication like every other call', async () => {
      const r = await post(
        { jsonrpc: '2.0', id: 5, method: 'server/discover', params: { _meta: META('2026-07-28') } },
        { 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'server/discover' },
        null,
      );
      expect(r.status).toBe(401);
    });
  });
}

describe('MCP protocol eras over stdio', () => {
  let t: TestApp;
  let key: string;
  let agentId: string;
  beforeAll(async () => {
    t = await createTestApp('sqlite');
    const seeded = await seedAgent(t, 'Refill Assistant');
    key = seeded.agentKey;
    agentId = seeded.agent.id;
  });
  afterAll(async () => {
    await t?.close();
  });

  // Over stdio the era is the connection's (the SDK pins it on the first message), so each era gets its own process.
  it('answers server/discover and 2026-07-28 tools/call without initialize, and refuses a version it does not speak', {
    timeout: 300_000,
  }, async () => {
    const s = rawStdio({ ...t.env, MAILWARD_API_KEY: key, MAILWARD_LOG_LEVEL: 'warn' });
    try {
      const line = (id: number, method: string, params: Record<string, unknown> = {}, version = '2026-07-28') =>
        JSON.stringify({ jsonrpc: '2.0', id, method, params: { ...params, _meta: META(version) } });
      // The opening message picks the era: one naming a revision this server does not speak is refused, and the
      // connection stays open for one it does.
      await s.send(line(3, 'tools/list', {}, '2030-01-01'));
      expect((await s.answer((a) => a.id === 3)).error?.code).toBe(ProtocolErrorCode.UnsupportedProtocolVersion);
      await s.send(line(1, 'server/discover'));
      const d = await s.answer((a) => a.id === 1);
      expect(d.result.supportedVersions).toContain('2026-07-28');
      expect(d.result.resultType).toBe('complete');
      await s.send(line(2, 'tools/call', { name: 'whoami', arguments: {} }));
      const who = await s.answer((a) => a.id === 2);
      expect(who.result.resultType).toBe('complete');
      expect(who.result.structuredContent.principal.id).toBe(agentId);
    } finally {
      s.child.kill('SIGTERM');
      await s.exited;
    }
  });

  it('serves the SDK 2.x client in both eras: 2026-07-28 after server/discover, and a 2025 initialize', { timeout: 300_000 }, async () => {
    for (const era of ['modern', 'legacy'] as const) {
      const c = await stdioFromSources({ ...t.env, MAILWARD_API_KEY: key, MAILWARD_LOG_LEVEL: 'warn' }, era);
      try {
        expect(c.client.getNegotiatedProtocolVersion()).toBe(era === 'modern' ? '2026-07-28' : '2025-11-25');
        expect((await c.call('whoami')).structuredContent.principal.id).toBe(agentId);
      } finally {
        await c.close();
      }
    }
  });
});
