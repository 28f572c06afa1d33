import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { badRequest } from '../kernel/errors.js';
import {
  createMailboxBody,
  attachmentParams,
  emailOrHeldOut,
  idempotencyKeyHeader,
  mailboxOut,
  messagePageOut,
  messageSummaryOut,
  messagesQuery,
  replyBody,
  sendAccepted,
  searchPageOut,
  searchQuery,
  sendBody,
  tagsBody,
  tagsOut,
  updateMailboxBody,
} from '../mail/mail-schemas.js';
import { encodeMessageCursor, normalizeMessageFilter } from '../mail/mail-filters.js';
import type { MailboxService } from '../mail/mailbox-service.js';
import type { ReadService } from '../mail/read-service.js';
import type { SendService } from '../mail/send-service.js';
import { idParams, problems, secured } from './common-schemas.js';
import { openApi } from './openapi-registry.js';

type Deps = { mailboxes: MailboxService; mail: SendService; reader: ReadService; maxMessageBytes: number };

const idempotencyKeyOf = (req: FastifyRequest): string | undefined => {
  const h = req.headers['idempotency-key'];
  if (h === undefined) return undefined;
  const r = idempotencyKeyHeader.safeParse(h);
  if (!r.success) throw badRequest('invalid_idempotency_key', 'Idempotency-Key must be 1-255 printable ASCII characters.');
  return r.data;
};

/**
 * OpenAPI: the Idempotency-Key request header where send and reply honour it. Loose, so every other header
 * passes; its format is checked by idempotencyKeyOf, which answers 400 invalid_idempotency_key.
 */
const idempotencyHeaders = z.looseObject({
  'idempotency-key': z
    .string()
    .optional()
    .describe(
      'Makes retries safe: the same key with the same body returns the first message for 24 hours; with another body 409 idempotency_key_reused. 1-255 printable ASCII characters.',
    ),
});

const page = (r: { next: string | null; partial: boolean; unreadable: number }) => ({
  next_cursor: r.next ? encodeMessageCursor(r.next) : null,
  partial: r.partial,
  unreadable: r.unreadable,
});

