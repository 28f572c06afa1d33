import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { DIRECTORY_MEDIA_TYPE, type KeyDirectoryService } from '../identity/key-directory.js';
import { publicJwks } from '../identity/signing-keys.js';
import { AppError } from '../kernel/errors.js';
import type { Store } from '../store/db.js';
import { createStoreHealth } from '../store/store-health.js';
import type { HttpMetrics } from './metrics.js';
import { problems, publicRoute } from './common-schemas.js';
import { openApi } from './openapi-registry.js';

const jwk = z.looseObject({ kty: z.string(), kid: z.string(), alg: z.string(), use: z.string() }).register(openApi, { id: 'Jwk' });

type SystemDeps = { store: Store; keyDirectory: KeyDirectoryService };

/** Unauthenticated routes: liveness, metrics, the OpenAPI document, public keys. */
export const systemRoutes = (c: SystemDeps, metrics: HttpMetrics) => async (root: FastifyInstance) => {
  const app = root.withTypeProvider<ZodTypeProvider>();
  const storeHealth = createStoreHealth(c.store);
  app.get(
    '/healthz',
    {
      schema: {
        operationId: 'getHealth',
        tags: ['system'],
        security: publicRoute,
        summary: 'Liveness, store reachability and whether the store can write',
        response: {
          200: z.object({ status: z.literal('ok'), store: z.string() }).register(openApi, { id: 'Health' }),
          ...problems(400, 503),
        },
      },
    },
    async () => {
      const health = await storeHealth.check();
      if (health === 'ok') return { status: 'ok' as const, store: c.store.dialect };
      // A store that answers reads but cannot write (disk full, read-only) is not healthy: every change would fail.
      if (health === 'read_only')
        throw new AppError('store_read_only', 503, 'The store cannot write (disk full or read-only).', {
          temporary: true,
          extra: { store: 'read_only', dialect: c.store.dialect },
        });
      if (health === 'busy')
        throw new AppError('store_busy', 503, 'The store is busy with another process; retry shortly.', {
          temporary: true,
          extra: { store: 'busy', retry_after: 1 },
        });
      throw new AppError('store_unavailable', 503, 'The store is not reachable.', { temporary: true, extra: { store: 'unreachable' } });
    },
  );
  app.get(
    '/metrics',
    {
      schema: {
        operationId: 'getMetrics',
        tags: ['system'],
        security: publicRoute,
        summary: 'Prometheus metrics (text exposition format)',
        response: {
          200: { description: 'Prometheus text exposition format', content: { 'text/plain': { schema: z.string() } } },
          ...problems(400),
        },
      },
    },
    async (_req, reply) => reply.type(metrics.registry.contentType).send(await metrics.registry.metrics()),
  );
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  app.get('/', { schema: { hide: true } }, async (_req, reply) => reply.redirect('/docs'));
  app.get(
    '/.well-known/jwks.json',
    {
      schema: {
        operationId: 'getJwks',
        tags: ['system'],
        security: publicRoute,
        summary: 'Public keys of identity headers (ES256) and audit checkpoints (Ed25519)',
        response: { 200: z.object({ keys: z.array(jwk) }).register(openApi, { id: 'Jwks' }), ...problems(400) },
      },
    },
    () => publicJwks(c.store.db),
  );
  app.get(
    '/.well-known/http-message-signatures-directory',
    {
      schema: {
        operationId: 'getKeyDirectory',
        tags: ['system'],
        security: publicRoute,
        response: {
          200: z
            .object({ keys: z.array(z.record(z.string(), z.unknown())) })
            .describe('application/http-message-signatures-directory+json, signed (Signature and Signature-Input headers)'),
          ...problems(400),
        },
        summary: 'Identity-signing keys as an HTTP Message Signatures Directory (RFC 9421 signed; retired keys keep their nbf/exp window)',
      },
    },
    async (req, reply) => {
      // RFC 9421 2.2.3: @authority is the request's Host, lower-cased, as the client addressed us.
      const r = await c.keyDirectory.signedResponse(String(req.headers.host ?? req.host));
      // A Buffer body keeps the media type exactly as the directory draft names it (no charset parameter added).
      return (
        reply
          .header('content-type', DIRECTORY_MEDIA_TYPE)
          .header('signature-input', r.signatureInput)
          .header('signature', r.signature)
          // A Buffer is sent as it is (fastify serialises only objects): the response schema documents its shape.
          .send(Buffer.from(r.body, 'utf8') as never)
      );
    },
  );
};
