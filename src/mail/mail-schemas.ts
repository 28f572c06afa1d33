import { z } from 'zod';
import { OVERSIGHT_MODES } from '../oversight/oversight-modes.js';
import { phiFindingOut, phiPolicySchema } from '../phi/phi-schemas.js';

// RFC 5322 3.2.3 dot-atom local part @ a domain; no whitespace, CR or LF anywhere (header injection).
const EMAIL_RE = /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z][A-Za-z0-9-]{0,61}[A-Za-z0-9]$/;
export const emailAddress = z.string().max(254).regex(EMAIL_RE, 'must be a plain address such as name@example.org');

/** A single-line header value: CR and LF can never reach a header (header injection). */
const headerText = (max: number) =>
  z
    .string()
    .max(max)
    .refine((s) => !/[\r\n\0]/.test(s), 'must not contain CR, LF or NUL');

export const MAX_RECIPIENTS = 50;

export const oversightMode = z.enum(OVERSIGHT_MODES);

export const createMailboxBody = z.strictObject({
  agent_id: z.string().regex(/^agt_[0-9a-f]{32}$/),
  address: emailAddress.optional(),
  display_name: headerText(200).pipe(z.string().min(1)),
  oversight_mode: oversightMode.optional(),
  forward_to: emailAddress.nullable().optional(),
  phi_policy: phiPolicySchema.nullable().optional(),
});

export const updateMailboxBody = z.strictObject({
  oversight_mode: oversightMode.optional(),
  display_name: headerText(200).pipe(z.string().min(1)).optional(),
  forward_to: emailAddress.nullable().optional(),
  phi_policy: phiPolicySchema.nullable().optional().describe('null restores the default policy; admin or privacy_officer'),
});

export const mailboxOut = z.object({
  id: z.string(),
  agent_id: z.string(),
  address: z.string(),
  display_name: z.string(),
  oversight_mode: oversightMode,
  forward_to: z.string().nullable(),
  phi_policy: phiPolicySchema.nullable(),
  created_at: z.string(),
  updated_at: z.string(),
});

export const attachmentIn = z.strictObject({
  filename: headerText(255).pipe(z.string().min(1)),
  content_type: z.string().max(127).regex(/^[a-z0-9][a-z0-9!#$&^_.+-]*\/[a-z0-9][a-z0-9!#$&^_.+-]*$/i, 'must be a MIME type'),
  content_base64: z.string().regex(/^[A-Za-z0-9+/]*={0,2}$/, 'must be base64'),
});

const recipients = z.array(emailAddress).max(MAX_RECIPIENTS);

const tagList = z.array(z.string().min(1).max(64).regex(/^[A-Za-z0-9:_.-]+$/)).max(20);

export const tagsBody = z.strictObject({ tags: tagList });


export const sendBody = z
  .strictObject({
    to: recipients.min(1),
    cc: recipients.optional(),
    bcc: recipients.optional(),
    subject: headerText(998),
    text: z.string().optional(),
    html: z.string().optional(),
    tags: tagList.optional(),
    attachments: z.array(attachmentIn).max(20).optional(),
    in_reply_to: z.string().max(998).refine((s) => !/[\r\n\0]/.test(s), 'must not contain CR, LF or NUL').optional(),
  })
  .refine((b) => b.to.length + (b.cc?.length ?? 0) + (b.bcc?.length ?? 0) <= MAX_RECIPIENTS, {
    message: `at most ${MAX_RECIPIENTS} recipients in to, cc and bcc together`,
    path: ['to'],
  })
  .refine((b) => b.text !== undefined || b.html !== undefined, { message: 'text or html is required', path: ['text'] });

export const replyBody = z
  .strictObject({ text: z.string().optional(), html: z.string().optional(), reply_all: z.boolean().optional() })
  .refine((b) => b.text !== undefined || b.html !== undefined, { message: 'text or html is required', path: ['text'] });

export const idempotencyKeyHeader = z.string().min(1).max(255).regex(/^[\x21-\x7e]+$/, 'must be printable ASCII');

export const sendAccepted = z.object({ id: z.string(), status: z.string(), thread_id: z.string() });

export const eventOut = z.object({ at: z.string(), type: z.string(), details: z.record(z.string(), z.unknown()) });

export const editDiff = z.object({ field: z.string(), before_hash: z.string(), after_hash: z.string() });

export const approvalOut = z.object({
  id: z.string(),
  email_id: z.string(),
  mailbox_id: z.string(),
  direction: z.string(),
  status: z.string(),
  reasons: z.array(z.record(z.string(), z.unknown())),
  phi_findings: z.array(phiFindingOut),
  phi_sensitivity: z.string().nullable(),
  created_at: z.string(),
  expires_at: z.string(),
  decided_at: z.string().nullable(),
  decided_by: z.string().nullable(),
  decision_reason: z.record(z.string(), z.unknown()).nullable(),
  comment: z.string().nullable(),
  edits: z.array(editDiff),
});

export const emailOut = z.object({
  id: z.string(),
  mailbox_id: z.string(),
  direction: z.string(),
  status: z.string(),
  status_reason: z.record(z.string(), z.unknown()).nullable(),
  from: z.string(),
  to: z.array(z.string()),
  cc: z.array(z.string()),
  bcc: z.array(z.string()),
  subject: z.string(),
  text: z.string().nullable(),
  html: z.string().nullable(),
  attachments: z.array(z.object({ filename: z.string(), content_type: z.string(), size: z.number() })),
  tags: z.array(z.string()),
  phi_findings: z.array(phiFindingOut),
  phi_sensitivity: z.string().nullable(),
  thread_id: z.string(),
  message_id: z.string(),
  in_reply_to: z.string().nullable(),
  references: z.array(z.string()),
  oversight_mode: z.string(),
  created_at: z.string(),
  delivered_at: z.string().nullable(),
  approval: approvalOut.nullable(),
  original: z.record(z.string(), z.unknown()).nullable(),
  events: z.array(eventOut),
});

export const messageSummaryOut = z.object({
  id: z.string(),
  mailbox_id: z.string(),
  direction: z.string(),
  status: z.string(),
  from: z.string(),
  to: z.array(z.string()),
  subject: z.string(),
  thread_id: z.string(),
  message_id: z.string(),
  tags: z.array(z.string()),
  created_at: z.string(),
});

export const approveBody = z.strictObject({
  comment: z.string().max(4000).optional(),
  edits: z
    .strictObject({
      subject: headerText(998).optional(),
      text: z.string().optional(),
      html: z.string().optional(),
      to: recipients.min(1).optional(),
      cc: recipients.optional(),
    })
    .optional(),
});

export const rejectBody = z.strictObject({ comment: z.string().trim().min(1).max(4000) });

export type SendInput = z.infer<typeof sendBody>;
export type ReplyInput = z.infer<typeof replyBody>;
export type ApproveInput = z.infer<typeof approveBody>;
