import type { FastifyReply, FastifyRequest } from 'fastify';
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

/** onRequest hook: resolves the key (401 otherwise), then applies the per-key rate limit (429). */
export const createAuthHook =
  ({ apiKeys, rateLimiter }: { apiKeys: ApiKeysService; rateLimiter: RateLimiter }) =>
  async (req: FastifyRequest, reply: FastifyReply) => {
    const meta = { requestId: req.id, clientIp: req.ip ?? null };
    const principal = await apiKeys.authenticate(bearer(req.headers.authorization), meta);
    req.ctx = { principal, ...meta };
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
