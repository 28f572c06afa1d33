import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { bulkBody, bulkOut, MAX_BULK_ROWS } from '../mail/bulk-schemas.js';
import type { BulkSend } from '../mail/bulk-send.js';
import {
  approveTemplateBody,
  createTemplateBody,
  templateCreated,
  templateList,
  templateOut,
  updateTemplateBody,
} from '../templates/templates-schemas.js';
import type { TemplatesService } from '../templates/templates-service.js';
import { idParams, problems, secured } from './common-schemas.js';

/** Thin adapters over the templates service and bulk sends (README "Templates and bulk sends"). */
export const templatesRoutes =
  ({ templates, bulk }: { templates: TemplatesService; bulk: BulkSend }) =>
  async (root: FastifyInstance) => {
    const app = root.withTypeProvider<ZodTypeProvider>();
    const tags = ['templates'];

    app.post(
      '/v1/templates',
      {
        schema: {
          tags,
          security: secured,
          operationId: 'createTemplate',
          summary: 'Write a template with typed slots (admin or reviewer); version 1 waits for a reviewer’s approval',
          body: createTemplateBody,
          response: { 201: templateCreated, ...problems(400, 401, 403, 404, 409, 422) },
        },
      },
      async (req, reply) => reply.code(201).send(await templates.create(req.ctx, req.body)),
    );
    app.get(
      '/v1/templates',
      {
        schema: {
          tags,
          security: secured,
          operationId: 'listTemplates',
          summary: 'Templates of the organisation with their approved version',
          response: { 200: templateList, ...problems(401, 403) },
        },
      },
      (req) => templates.list(req.ctx),
    );
    app.get(
      '/v1/templates/:id',
      {
        schema: {
          tags,
          security: secured,
          operationId: 'getTemplate',
          summary: 'A template with every version, its status and approval signature',
          params: idParams('tpl'),
          response: { 200: templateOut, ...problems(400, 401, 403, 404) },
        },
      },
      (req) => templates.get(req.ctx, req.params.id),
    );
    app.put(
      '/v1/templates/:id',
      {
        schema: {
          tags,
          security: secured,
          operationId: 'updateTemplate',
          summary: 'A new version (admin or reviewer); it needs a new approval, the approved version stays in use until then',
          params: idParams('tpl'),
          body: updateTemplateBody,
          response: { 200: templateCreated, ...problems(400, 401, 403, 404, 422) },
        },
      },
      (req) => templates.update(req.ctx, req.params.id, req.body),
    );
    app.post(
      '/v1/templates/:id/approve',
      {
        schema: {
          tags,
          security: secured,
          operationId: 'approveTemplate',
          summary: 'Approve the newest version once (reviewer, never its author), signed with the meaning "approved as a template"',
          params: idParams('tpl'),
          body: approveTemplateBody.optional(),
          response: { 200: templateOut, ...problems(400, 401, 403, 404, 409) },
        },
      },
      (req) => templates.approve(req.ctx, req.params.id, req.body ?? {}),
    );
    app.post(
      '/v1/mailboxes/:id/send-bulk',
      {
        // 10,000 rows of recipients, slots and keys: well under 16 MiB.
        bodyLimit: 16 * 1024 * 1024,
        schema: {
          tags: ['mail'],
          security: secured,
          operationId: 'sendBulk',
          summary: `Send an approved template to up to ${MAX_BULK_ROWS} rows (per-row slots and idempotency keys), answering per-row outcomes`,
          params: idParams('mbx'),
          body: bulkBody,
          response: { 200: bulkOut, ...problems(400, 401, 403, 404, 409, 413, 422) },
        },
      },
      (req) => bulk.sendBulk(req.ctx, req.params.id, req.body),
    );
  };
