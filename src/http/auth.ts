import type { FastifyReply, FastifyRequest } from 'fastify';
import type { AccountsService } from '../accounts/accounts-service.js';
import { consoleOrigin, originAllowed, SESSION_COOKIE } from '../accounts/origin.js';
import { AppError } from '../kernel/errors.js';
import type { ApiKeysService } from '../identity/api-keys-service.js';
import type { RequestContext } from '../identity/principal.js';
import type { RateLimiter } from '../identity/rate-limiter.js';

declare module 'fastify' {
  interface FastifyRequest {
    ctx: RequestContext;
  }
}

const bearer = (h: string | undefined): string | undefined => {
  if (!h) return undefined;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(h);
  return m ? m[1] : '';
};

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

const cookieOf = (req: FastifyRequest, name: string): string | undefined => {
  const raw = req.headers.cookie;
  if (!raw) return undefined;
  for (const part of raw.split(';')) {
    const i = part.indexOf('=');
    if (i > 0 && part.slice(0, i).trim() === name) return part.slice(i + 1).trim();
  }
  return undefined;
};

export type SessionAuth = { accounts: Pick<AccountsService, 'authenticateRest'>; publicUrl: string | undefined };

/**
 * onRequest hook: resolves the key (401 otherwise), then applies the per-key rate limit (429).
 * With `sessions`, a request without an Authorization header may instead carry the console's
 * session cookie; a state-changing call then needs the session's CSRF token in `x-csrf-token` and,
 * when the browser sends one, an Origin equal to the console's.
 */
export const createAuthHook =
  ({
    apiKeys,
    rateLimiter,
    sessions,
    oauth,
  }: {
    apiKeys: ApiKeysService;
    rateLimiter: RateLimiter;
    sessions?: SessionAuth;
    /** /mcp only: a Bearer credential that is not an API key (`mw_...`) is taken as an OAuth access token (src/oauth). */
    oauth?: (
      token: string,
      host: string | undefined,
      meta: { requestId: string | null; clientIp: string | null },
    ) => Promise<RequestContext['principal']>;
  }) =>
  async (req: FastifyRequest, reply: FastifyReply) => {
    const meta = { requestId: req.id, clientIp: req.ip ?? null };
    const cookie = sessions && req.headers.authorization === undefined ? cookieOf(req, SESSION_COOKIE) : undefined;
    let principal: RequestContext['principal'];
    if (sessions && cookie !== undefined) {
      const unsafe = !SAFE_METHODS.has(req.method);
      if (unsafe && !originAllowed(consoleOrigin(sessions.publicUrl, req.headers.host), req.headers.origin)) {
        throw new AppError('csrf_failed', 403, 'The request comes from another origin.');
      }
      const csrf = req.headers['x-csrf-token'];
      principal = await sessions.accounts.authenticateRest(
        cookie,
        { ...meta, userAgent: req.headers['user-agent'] ?? null },
        { unsafe, header: typeof csrf === 'string' ? csrf : undefined },
      );
    } else {
      const presented = bearer(req.headers.authorization);
      principal =
        oauth && presented && !presented.startsWith('mw_')
          ? await oauth(presented, req.headers.host, meta)
          : await apiKeys.authenticate(presented, meta);
    }
    req.ctx = { principal, ...meta };
    if (principal.readOnly && !SAFE_METHODS.has(req.method)) throw await apiKeys.refuseReadOnly(req.ctx);
    const d = await rateLimiter.hit(principal.keyId);
    reply.header('ratelimit-limit', String(d.limit));
    reply.header('ratelimit-remaining', String(d.remaining));
    reply.header('ratelimit-reset', String(d.resetSeconds));
    if (!d.allowed) {
      throw new AppError('rate_limited', 429, `Rate limit of ${d.limit} requests per minute exceeded for this key.`, {
        temporary: true,
        extra: { retry_after: d.resetSeconds },
      });
    }
  };
