import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { badRequest } from '../kernel/errors.js';
import {
  createMailboxBody,
  emailOut,
  idempotencyKeyHeader,
  mailboxOut,
  messageSummaryOut,
  replyBody,
  sendAccepted,
  sendBody,
  tagsBody,
  updateMailboxBody,
} from '../mail/mail-schemas.js';
import type { MailboxService } from '../mail/mailbox-service.js';
import type { SendService } from '../mail/send-service.js';
import { cursorQuery, decodeCursor, encodeCursor, idParams, problems, secured } from './common-schemas.js';

type Deps = { mailboxes: MailboxService; mail: SendService; maxMessageBytes: number };

const idempotencyKeyOf = (req: FastifyRequest): string | undefined => {
  const h = req.headers['idempotency-key'];
  if (h === undefined) return undefined;
  const r = idempotencyKeyHeader.safeParse(h);
  if (!r.success) throw badRequest('invalid_idempotency_key', 'Idempotency-Key must be 1-255 printable ASCII characters.');
  return r.data;
};

const messagesQuery = z.strictObject({
  direction: z.enum(['inbound', 'outbound']).optional(),
  status: z.string().regex(/^[a-z_]{1,32}$/).optional(),
  unread: z.enum(['true', 'false']).optional(),
  cursor: cursorQuery.optional(),
  limit: z.coerce.number().int().min(1).max(200).default(50),
});

/** Thin adapters over the mailbox and send services (issue 6). */
export const mailRoutes = (deps: Deps) => async (root: FastifyInstance) => {
  const app = root.withTypeProvider<ZodTypeProvider>();
  const { mailboxes, mail } = deps;
  const tags = ['mail'];
  // JSON carries attachments as base64 (4/3 of their size) plus the text parts.
  const sendBodyLimit = Math.ceil(deps.maxMessageBytes * 1.4) + 65_536;

  app.post('/v1/mailboxes', { schema: { tags, security: secured, summary: 'Create a mailbox for an agent with its oversight mode (admin)', body: createMailboxBody, response: { 201: mailboxOut, ...problems(400, 401, 403, 404, 409, 422) } } }, async (req, reply) =>
    reply.code(201).send(await mailboxes.create(req.ctx, req.body)),
  );
  app.get('/v1/mailboxes', { schema: { tags, security: secured, summary: 'List mailboxes (an agent sees its own)', response: { 200: z.object({ mailboxes: z.array(mailboxOut) }), ...problems(401) } } }, async (req) => ({
    mailboxes: await mailboxes.list(req.ctx),
  }));
  app.get('/v1/mailboxes/:id', { schema: { tags, security: secured, summary: 'Read a mailbox', params: idParams('mbx'), response: { 200: mailboxOut, ...problems(400, 401, 404) } } }, (req) =>
    mailboxes.get(req.ctx, req.params.id),
  );
  app.patch('/v1/mailboxes/:id', { schema: { tags, security: secured, summary: 'Change oversight mode, display name or forward_to; loosening oversight needs an admin', params: idParams('mbx'), body: updateMailboxBody, response: { 200: mailboxOut, ...problems(400, 401, 403, 404, 422) } } }, (req) =>
    mailboxes.update(req.ctx, req.params.id, req.body),
  );
  app.get('/v1/mailboxes/:id/messages', { schema: { tags, security: secured, summary: 'List messages of a mailbox, newest first (held and rejected ones included)', params: idParams('mbx'), querystring: messagesQuery, response: { 200: z.object({ messages: z.array(messageSummaryOut), next_cursor: z.string().nullable() }), ...problems(400, 401, 403, 404) } } }, async (req) => {
    const q = req.query;
    const before = decodeCursor(q.cursor);
    if (before !== undefined && !/^msg_[0-9a-f]{32}$/.test(before)) throw badRequest('invalid_cursor', 'cursor must come from next_cursor.');
    const r = await mail.list(req.ctx, req.params.id, { direction: q.direction, status: q.status, unread: q.unread === 'true', before, limit: q.limit });
    return { messages: r.messages, next_cursor: r.next ? encodeCursor(r.next) : null };
  });

  app.post('/v1/mailboxes/:id/send', { bodyLimit: sendBodyLimit, schema: { tags, security: secured, summary: 'Send from the agent\'s own mailbox; held for approval in gated modes. Optional Idempotency-Key header.', params: idParams('mbx'), body: sendBody, response: { 202: sendAccepted, ...problems(400, 401, 403, 404, 409, 413, 422) } } }, async (req, reply) =>
    reply.code(202).send(await mail.send(req.ctx, req.params.id, req.body, idempotencyKeyOf(req))),
  );
  app.post('/v1/emails/:id/reply', { bodyLimit: sendBodyLimit, schema: { tags, security: secured, summary: 'Reply in the thread of a message of the agent\'s mailbox', params: idParams('msg'), body: replyBody, response: { 202: sendAccepted, ...problems(400, 401, 403, 404, 409, 413, 422) } } }, async (req, reply) =>
    reply.code(202).send(await mail.reply(req.ctx, req.params.id, req.body, idempotencyKeyOf(req))),
  );
  app.get('/v1/emails/:id', { schema: { tags, security: secured, summary: 'Read a message with its status, approval (reason, edits) and delivery events', params: idParams('msg'), response: { 200: emailOut, ...problems(400, 401, 403, 404) } } }, (req) =>
    mail.get(req.ctx, req.params.id),
  );
  app.put('/v1/emails/:id/tags', { schema: { tags, security: secured, summary: 'Replace the tags of a message', params: idParams('msg'), body: tagsBody, response: { 200: z.object({ id: z.string(), tags: z.array(z.string()) }), ...problems(400, 401, 403, 404) } } }, (req) =>
    mail.setTags(req.ctx, req.params.id, req.body.tags),
  );
  app.get('/v1/threads/:id', { schema: { tags, security: secured, summary: 'Messages of a thread the caller may see', params: idParams('thr'), response: { 200: z.object({ id: z.string(), messages: z.array(messageSummaryOut) }), ...problems(400, 401, 403, 404) } } }, (req) =>
    mail.thread(req.ctx, req.params.id),
  );
};
