import { randomBytes } from 'node:crypto';
import type { ApiKeysService } from '../identity/api-keys-service.js';
import type { RequestContext } from '../identity/principal.js';
import type { RateLimiter } from '../identity/rate-limiter.js';
import { AppError } from '../kernel/errors.js';
import type { Logger } from '../kernel/log.js';
import { serveStdio } from '@modelcontextprotocol/server/stdio';
import { createMcpServer } from './mcp-server.js';
import type { McpDeps } from './mcp-tools.js';
import { BoundedStdioTransport } from './stdio-transport.js';

const REQUEST_PREFIX = `mcp-${randomBytes(6).toString('hex')}-`;
let counter = 0;

/** What the stdio server needs, handed over by the CLI (STYLE.md: adapters take narrow dependencies, never the container). */
export type StdioServerDeps = {
  deps: McpDeps;
  apiKeys: Pick<ApiKeysService, 'authenticate'>;
  rateLimiter: Pick<RateLimiter, 'hit'>;
  logger: Pick<Logger, 'info'>;
  /** One size limit for MCP whichever transport carries it: the HTTP body limit. */
  maxLineBytes: number;
};

/**
 * Serves MCP on stdin/stdout for the key in `rawKey` until stdin closes or a
 * signal arrives. The key is checked at start (a wrong key fails at once) and
 * again, with the per-key rate limit, on every request, so a revoked key
 * stops working mid-session exactly as it does on REST.
 * Throws 401 unauthorized when the key is missing or invalid.
 */
export const runStdioServer = async (c: StdioServerDeps, rawKey: string | undefined): Promise<void> => {
  const meta = () => ({ requestId: `${REQUEST_PREFIX}${(++counter).toString(16)}`, clientIp: null });
  await c.apiKeys.authenticate(rawKey, meta());

  const context = async (): Promise<RequestContext> => {
    const m = meta();
    const principal = await c.apiKeys.authenticate(rawKey, m);
    const d = await c.rateLimiter.hit(principal.keyId);
    if (!d.allowed) {
      throw new AppError('rate_limited', 429, `Rate limit of ${d.limit} requests per minute exceeded for this key.`, {
        temporary: true,
        extra: { retry_after: d.resetSeconds },
      });
    }
    return { principal, ...m };
  };

  // Requests still being handled when stdin ends (a client that writes and closes) get their answers; waits end early.
  const pending = new Set<Promise<unknown>>();
  const track = (work: Promise<unknown>) => {
    pending.add(work);
    work.finally(() => pending.delete(work)).catch(() => {});
  };
  const ending = new AbortController();
  const transport = new BoundedStdioTransport({ input: process.stdin, output: process.stdout, maxLineBytes: c.maxLineBytes });
  const closed = new Promise<void>((resolve) => {
    process.stdin.once('end', () => resolve());
    process.stdin.once('close', () => resolve());
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
  // The SDK decides the connection's era from its first message (a 2025 initialize, or a 2026-07-28 request with its
  // version in _meta, server/discover included) and pins one server from this factory to it.
  const handle = serveStdio(() => createMcpServer(c.deps, { context, signal: ending.signal, track }), { transport });
  c.logger.info({ transport: 'stdio' }, 'mailward mcp ready');
  await closed;
  ending.abort();
  await Promise.allSettled([...pending]);
  // The protocol layer writes each answer just after its handler settles.
  await new Promise((resolve) => setImmediate(resolve));
  await handle.close().catch(() => {});
};
