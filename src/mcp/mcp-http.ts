import { Readable } from 'node:stream';
import type { ReadableStream as NodeReadableStream } from 'node:stream/web';
import { createMcpHandler, isLegacyRequest, WebStandardStreamableHTTPServerTransport } from '@modelcontextprotocol/server';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { AppError } from '../kernel/errors.js';
import { bearerChallenge, resourceMetadataRoutes, withBearerChallenge } from './mcp-resource-metadata.js';
import { createMcpServer, type McpSession } from './mcp-server.js';
import { type McpDeps, TOOL_BY_NAME } from './mcp-tools.js';
import type { Principal } from '../identity/principal.js';
import { INVALID_REQUEST, PARSE_ERROR } from './stdio-transport.js';
import { createAbortable } from './wait-for-email.js';

/**
 * What the REST edge lends the MCP endpoint: its Bearer key check with the per-key rate limit, and its
 * problem+json mapping. `app/` hands them over, so REST and MCP are mounted side by side and neither
 * imports the other (STYLE.md "Dependency direction").
 */
export type McpHttpEdge = {
  authHook: (req: FastifyRequest, reply: FastifyReply) => Promise<unknown>;
  errorHandler: (err: FastifyError, req: FastifyRequest, reply: FastifyReply) => unknown;
  sendProblem: (reply: FastifyReply, req: FastifyRequest, status: number, code: string, detail: string) => unknown;
  /** OpenAPI: the REST edge's problem+json response declarations for these statuses. */
  problems?: (...statuses: number[]) => Record<number, unknown>;
};

export type McpHttpOptions = {
  deps: McpDeps;
  edge: McpHttpEdge;
  /** MAILWARD_PUBLIC_URL: the origin of the resource identifier `<origin>/mcp` (RFC 9728); unset, a loopback Host. */
  publicUrl?: string | undefined;
  /** Issuers of the authorization servers whose tokens /mcp accepts (RFC 9728 `authorization_servers`). */
  authorizationServers?: (origin: string) => string[];
  /** Requests one key may have in flight at once (a waiting wait_for_email counts); 429 beyond. */
  maxConcurrentPerKey?: number;
};

export const DEFAULT_MCP_CONCURRENCY_PER_KEY = 8;

/** Fixed: the transport only reads it for request metadata, and a client's Host header must not flow anywhere. */
const MCP_URL = 'http://mailward.local/mcp';

type Served = { session: McpSession; server?: ReturnType<typeof createMcpServer> };

/** The fastify request as a web Request for the SDK (the body goes along parsed). */
const webRequestOf = (req: FastifyRequest) => {
  const headers = new Headers();
  for (const [k, v] of Object.entries(req.headers)) {
    if (v === undefined) continue;
    if (Array.isArray(v)) for (const x of v) headers.append(k, x);
    else headers.set(k, v);
  }
  return new Request(MCP_URL, { method: 'POST', headers });
};

/** The scope a tools/call needs that the principal lacks (the tool's own access rule says which), if any. */
const missingScopeOf = (body: unknown, p: Principal): string | undefined => {
  for (const m of Array.isArray(body) ? body : [body]) {
    const c = m as { method?: unknown; params?: { name?: unknown } } | null;
    if (c?.method !== 'tools/call' || typeof c.params?.name !== 'string') continue;
    const refusal = TOOL_BY_NAME.get(c.params.name)?.access(p);
    if (refusal?.code === 'scope_required' && typeof refusal.extra?.scope === 'string') return refusal.extra.scope;
  }
  return undefined;
};

/**
 * A tools/call whose client asked for progress (a `progressToken`) is answered
 * as an SSE stream so progress notifications reach it during a long
 * wait_for_email; everything else as one JSON response (cheaper).
 */
