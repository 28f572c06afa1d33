import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { GrantsService } from '../identity/grants-service.js';
import { CONSENT_CATEGORIES } from '../phi/consent-schemas.js';
import { idParams, problems, secured } from './common-schemas.js';

const grantOut = z.object({
  id: z.string(),
  agent_id: z.string(),
  clinician_id: z.string(),
  categories: z.array(z.string()),
  created_by: z.string(),
  created_at: z.string(),
  expires_at: z.string(),
  revoked_at: z.string().nullable(),
  revoked_by: z.string().nullable(),
});

/** CONTRACT.md (second wave), grants: thin adapters over the grants service. */
export const grantsRoutes =
  ({ grants }: { grants: GrantsService }) =>
  async (root: FastifyInstance) => {
    const app = root.withTypeProvider<ZodTypeProvider>();
    const tags = ['grants'];
    app.post(
      '/v1/grants',
      {
        schema: {
          operationId: 'createGrant',
          tags,
          security: secured,
          summary: 'A clinician (or an admin for them) lets an agent send on their behalf in some categories until an expiry',
          body: z.strictObject({
            agent_id: z.string().regex(/^agt_[0-9a-f]{32}$/, 'must be an agt_ id'),
            clinician_id: z.string().regex(/^hum_[0-9a-f]{32}$/, 'must be a hum_ id'),
            categories: z.array(z.enum(CONSENT_CATEGORIES)).min(1).max(CONSENT_CATEGORIES.length),
            expires_at: z.iso.datetime({ offset: true }),
          }),
          response: { 201: grantOut, ...problems(400, 401, 403, 404, 422) },
        },
      },
      async (req, reply) => reply.code(201).send(await grants.create(req.ctx, req.body)),
    );
    app.get(
      '/v1/grants',
      {
        schema: {
          operationId: 'listGrants',
          tags,
          security: secured,
          summary: 'Grants you may see: all (admin), your own (clinician), those given to you (agent)',
          response: { 200: z.object({ grants: z.array(grantOut) }), ...problems(401, 403) },
        },
      },
      async (req) => ({ grants: await grants.list(req.ctx) }),
    );
    app.delete(
      '/v1/grants/:id',
      {
        schema: {
          operationId: 'revokeGrant',
          tags,
          security: secured,
          summary: 'Revoke a grant: new sends on behalf of the clinician under it are refused at once (admin or the clinician)',
          params: idParams('gnt'),
          response: { 200: grantOut, ...problems(400, 401, 404, 409) },
        },
      },
      (req) => grants.revoke(req.ctx, req.params.id),
    );
  };
