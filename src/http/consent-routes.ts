import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { consentOut, consentParams, putConsentBody } from '../phi/consent-schemas.js';
import type { ConsentService } from '../phi/consent-service.js';
import { problems, secured } from './common-schemas.js';

/**
 * Thin adapters over the consent service (CONTRACT.md, REST:
 * /v1/contacts/{email}/consent). The path holds an address: the server logs
 * route patterns only, never URLs.
 */
export const consentRoutes =
  ({ consent }: { consent: ConsentService }) =>
  async (root: FastifyInstance) => {
    const app = root.withTypeProvider<ZodTypeProvider>();
    const tags = ['consent'];

    app.put(
      '/v1/contacts/:email/consent',
      {
        schema: {
          operationId: 'setConsent',
          tags,
          security: secured,
          summary:
            'Record a contact’s consent to electronic communication (admin or privacy_officer; an agent with mail:send may record a refusal)',
          params: consentParams,
          body: putConsentBody,
          response: { 200: consentOut, ...problems(400, 401, 403, 409, 422, 429) },
        },
      },
      (req) => consent.record(req.ctx, req.params.email, req.body),
    );
    app.get(
      '/v1/contacts/:email/consent',
      {
        schema: {
          operationId: 'getConsent',
          tags,
          security: secured,
          summary: 'Read a contact’s consent: granted, refused or unknown (humans; agents with mail:send)',
          params: consentParams,
          response: { 200: consentOut, ...problems(400, 401, 403, 429) },
        },
      },
      (req) => consent.get(req.ctx, req.params.email),
    );
  };
