import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { approvalOut, approveBody, rejectBody } from '../mail/mail-schemas.js';
import type { ApprovalsService } from '../oversight/approvals-service.js';
import { cursorQuery, idParams, limitQuery, problems, secured } from './common-schemas.js';
import { openApi } from './openapi-registry.js';

const decided = z
  .object({ id: z.string(), status: z.string(), thread_id: z.string(), approval: approvalOut })
  .register(openApi, { id: 'ApprovalDecision' });

const listQuery = z.strictObject({
  status: z.enum(['pending', 'approved', 'rejected']).default('pending'),
  cursor: cursorQuery.optional().describe('next_cursor of the previous page'),
  limit: limitQuery,
});

/** The approval queue: reviewers list, approve (with edits) and reject. */
export const approvalRoutes = (deps: { approvals: ApprovalsService }) => async (root: FastifyInstance) => {
  const app = root.withTypeProvider<ZodTypeProvider>();
  const { approvals } = deps;
  const tags = ['approvals'];
  app.get(
    '/v1/approvals',
    {
      schema: {
        operationId: 'listApprovals',
        tags,
        security: secured,
        summary: 'Approvals of the organization, oldest first, one page at a time (reviewers and admins; every read is audited)',
        querystring: listQuery,
        response: {
          200: z.object({ approvals: z.array(approvalOut), next_cursor: z.string().nullable() }).register(openApi, { id: 'ApprovalPage' }),
          ...problems(400, 401, 403, 404),
        },
      },
    },
    (req) => approvals.list(req.ctx, req.query),
  );
  app.post(
    '/v1/approvals/:id/approve',
    {
      schema: {
        operationId: 'approveApproval',
        tags,
        security: secured,
        summary: 'Approve a held message, optionally with edits (humans with reviewer; never the sender)',
        params: idParams('apr'),
        body: approveBody,
        response: { 200: decided, ...problems(400, 401, 403, 404, 409, 413, 422) },
      },
    },
    (req) => approvals.approve(req.ctx, req.params.id, req.body ?? {}),
  );
  app.post(
    '/v1/approvals/:id/reject',
    {
      schema: {
        operationId: 'rejectApproval',
        tags,
        security: secured,
        summary: 'Reject a held message; the comment is required and the agent reads it',
        params: idParams('apr'),
        body: rejectBody,
        response: { 200: decided, ...problems(400, 401, 403, 404, 409) },
      },
    },
    (req) => approvals.reject(req.ctx, req.params.id, req.body.comment),
  );
};
