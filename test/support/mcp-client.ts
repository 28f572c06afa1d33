import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { type CallToolResult, Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio';
import { Client as Client1x } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport as StreamableHTTPClientTransport1x } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { Dialect } from '../../src/store/db.js';
import { seedMailbox } from './outbound-sink.js';
import { repoRoot } from './processes.js';
import { createTestApp } from './test-app.js';

/**
 * Which protocol era the client speaks: `legacy` is the 2025 initialize handshake (the SDK 2.x client's default),
 * `modern` probes with server/discover and speaks 2026-07-28 (per-request `_meta`, no initialize).
 */
export type McpEra = 'legacy' | 'modern';

export type McpClient = {
  client: Client;
  call: (
    name: string,
    args?: Record<string, unknown>,
    opts?: { timeoutMs?: number },
  ) => Promise<CallToolResult & { structuredContent?: any }>;
  toolNames: () => Promise<string[]>;
  close: () => Promise<void>;
};

const wrap = (client: Client): McpClient => ({
  client,
  call: async (name, args = {}, opts = {}) =>
    (await client.callTool({ name, arguments: args }, { timeout: opts.timeoutMs ?? 60_000 })) as CallToolResult & {
      structuredContent?: any;
    },
  toolNames: async () => (await client.listTools()).tools.map((t) => t.name).sort(),
  close: () => client.close(),
});

export const newClient = (era: McpEra = 'legacy') =>
  new Client({ name: 'mailward-test', version: '1.0.0' }, era === 'modern' ? { versionNegotiation: { mode: 'auto' } } : {});

/** The SDK 2.x client over streamable HTTP, with the key as a Bearer header (the README's HTTP configuration). */
export const connectHttp = async (port: number, key: string, era: McpEra = 'legacy'): Promise<McpClient> => {
  const client = newClient(era);
  const transport = new StreamableHTTPClientTransport(new URL(`http://127.0.0.1:${port}/mcp`), {
    requestInit: { headers: { Authorization: `Bearer ${key}` } },
  });
  await client.connect(transport);
  return wrap(client);
};

/** A 2025-era client as deployed agents run it today: the MCP SDK 1.x client (the initialize handshake). */
export const connectHttp1x = async (port: number, key: string) => {
  const client = new Client1x({ name: 'mailward-test-1x', version: '1.0.0' });
  await client.connect(
    new StreamableHTTPClientTransport1x(new URL(`http://127.0.0.1:${port}/mcp`), {
      requestInit: { headers: { Authorization: `Bearer ${key}` } },
    }),
  );
  return client;
};

/** The SDK 2.x client spawning `command args` with `env` over stdio (stderr collected, never mixed into the protocol). */
export const connectStdio = async (command: string, args: string[], env: Record<string, string>, era: McpEra = 'legacy') => {
  const client = newClient(era);
  const transport = new StdioClientTransport({
    command,
    args,
    cwd: repoRoot,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env },
    stderr: 'pipe',
  });
  let stderr = '';
  transport.stderr?.on('data', (d) => {
    stderr += d;
  });
  await client.connect(transport);
  return { ...wrap(client), stderr: () => stderr };
};

/** `mailward mcp` from the TypeScript sources (what runCli runs). */
export const stdioFromSources = (env: Record<string, string>, era: McpEra = 'legacy') =>
  connectStdio(process.execPath, ['--import', 'tsx', path.join(repoRoot, 'src/cli/main.ts'), 'mcp'], env, era);

/**
 * A test app listening on a loopback port, an autonomous mailbox with its agent, and that agent's MCP
 * client over streamable HTTP: for tests that check REST and MCP answer alike. `close` ends all three.
 */
export const appWithMcpAgent = async (dialect: Dialect) => {
  const t = await createTestApp(dialect);
  await t.app.listen({ host: '127.0.0.1', port: 0 });
  const box = await seedMailbox(t, 'autonomous');
  const mcp = await connectHttp((t.app.server.address() as AddressInfo).port, box.agentKey);
  const close = async () => {
    await mcp.close().catch(() => {});
    t.app.server.closeAllConnections();
    await t.close();
  };
  return { t, box, mcp, close };
};
