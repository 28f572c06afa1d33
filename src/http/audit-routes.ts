import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { AuditService } from '../audit/audit-service.js';
import type { Guard } from '../identity/guard.js';
import { requireAnyRole } from '../identity/principal.js';
import { cursorQuery, decodeCursor, encodeCursor, isoQuery, limitQuery, problems, secured } from './common-schemas.js';

export const auditEventOut = z.object({
  seq: z.number().int(),
  id: z.string(),
  at: z.string(),
  action: z.string(),
  actor: z.object({ id: z.string().nullable(), type: z.string() }),
  delegation_chain: z.array(z.object({ type: z.string(), id: z.string(), name: z.string() })),
  target: z.object({ type: z.string(), id: z.string() }).nullable(),
  outcome: z.string(),
  request_id: z.string().nullable(),
  client_ip: z.string().nullable(),
  content_hash: z.string().nullable(),
  details: z.record(z.string(), z.unknown()),
  prev_hash: z.string(),
  hash: z.string(),
});

const listQuery = z.strictObject({
  actor_id: z.string().max(40).optional(),
  action: z.string().max(100).optional(),
  target_id: z.string().max(40).optional(),
  since: isoQuery.optional(),
  until: isoQuery.optional(),
  cursor: cursorQuery.optional(),
  limit: limitQuery,
});

export const auditRoutes = ({ audit, guard }: { audit: AuditService; guard: Guard }) => async (root: FastifyInstance) => {
  const app = root.withTypeProvider<ZodTypeProvider>();
  app.get(
    '/v1/audit/events',
    {
      schema: {
        tags: ['audit'],
        security: secured,
        summary: 'Audit events of your organization, oldest first (admin, auditor, privacy_officer)',
        querystring: listQuery,
        response: { 200: z.object({ events: z.array(auditEventOut), next_cursor: z.string().nullable() }), ...problems(400, 401, 403, 404) },
      },
    },
    async (req) => {
      const q = req.query;
      const events = await guard.read(req.ctx, 'audit.events.read', null, async () => {
        requireAnyRole(req.ctx, ['admin', 'auditor', 'privacy_officer']);
        const after = decodeCursor(q.cursor);
        return audit.list({
          orgId: req.ctx.principal.orgId,
          actorId: q.actor_id,
          action: q.action,
          targetId: q.target_id,
          since: q.since ? new Date(q.since).toISOString() : undefined,
          until: q.until ? new Date(q.until).toISOString() : undefined,
          afterSeq: after !== undefined && /^\d+$/.test(after) ? Number(after) : undefined,
          limit: q.limit,
        });
      });
      const last = events.at(-1);
      return {
        events: events.map(({ org_id: _org, ...e }) => e),
        next_cursor: events.length === q.limit && last ? encodeCursor(last.seq) : null,
      };
    },
  );
};
