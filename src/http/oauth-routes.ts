import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { AppError } from '../kernel/errors.js';

export type OauthMount = {
  /** The authorization server can serve this Host (MAILWARD_PUBLIC_URL set, or a loopback Host). */
  serves: (host: string | undefined) => boolean;
  /** oidc-provider's request handler, on the raw node objects. */
  handle: (req: IncomingMessage, res: ServerResponse) => unknown;
};

const METHODS = ['GET', 'POST', 'OPTIONS'] as const;

/**
 * Mounts the OAuth 2.1 authorization server (src/oauth/oauth-server.ts) under /oauth and its RFC 8414 metadata at
 * /.well-known/oauth-authorization-server. The library reads the request body itself (form-encoded token, revocation
 * and registration requests), so these routes have no body parser: the body reaches it untouched. Hidden from the
 * OpenAPI document: the protocol is OAuth's, described by the metadata document, not by Mailward's REST API.
 */
export const oauthRoutes = (mount: OauthMount) => async (app: FastifyInstance) => {
  await app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', (_req, _payload, done) => done(null));
    const pass = async (req: FastifyRequest, reply: FastifyReply) => {
      if (!mount.serves(req.headers.host)) {
        throw new AppError('public_url_required', 503, 'Set MAILWARD_PUBLIC_URL: the authorization server needs a fixed origin.');
      }
      reply.hijack();
      await mount.handle(req.raw, reply.raw);
    };
    for (const method of METHODS) {
      const m = method[0] + method.slice(1).toLowerCase();
      scope.route({
        method,
        url: '/oauth/*',
        schema: { operationId: `oauth${m}`, hide: true, tags: ['mcp'], security: [], summary: 'OAuth 2.1 authorization server' },
        handler: pass,
      });
      scope.route({
        method,
        url: '/.well-known/oauth-authorization-server',
        schema: {
          operationId: `authorizationServerMetadata${m}`,
          hide: true,
          tags: ['mcp'],
          security: [],
          summary: 'OAuth 2.0 Authorization Server Metadata (RFC 8414)',
        },
        handler: pass,
      });
    }
  });
};