/** Thin adapters over the mailbox and send services. */
export const mailRoutes = (deps: Deps) => async (root: FastifyInstance) => {
  const app = root.withTypeProvider<ZodTypeProvider>();
  const { mailboxes, mail, reader } = deps;
  const tags = ['mail'];
  // JSON carries attachments as base64 (4/3 of their size) plus the text parts.
  const sendBodyLimit = Math.ceil(deps.maxMessageBytes * 1.4) + 65_536;

  app.post(
    '/v1/mailboxes',
    {
      schema: {
        operationId: 'createMailbox',
        tags,
        security: secured,
        summary: 'Create a mailbox for an agent with its oversight mode (admin)',
        body: createMailboxBody,
        response: { 201: mailboxOut, ...problems(400, 401, 403, 404, 409, 422) },
      },
    },
    async (req, reply) => reply.code(201).send(await mailboxes.create(req.ctx, req.body)),
  );
  app.get(
    '/v1/mailboxes',
    {
      schema: {
        operationId: 'listMailboxes',
        tags,
        security: secured,
        summary: 'List mailboxes (an agent sees its own)',
        response: { 200: z.object({ mailboxes: z.array(mailboxOut) }).register(openApi, { id: 'MailboxList' }), ...problems(401) },
      },
    },
    async (req) => ({
      mailboxes: await mailboxes.list(req.ctx),
    }),
  );
  app.get(
    '/v1/mailboxes/:id',
    {
      schema: {
        operationId: 'getMailbox',
        tags,
        security: secured,
        summary: 'Read a mailbox',
        params: idParams('mbx'),
        response: { 200: mailboxOut, ...problems(400, 401, 404) },
      },
    },
    (req) => mailboxes.get(req.ctx, req.params.id),
  );
  app.patch(
    '/v1/mailboxes/:id',
    {
      schema: {
        operationId: 'updateMailbox',
        tags,
        security: secured,
        summary: 'Change oversight mode, display name or forward_to; loosening oversight needs an admin',
        params: idParams('mbx'),
        body: updateMailboxBody,
        response: { 200: mailboxOut, ...problems(400, 401, 403, 404, 422) },
      },
    },
    (req) => mailboxes.update(req.ctx, req.params.id, req.body),
  );
  app.get(
    '/v1/mailboxes/:id/messages',
    {
      schema: {
        operationId: 'listMessages',
        tags,
        security: secured,
        summary:
          'List messages of a mailbox, newest first (held, rejected and quarantined ones included); from and subject match decrypted content within a scan budget',
        params: idParams('mbx'),
        querystring: messagesQuery,
        response: { 200: messagePageOut, ...problems(400, 401, 403, 404) },
      },
    },
    async (req) => {
      const r = await reader.list(req.ctx, req.params.id, normalizeMessageFilter(req.query));
      return { messages: r.messages, ...page(r) };
    },
  );
  app.get(
    '/v1/mailboxes/:id/search',
    {
      schema: {
        operationId: 'searchMessages',
        tags,
        security: secured,
        summary:
          'Search a mailbox: q over sender, subject and body text (case-insensitive), with the list filters; decrypts within a scan budget and pages by next_cursor',
        params: idParams('mbx'),
        querystring: searchQuery,
        response: { 200: searchPageOut, ...problems(400, 401, 403, 404) },
      },
    },
    async (req) => {
      const r = await reader.search(req.ctx, req.params.id, normalizeMessageFilter(req.query));
      return { messages: r.messages, ...page(r) };
    },
  );
  app.get(
    '/v1/emails/:id/attachments/:index',
    {
      schema: {
        operationId: 'getAttachment',
        tags,
        security: secured,
        summary: 'Download one attachment (index from GET /v1/emails/{id}); always Content-Disposition: attachment',
        params: attachmentParams,
        response: {
          200: z.any().describe("the attachment bytes, served with the attachment's content type"),
          ...problems(400, 401, 403, 404),
        },
      },
    },
    async (req, reply) => {
      const a = await reader.attachment(req.ctx, req.params.id, req.params.index);
      // Served from the API's origin: never rendered, never sniffed, sandboxed if a browser opens it anyway.
      return reply
        .type(a.contentType)
        .header('content-disposition', a.contentDisposition)
        .header('content-security-policy', "default-src 'none'; sandbox")
        .header('digest', `sha-256=${Buffer.from(a.sha256, 'hex').toString('base64')}`)
        .send(a.bytes);
    },
  );

  app.post(
    '/v1/mailboxes/:id/send',
    {
      bodyLimit: sendBodyLimit,
      schema: {
        operationId: 'sendEmail',
        tags,
        security: secured,
        headers: idempotencyHeaders,
        summary: "Send from the agent's own mailbox; held for approval in gated modes. Optional Idempotency-Key header.",
        params: idParams('mbx'),
        body: sendBody,
        response: { 202: sendAccepted, ...problems(400, 401, 403, 404, 409, 413, 422) },
      },
    },
    async (req, reply) => reply.code(202).send(await mail.send(req.ctx, req.params.id, req.body, idempotencyKeyOf(req))),
  );
  app.post(
    '/v1/emails/:id/reply',
    {
      bodyLimit: sendBodyLimit,
      schema: {
        operationId: 'replyEmail',
        tags,
        security: secured,
        headers: idempotencyHeaders,
        summary: "Reply in the thread of a message of the agent's mailbox",
        params: idParams('msg'),
        body: replyBody,
        response: { 202: sendAccepted, ...problems(400, 401, 403, 404, 409, 413, 422) },
      },
    },
    async (req, reply) => reply.code(202).send(await mail.reply(req.ctx, req.params.id, req.body, idempotencyKeyOf(req))),
  );
  app.post(
    '/v1/emails/:id/cancel',
    {
      schema: {
        operationId: 'cancelEmail',
        tags,
        security: secured,
        summary:
          'Cancel an outbound message not yet handed to SMTP (pending_approval, queued, deferred): the sending agent or an admin; 409 not_cancellable otherwise',
        params: idParams('msg'),
        response: { 200: sendAccepted, ...problems(400, 401, 403, 404, 409) },
      },
    },
    (req) => mail.cancel(req.ctx, req.params.id),
  );
  app.get(
    '/v1/emails/:id',
    {
      schema: {
        operationId: 'getEmail',
        tags,
        security: secured,
        summary:
          'Read a message with its status, approval, authentication results and events; marks an inbound message read. An agent sees a held inbound message (gated_all) as content_hidden',
        params: idParams('msg'),
        response: { 200: emailOrHeldOut, ...problems(400, 401, 403, 404) },
      },
    },
    (req) => reader.get(req.ctx, req.params.id),
  );
  app.put(
    '/v1/emails/:id/tags',
    {
      schema: {
        operationId: 'setEmailTags',
        tags,
        security: secured,
        summary: "Replace the caller's own tags of a message; system tags (phi, part2, categories) are kept and cannot be removed",
        params: idParams('msg'),
        body: tagsBody,
        response: { 200: tagsOut, ...problems(400, 401, 403, 404) },
      },
    },
    (req) => reader.setTags(req.ctx, req.params.id, req.body.tags),
  );
  app.get(
    '/v1/threads/:id',
    {
      schema: {
        operationId: 'getThread',
        tags,
        security: secured,
        summary: 'Messages of a thread the caller may see',
        params: idParams('thr'),
        response: {
          200: z.object({
            id: z.string(),
            messages: z.array(messageSummaryOut),
            partial: z.boolean().describe('true when a message of the thread could not be opened and was left out'),
            unreadable: z.number().int().describe('messages left out because their sealed content could not be opened'),
          }),
          ...problems(400, 401, 403, 404),
        },
      },
    },
    (req) => reader.thread(req.ctx, req.params.id),
  );
};