const wantsProgress = (body: unknown): boolean => {
  const one = (m: unknown) => {
    const p = (m as { method?: unknown; params?: { _meta?: { progressToken?: unknown } } } | null) ?? null;
    return p?.method === 'tools/call' && p.params?._meta?.progressToken !== undefined;
  };
  return Array.isArray(body) ? body.some(one) : one(body);
};

/**
 * Streamable HTTP at /mcp, both protocol eras through the MCP SDK 2.x, stateless: every POST gets a new server,
 * authenticated with the same Bearer key check and per-key rate limit as /v1; a refusal carries the RFC 9728
 * challenge (mcp-resource-metadata.ts). A 2026-07-28 request (its version in `_meta`, no initialize; server/discover
 * included) goes to the SDK's createMcpHandler; a 2025-era one (initialize, then requests naming the version in the
 * MCP-Protocol-Version header) to a stateless streamable HTTP transport of the same SDK, which answers in one JSON
 * body unless the client asked for progress (createMcpHandler's own 2025 fallback always streams). No sessions, so
 * GET (SSE stream) and DELETE (session end) answer 405.
 */
export const mcpRoutes = (opts: McpHttpOptions) => async (app: FastifyInstance) => {
  const max = opts.maxConcurrentPerKey ?? DEFAULT_MCP_CONCURRENCY_PER_KEY;
  /** The session of each request being served, found again by the factory from the web Request the SDK hands it. */
  const sessions = new WeakMap<Request, Served>();
  const modern = createMcpHandler(
    (c) => {
      const served = c.requestInfo && sessions.get(c.requestInfo);
      if (!served) throw new Error('MCP request without a session');
      served.server = createMcpServer(opts.deps, served.session);
      return served.server;
    },
    { legacy: 'reject' },
  );
  app.addHook('onClose', async () => modern.close());
  const inFlight = new Map<string, number>();
  const { errorHandler, sendProblem } = opts.edge;
  const authHook = withBearerChallenge(opts.edge.authHook, { publicUrl: opts.publicUrl });

  const problems = opts.edge.problems ?? (() => ({}));
  await app.register(
    resourceMetadataRoutes(
      { publicUrl: opts.publicUrl, ...(opts.authorizationServers ? { authorizationServers: opts.authorizationServers } : {}) },
      problems,
    ),
  );
  const notOffered = (req: FastifyRequest, reply: FastifyReply) => {
    reply.header('allow', 'POST');
    return sendProblem(
      reply,
      req,
      405,
      'method_not_allowed',
      'This MCP endpoint is stateless: POST JSON-RPC messages. There is no SSE stream to open and no session to delete.',
    );
  };
  // Two routes, not one with two methods: each operation has its own operationId. Hidden from the OpenAPI
  // document, which describes what is offered; these only say that it is not.
  for (const [method, operationId] of [
    ['GET', 'openMcpStream'],
    ['DELETE', 'closeMcpSession'],
  ] as const) {
    app.route({
      method,
      url: '/mcp',
      schema: {
        operationId,
        hide: true,
        tags: ['mcp'],
        security: [],
        summary: 'Not offered: this MCP endpoint is stateless (405)',
        response: problems(405),
      },
      handler: notOffered,
    });
  }

  await app.register(async (scope) => {
    scope.addHook('onRequest', authHook);
    // A body the MCP endpoint cannot read is a JSON-RPC error (JSON-RPC 2.0 section 5.1), with the same limit and
    // wording as over stdio (stdio-transport.ts); authentication and everything else stay problem+json.
    scope.setErrorHandler((err: FastifyError, req, reply) => {
      const rpcError = (status: number, code: number, message: string) =>
        reply.code(status).type('application/json').send({ jsonrpc: '2.0', id: null, error: { code, message } });
      if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
        const limit = req.routeOptions.bodyLimit ?? app.initialConfig.bodyLimit;
        return rpcError(
          413,
          INVALID_REQUEST,
          `Invalid Request: a message may be at most ${limit} bytes (the HTTP request body limit, MAILWARD_BODY_LIMIT_BYTES).`,
        );
      }
      if (err.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || err.code === 'FST_ERR_CTP_EMPTY_JSON_BODY') {
        return rpcError(400, PARSE_ERROR, 'Parse error: the body is not valid JSON.');
      }
      return errorHandler(err, req, reply);
    });
    scope.post(
      '/mcp',
      {
        schema: {
          operationId: 'callMcp',
          tags: ['mcp'],
          summary: 'MCP over streamable HTTP (stateless): JSON-RPC initialize, tools/list, tools/call',
          security: [{ bearerAuth: [] }],
          response: problems(401, 429),
          // Documentation only (the REST edge's OpenAPI transform merges it into `response`): the answer is the
          // transport's own text or stream, and a fastify response schema for it would change how it is sent.
          'x-openapi-responses': {
            200: {
              description: 'JSON-RPC 2.0 response (application/json), or a stream of them when the client asks for progress',
              content: {
                'application/json': { schema: z.looseObject({ jsonrpc: z.literal('2.0') }) },
                'text/event-stream': { schema: z.string() },
              },
            },
          },
        },
      },
      async (req, reply) => {
        const key = req.ctx.principal.keyId;
        const n = inFlight.get(key) ?? 0;
        if (n >= max) {
          throw new AppError('too_many_concurrent_requests', 429, `At most ${max} MCP requests per key may be in flight at once.`, {
            temporary: true,
            extra: { retry_after: 1 },
          });
        }
        // MCP authorization (scope challenge): an OAuth token without the scope a tool needs is refused at the HTTP
        // layer with 403 and the scope to ask for (RFC 6750 3.1), so the client can step up; API keys keep the tool's
        // own error result.
        const missing = req.ctx.principal.oauth ? missingScopeOf(req.body, req.ctx.principal) : undefined;
        if (missing) {
          reply.header(
            'www-authenticate',
            bearerChallenge({ publicUrl: opts.publicUrl }, req, { error: 'insufficient_scope', scope: missing }),
          );
          throw new AppError('insufficient_scope', 403, `This tool needs the ${missing} scope, which this access token lacks.`, {
            extra: { scope: missing },
          });
        }
        inFlight.set(key, n + 1);
        const abort = createAbortable();
        const served: Served = { session: { context: async () => req.ctx, signal: abort.signal } };
        let released = false;
        const release = () => {
          if (released) return;
          released = true;
          const left = (inFlight.get(key) ?? 1) - 1;
          if (left <= 0) inFlight.delete(key);
          else inFlight.set(key, left);
          // The client went away before its answer: end its wait and drop the per-request server.
          if (!reply.raw.writableFinished) {
            abort.abort();
            served.server?.close().catch(() => {});
          }
        };
        reply.raw.once('close', release);
        reply.raw.once('finish', release);
        try {
          const request = webRequestOf(req);
          let res: Response;
          if (await isLegacyRequest(request, req.body)) {
            served.server = createMcpServer(opts.deps, served.session);
            const transport = new WebStandardStreamableHTTPServerTransport({
              sessionIdGenerator: undefined,
              enableJsonResponse: !wantsProgress(req.body),
            });
            await served.server.connect(transport);
            res = await transport.handleRequest(request, { parsedBody: req.body });
          } else {
            sessions.set(request, served);
            res = await modern.fetch(request, { parsedBody: req.body });
          }
          (reply as FastifyReply).code(res.status);
          res.headers.forEach((v, k) => {
            // fastify computes the length of what it sends.
            if (k !== 'content-length') reply.header(k, v);
          });
          if (!res.body) return reply.send();
          if ((res.headers.get('content-type') ?? '').startsWith('text/event-stream')) {
            return reply.send(Readable.fromWeb(res.body as unknown as NodeReadableStream));
          }
          return reply.send(await res.text());
        } catch (e) {
          release();
          throw e;
        }
      },
    );
  });
};
