import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import type { Dialect } from '../../src/store/db.js';
import { seedMailbox } from './outbound-sink.js';
import { repoRoot } from './processes.js';
import { createTestApp } from './test-app.js';

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
    (await client.callTool({ name, arguments: args }, undefined, { timeout: opts.timeoutMs ?? 60_000 })) as CallToolResult & {
      structuredContent?: any;
    },
  toolNames: async () => (await client.listTools()).tools.map((t) => t.name).sort(),
  close: () => client.close(),
});

/** The SDK's own client over streamable HTTP, with the key as a Bearer header (the README's HTTP configuration). */
export const connectHttp = async (port: number, key: string): Promise<McpClient> => {
  const client = new Client({ name: 'mailward-test', version: '1.0.0' });
  const transport = new StreamableHTTPClientTransport(new URL(`http://127.0.0.1:${port}/mcp`), {
    requestInit: { headers: { Authorization: `Bearer ${key}` } },
  });
  await client.connect(transport);
  return wrap(client);
};

/** The SDK's own client spawning `command args` with `env` over stdio (stderr collected, never mixed into the protocol). */
export const connectStdio = async (command: string, args: string[], env: Record<string, string>) => {
  const client = new Client({ name: 'mailward-test', version: '1.0.0' });
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
export const stdioFromSources = (env: Record<string, string>) =>
  connectStdio(process.execPath, ['--import', 'tsx', path.join(repoRoot, 'src/cli/main.ts'), 'mcp'], env);

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
