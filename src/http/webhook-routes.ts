import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import type { WebhooksService } from '../webhooks/webhooks-service.js';
import {
  createWebhookBody,
  deliveriesOut,
  deliveriesQuery,
  replayBody,
  replayOut,
  rotateSecretBody,
  rotateSecretOut,
  updateWebhookBody,
  webhookCreatedOut,
  webhookDeletedOut,
  webhookIdParams,
  webhookListOut,
  webhookOut,
} from '../webhooks/webhooks-schemas.js';
import { problems, secured } from './common-schemas.js';

/** Thin adapters over the webhooks service (CONTRACT.md "webhooks"; admins only). */
export const webhookRoutes =
  ({ webhooks }: { webhooks: WebhooksService }) =>
  async (root: FastifyInstance) => {
    const app = root.withTypeProvider<ZodTypeProvider>();
    const tags = ['webhooks'];
    const params = webhookIdParams;

    app.post(
      '/v1/webhooks',
      {
        schema: {
          tags,
          security: secured,
          operationId: 'createWebhook',
          summary: 'Create an endpoint; the signing secret (whsec_...) is shown once. 422 webhook_url_refused under the SSRF rules',
          body: createWebhookBody,
          response: { 201: webhookCreatedOut, ...problems(400, 401, 403, 404, 422, 429) },
        },
      },
      async (req, reply) => {
        const out = await webhooks.create(req.ctx, req.body);
        reply.code(201);
        return out;
      },
    );
    app.get(
      '/v1/webhooks',
      {
        schema: {
          tags,
          security: secured,
          operationId: 'listWebhooks',
          summary: 'The organisation’s endpoints (never their secrets)',
          response: { 200: webhookListOut, ...problems(401, 403, 404, 429) },
        },
      },
      (req) => webhooks.list(req.ctx),
    );
    app.get(
      '/v1/webhooks/:id',
      {
        schema: {
          tags,
          security: secured,
          operationId: 'getWebhook',
          summary: 'One endpoint',
          params,
          response: { 200: webhookOut, ...problems(400, 401, 403, 404, 429) },
        },
      },
      (req) => webhooks.get(req.ctx, req.params.id),
    );
    app.patch(
      '/v1/webhooks/:id',
      {
        schema: {
          tags,
          security: secured,
          operationId: 'updateWebhook',
          summary: 'Change the URL, filters or status (disable / enable)',
          params,
          body: updateWebhookBody,
          response: { 200: webhookOut, ...problems(400, 401, 403, 404, 422, 429) },
        },
      },
      (req) => webhooks.update(req.ctx, req.params.id, req.body),
    );
    app.delete(
      '/v1/webhooks/:id',
      {
        schema: {
          tags,
          security: secured,
          operationId: 'deleteWebhook',
          summary: 'Delete an endpoint (its delivery log stays)',
          params,
          response: { 200: webhookDeletedOut, ...problems(400, 401, 403, 404, 429) },
        },
      },
      (req) => webhooks.remove(req.ctx, req.params.id),
    );
    app.post(
      '/v1/webhooks/:id/rotate-secret',
      {
        schema: {
          tags,
          security: secured,
          operationId: 'rotateWebhookSecret',
          summary: 'A new secret (shown once); the previous ones also sign for overlap_seconds (default 24 h)',
          params,
          body: rotateSecretBody,
          response: { 200: rotateSecretOut, ...problems(400, 401, 403, 404, 429) },
        },
      },
      (req) => webhooks.rotateSecret(req.ctx, req.params.id, req.body.overlap_seconds),
    );
    app.post(
      '/v1/webhooks/:id/replay',
      {
        schema: {
          tags,
          security: secured,
          operationId: 'replayWebhook',
          summary: 'Send events again: one (event_id) or every matching one since a time (at most 10,000)',
          params,
          body: replayBody,
          response: { 200: replayOut, ...problems(400, 401, 403, 404, 422, 429) },
        },
      },
      (req) => webhooks.replay(req.ctx, req.params.id, req.body),
    );
    app.get(
      '/v1/webhooks/:id/deliveries',
      {
        schema: {
          tags,
          security: secured,
          operationId: 'listWebhookDeliveries',
          summary: 'The delivery log, newest first: one row per attempt (status code, latency, error; never the response body)',
          params,
          querystring: deliveriesQuery,
          response: { 200: deliveriesOut, ...problems(400, 401, 403, 404, 429) },
        },
      },
      (req) => webhooks.deliveries(req.ctx, req.params.id, req.query),
    );
  };
