import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { emailAddress } from '../identity/identity-schemas.js';
import type { MailRetention } from '../mail/mail-retention.js';
import { idParams, problems, secured } from './common-schemas.js';

const policyOut = z.object({ message_retention_days: z.number().int(), minimum_days: z.number().int() });

const holdOut = z.object({
  id: z.string(),
  scope: z.enum(['mailbox', 'thread', 'contact']),
  mailbox_id: z.string().optional(),
  thread_id: z.string().optional(),
  contact_hash: z.string().optional().describe('the contact hash of the held address (the address itself is not kept)'),
  matter: z.string(),
  created_by: z.string(),
  created_at: z.string(),
  released_by: z.string().nullable(),
  released_at: z.string().nullable(),
});

const matter = z.string().trim().min(1).max(200).describe('matter or case reference; no PHI');
const holdBody = z.discriminatedUnion('scope', [
  z.strictObject({ scope: z.literal('mailbox'), mailbox_id: z.string().regex(/^mbx_[0-9a-f]{32}$/, 'must be a mbx_ id'), matter }),
  z.strictObject({ scope: z.literal('thread'), thread_id: z.string().regex(/^thr_[0-9a-f]{32}$/, 'must be a thr_ id'), matter }),
  z.strictObject({ scope: z.literal('contact'), address: emailAddress, matter }),
]);

/** Thin adapters over message retention: the policy, legal holds on mail (the purge itself is `mailward mail purge` and `serve`). */
export const mailRetentionRoutes =
  ({ retention }: { retention: MailRetention }) =>
  async (root: FastifyInstance) => {
    const app = root.withTypeProvider<ZodTypeProvider>();
    const tags = ['retention'];
    app.get(
      '/v1/mail/retention',
      {
        schema: {
          operationId: 'getMailRetention',
          tags,
          security: secured,
          summary: 'How long message content is kept after its last status change (admin, privacy_officer, auditor)',
          response: { 200: policyOut, ...problems(401, 403, 404) },
        },
      },
      (req) => retention.policy(req.ctx),
    );
    app.put(
      '/v1/mail/retention',
      {
        schema: {
          operationId: 'setMailRetention',
          tags,
          security: secured,
          summary: 'Set the message retention period, at least 2190 days (admin, privacy_officer)',
          body: z.strictObject({ message_retention_days: z.number().int().min(1).max(36_500) }),
          response: { 200: policyOut, ...problems(400, 401, 403, 404, 422) },
        },
      },
      (req) => retention.setPolicy(req.ctx, req.body.message_retention_days),
    );
    app.get(
      '/v1/mail/legal-holds',
      {
        schema: {
          operationId: 'listMailLegalHolds',
          tags,
          security: secured,
          summary: 'Legal holds on mail of your organization (admin, privacy_officer, auditor)',
          response: { 200: z.object({ legal_holds: z.array(holdOut) }), ...problems(401, 403, 404) },
        },
      },
      async (req) => ({ legal_holds: await retention.listHolds(req.ctx) }),
    );
    app.post(
      '/v1/mail/legal-holds',
      {
        schema: {
          operationId: 'placeMailLegalHold',
          tags,
          security: secured,
          summary: 'Hold a mailbox, a thread or a contact address: no content they cover is purged (admin, privacy_officer)',
          body: holdBody,
          response: { 201: holdOut, ...problems(400, 401, 403, 404) },
        },
      },
      async (req, reply) => reply.code(201).send(await retention.placeHold(req.ctx, req.body)),
    );
    app.post(
      '/v1/mail/legal-holds/:id/release',
      {
        schema: {
          operationId: 'releaseMailLegalHold',
          tags,
          security: secured,
          summary: 'Release a legal hold on mail (admin, privacy_officer)',
          params: idParams('lgh'),
          response: { 200: holdOut, ...problems(400, 401, 403, 404, 409) },
        },
      },
      (req) => retention.releaseHold(req.ctx, req.params.id),
    );
  };
