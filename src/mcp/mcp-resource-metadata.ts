import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { consoleOrigin } from '../accounts/origin.js';
import { AGENT_SCOPES } from '../identity/principal.js';
import { AppError } from '../kernel/errors.js';

/**
 * The MCP endpoint as an OAuth 2.1 protected resource (MCP authorization, RFC 9728).
 *
 * The resource identifier is `<origin>/mcp`, the origin being MAILWARD_PUBLIC_URL or, when unset, a loopback Host
 * (accounts/origin.ts: a Host header from elsewhere is not trusted to name the origin tokens are bound to).
 */
export const PROTECTED_RESOURCE_PATH = '/.well-known/oauth-protected-resource';
export const MCP_PROTECTED_RESOURCE_PATH = '/.well-known/oauth-protected-resource/mcp';

export type ResourceMetadataOptions = {
  publicUrl: string | undefined;
  /** Issuers of the authorization servers whose tokens /mcp accepts (RFC 9728 2: optional); none yet: API keys only. */
  authorizationServers?: (origin: string) => string[];
};

export const mcpResourceOf = (origin: string) => `${origin}/mcp`;

export const protectedResourceMetadata = z
  .object({
    resource: z.string().describe('The protected resource identifier: this server’s /mcp (RFC 9728 2)'),
    authorization_servers: z.array(z.string()).optional(),
    scopes_supported: z.array(z.string()),
    bearer_methods_supported: z.array(z.literal('header')),
    resource_name: z.string(),
    resource_documentation: z.string().optional(),
  })
  .describe('OAuth 2.0 Protected Resource Metadata (RFC 9728) of the MCP endpoint');

export type ProtectedResourceMetadata = z.infer<typeof protectedResourceMetadata>;

export const metadataOf = (opts: ResourceMetadataOptions, origin: string): ProtectedResourceMetadata => {
  const servers = opts.authorizationServers?.(origin) ?? [];
  return {
    resource: mcpResourceOf(origin),
    ...(servers.length > 0 ? { authorization_servers: servers } : {}),
    scopes_supported: [...AGENT_SCOPES],
    // RFC 9728 2 / RFC 6750 2.1: only the Authorization header; tokens in query strings end up in logs.
    bearer_methods_supported: ['header'],
    resource_name: 'Mailward MCP server',
  };
};

/** The origin for this request, or undefined when neither MAILWARD_PUBLIC_URL nor a loopback Host names it. */
export const originFor = (publicUrl: string | undefined, host: string | undefined): string | undefined => {
  try {
    return consoleOrigin(publicUrl, host);
  } catch (e) {
    if (e instanceof AppError && e.code === 'public_url_required') return undefined;
    throw e;
  }
};

/**
 * The challenge of a refused /mcp request (RFC 6750 3, RFC 9728 5.1): `resource_metadata` points clients that were
 * configured with only the URL to the metadata, from which they find the authorization server. `error="invalid_token"`
 * only when a credential was sent (RFC 6750 3.1: a request without one gets no error code).
 */
export const bearerChallenge = (
  opts: { publicUrl: string | undefined },
  req: FastifyRequest,
  extra: { error?: 'invalid_token' | 'insufficient_scope'; scope?: string } = {},
): string => {
  const origin = originFor(opts.publicUrl, req.headers.host);
  const params: string[] = [];
  if (origin) params.push(`resource_metadata="${origin}${MCP_PROTECTED_RESOURCE_PATH}"`);
  if (extra.error) params.push(`error="${extra.error}"`);
  if (extra.scope) params.push(`scope="${extra.scope}"`);
  return params.length > 0 ? `Bearer ${params.join(', ')}` : 'Bearer';
};

/** Wraps the REST edge's auth hook: a 401 carries the Bearer challenge (RFC 9728 5.1). */
export const withBearerChallenge =
  (authHook: (req: FastifyRequest, reply: FastifyReply) => Promise<unknown>, opts: { publicUrl: string | undefined }) =>
  async (req: FastifyRequest, reply: FastifyReply) => {
    try {
      return await authHook(req, reply);
    } catch (e) {
      if (e instanceof AppError && e.status === 401) {
        const sent = req.headers.authorization !== undefined;
        reply.header('www-authenticate', bearerChallenge(opts, req, sent ? { error: 'invalid_token' } : {}));
      }
      throw e;
    }
  };

/** RFC 9728 3: the metadata at the path-inserted well-known URI of `/mcp`, and at the root one for clients that look there first. */
export const resourceMetadataRoutes =
  (opts: ResourceMetadataOptions, problems: (...statuses: number[]) => Record<number, unknown>) => async (app: FastifyInstance) => {
    for (const [url, operationId] of [
      [MCP_PROTECTED_RESOURCE_PATH, 'getMcpProtectedResourceMetadata'],
      [PROTECTED_RESOURCE_PATH, 'getProtectedResourceMetadata'],
    ] as const) {
      app.get(
        url,
        {
          schema: {
            operationId,
            tags: ['mcp'],
            security: [],
            summary: 'OAuth protected resource metadata of the MCP endpoint (RFC 9728)',
            response: { 200: protectedResourceMetadata, ...problems(400, 503) },
          },
        },
        async (req, reply) => {
          // Throws 503 public_url_required when the Host is not loopback and MAILWARD_PUBLIC_URL is unset.
          const origin = consoleOrigin(opts.publicUrl, req.headers.host);
          reply.header('cache-control', 'public, max-age=300');
          return metadataOf(opts, origin);
        },
      );
    }
  };
