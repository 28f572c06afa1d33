import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { badRequest } from '../kernel/errors.js';
import type { IdentityVerifier } from '../mail/identity-verifier.js';
import { problems, secured } from './common-schemas.js';
import { openApi } from './openapi-registry.js';

const verifyOut = z
  .object({
    valid: z.boolean(),
    ai_generated: z.boolean(),
    agent: z.object({ id: z.string(), address: z.string() }).nullable(),
    delegation_chain: z.array(z.object({ type: z.string(), id: z.string(), name: z.string() })),
    responsible_human: z.object({ id: z.string(), name: z.string() }).nullable(),
    oversight_mode: z.string().nullable(),
    approved_by: z.string().nullable(),
    approval_id: z.string().nullable(),
    kid: z.string().nullable(),
    reasons: z.array(z.string()),
  })
  .register(openApi, { id: 'IdentityVerification' });

/** POST /v1/identity/verify: a raw RFC 5322 message in, the X-Agent-Identity verdict out. */
export const identityVerifyRoutes = (deps: { verifier: IdentityVerifier; maxMessageBytes: number }) => async (root: FastifyInstance) => {
  const app = root.withTypeProvider<ZodTypeProvider>();
  // RFC 2046 5.2.1: message/rfc822 is the media type of a whole message; kept as bytes, never parsed as text.
  app.addContentTypeParser('message/rfc822', { parseAs: 'buffer', bodyLimit: deps.maxMessageBytes }, (_req, body, done) =>
    done(null, body),
  );
  app.post(
    '/v1/identity/verify',
    {
      bodyLimit: deps.maxMessageBytes,
      schema: {
        operationId: 'verifyIdentity',
        tags: ['identity'],
        security: secured,
        summary: 'Verify the X-Agent-Identity header and body hash of a raw message (Content-Type: message/rfc822)',
        // OpenAPI only (openapi-transform.ts documentRoute): the body is read as bytes by the parser above, never by zod.
        'x-raw-body': { contentType: 'message/rfc822', description: 'the whole message as received or sent (RFC 5322)' },
        response: { 200: verifyOut, ...problems(400, 401, 413, 415) },
      },
    },
    async (req) => {
      if (!Buffer.isBuffer(req.body) || req.body.length === 0)
        throw badRequest('message_required', 'Send the raw message with Content-Type: message/rfc822.');
      return deps.verifier.verify(req.body);
    },
  );
};
