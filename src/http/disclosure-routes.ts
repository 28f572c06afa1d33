import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { type Disclosures, disclosuresCsv } from '../compliance/disclosures.js';
import { isoQuery, problems, secured } from './common-schemas.js';
import { openApi } from './openapi-registry.js';

const hex32 = z.string().regex(/^[0-9a-f]{64}$/);

const disclosureOut = z
  .object({
    email_id: z.string(),
    at: z.string().describe('when the relay or the MX accepted the message'),
    recipient: z.string(),
    recipient_role: z.string().describe('to, cc or bcc'),
    phi_types: z.array(z.string()),
    category: z.string().nullable().describe('the category (purpose) the agent gave'),
    agent: z.object({ id: z.string(), name: z.string() }).nullable(),
    chain: z.array(z.object({ type: z.string(), id: z.string(), name: z.string() })).describe('delegation chain of the submission'),
    approved_by: z.object({ id: z.string(), name: z.string().nullable() }).nullable(),
    part2_consents: z.array(z.string()).describe('ids of the 42 CFR Part 2 consents that authorised the disclosure'),
    proof: z
      .object({
        seq: z.number().int(),
        leaf_index: z.number().int(),
        tree_size: z.number().int(),
        event_hash: hex32,
        leaf_hash: hex32,
        audit_path: z.array(hex32),
        root_hash: hex32,
      })
      .nullable()
      .describe('RFC 6962 inclusion proof of the email.delivered audit event in the latest checkpoint'),
  })
  .register(openApi, { id: 'Disclosure' });

const query = z.strictObject({
  contact: z.email().max(320),
  since: isoQuery.optional(),
  until: isoQuery.optional(),
});

/** Accounting of disclosures (45 CFR 164.528): privacy officers and admins; everyone else gets 404. */
export const disclosureRoutes =
  ({ disclosures }: { disclosures: Disclosures }) =>
  async (root: FastifyInstance) => {
    const app = root.withTypeProvider<ZodTypeProvider>();
    app.get(
      '/v1/disclosures',
      {
        schema: {
          operationId: 'listDisclosures',
          tags: ['compliance'],
          security: secured,
          summary: 'Accounting of disclosures to one contact (privacy_officer, admin); the read is audited',
          querystring: query,
          response: {
            200: z.object({ contact_hash: z.string(), disclosures: z.array(disclosureOut) }).register(openApi, { id: 'DisclosureReport' }),
            ...problems(400, 401, 404),
          },
        },
      },
      (req) => disclosures.report(req.ctx, req.query),
    );
    app.get(
      '/v1/disclosures/csv',
      {
        schema: {
          operationId: 'exportDisclosuresCsv',
          tags: ['compliance'],
          security: secured,
          summary: 'The accounting of disclosures as CSV (RFC 4180); the read is audited',
          querystring: query,
          response: { 200: z.string(), ...problems(400, 401, 404) },
        },
      },
      async (req, reply) => {
        const r = await disclosures.report(req.ctx, req.query);
        return reply.type('text/csv; charset=utf-8').send(disclosuresCsv(r.disclosures));
      },
    );
  };
