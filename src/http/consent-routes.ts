import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { consentOut, consentParams, putConsentBody } from '../phi/consent-schemas.js';
import { z } from 'zod';
import { emailAddress } from '../identity/identity-schemas.js';
import type { ConsentService } from '../phi/consent-service.js';
import type { Part2Consents } from '../phi/part2-consents.js';
import { idParams, problems, secured } from './common-schemas.js';

const token = z
  .string()
  .regex(/^[a-z0-9][a-z0-9_.:-]{0,63}$/, 'must be a short token such as treatment, payment, care_coordination, signed_form')
  .describe('a short token, never prose: free text could carry PHI into the audit log');
const part2Body = z.strictObject({
  recipient_address: emailAddress.optional().describe('the individual recipient the consent names'),
  recipient_domain: z
    .string()
    .regex(/^[a-z0-9.-]+\.[a-z]{2,}$/i, 'must be a mail domain')
    .optional()
    .describe('or the recipient organisation, by its mail domain'),
  purpose: token.describe('the purpose the consent names (42 CFR 2.31(a)(4))'),
  source: token.describe('how the written consent was obtained: signed_form, patient_portal...'),
  expires_at: z.iso.datetime({ offset: true }).optional(),
});
const part2Out = z.object({
  id: z.string(),
  recipient: z.union([z.object({ domain: z.string() }), z.object({ contact_hash: z.string() })]),
  purpose: z.string(),
  source: z.string(),
  granted_by: z.string(),
  created_at: z.string(),
  expires_at: z.string().nullable(),
  revoked_at: z.string().nullable(),
  revoked_by: z.string().nullable(),
});
const policyOut = z.object({ category_mismatch: z.enum(['hold', 'refuse']) });

/**
 * Thin adapters over the consent service (CONTRACT.md, REST:
 * /v1/contacts/{email}/consent). The path holds an address: the server logs
 * route patterns only, never URLs.
 */
export const consentRoutes =
  ({ consent, part2 }: { consent: ConsentService; part2: Part2Consents }) =>
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

    app.post(
      '/v1/part2-consents',
      {
        schema: {
          operationId: 'createPart2Consent',
          tags,
          security: secured,
          summary:
            '42 CFR 2.31: record a consent to disclose Part 2 records to a named recipient or organisation, for a purpose (admin, privacy_officer)',
          body: part2Body,
          response: { 201: part2Out, ...problems(400, 401, 403, 404, 422) },
        },
      },
      async (req, reply) => reply.code(201).send(await part2.grant(req.ctx, req.body)),
    );
    app.get(
      '/v1/part2-consents',
      {
        schema: {
          operationId: 'listPart2Consents',
          tags,
          security: secured,
          summary: 'Part 2 consents of your organization (admin, privacy_officer, auditor)',
          response: { 200: z.object({ part2_consents: z.array(part2Out) }), ...problems(401, 403, 404) },
        },
      },
      async (req) => ({ part2_consents: await part2.list(req.ctx) }),
    );
    app.post(
      '/v1/part2-consents/:id/revoke',
      {
        schema: {
          operationId: 'revokePart2Consent',
          tags,
          security: secured,
          summary: 'Revoke a Part 2 consent: no new disclosure under it from now on (admin, privacy_officer)',
          params: idParams('pcn'),
          response: { 200: part2Out, ...problems(400, 401, 403, 404, 409) },
        },
      },
      (req) => part2.revoke(req.ctx, req.params.id),
    );
    app.get(
      '/v1/consent-policy',
      {
        schema: {
          operationId: 'getConsentPolicy',
          tags,
          security: secured,
          summary: "What a send gets when a recipient's consent does not cover its category: hold (default) or refuse",
          response: { 200: policyOut, ...problems(401, 403, 404) },
        },
      },
      (req) => part2.policy(req.ctx),
    );
    app.put(
      '/v1/consent-policy',
      {
        schema: {
          operationId: 'setConsentPolicy',
          tags,
          security: secured,
          summary: 'Set the category-mismatch rule: hold for a reviewer, or refuse with 422 no_consent (admin, privacy_officer)',
          body: z.strictObject({ category_mismatch: z.enum(['hold', 'refuse']) }),
          response: { 200: policyOut, ...problems(400, 401, 403, 404) },
        },
      },
      (req) => part2.setPolicy(req.ctx, req.body.category_mismatch),
    );
  };
