import { z } from 'zod';
import { OVERSIGHT_MODES } from '../oversight/oversight-modes.js';
import { CONSENT_CATEGORIES } from '../phi/consent-schemas.js';
import { phiFindingOut, phiPolicySchema } from '../phi/phi-schemas.js';
import { intQuery } from '../kernel/query-int.js';
import { slotValues } from '../templates/templates-schemas.js';
import { hasUnsafeHeaderChars } from './header-text.js';

// RFC 5322 3.2.3 dot-atom local part @ a domain; no whitespace, CR or LF anywhere (header injection).
// RFC 5321 4.5.3.1.1: a local part is at most 64 octets (the lookahead).
const EMAIL_RE =
  /^(?=[^@]{1,64}@)[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z][A-Za-z0-9-]{0,61}[A-Za-z0-9]$/;
export const emailAddress = z.string().max(254).regex(EMAIL_RE, 'must be a plain address such as name@example.org');

/** A single-line header value: CR and LF can never reach a header (header injection). */
const headerText = (max: number) =>
  z
    .string()
    .max(max)
    .refine((s) => !/[\r\n\0]/.test(s), 'must not contain CR, LF or NUL');

/** Text shown as a name or subject in a header: the name character rules of src/mail/header-text.ts (no controls, bidi overrides or line breaks). */
const nameText = (max: number) =>
  headerText(max).refine(
    (s) => !hasUnsafeHeaderChars(s),
    'must not contain control characters, bidirectional overrides or line separators',
  );

export const MAX_RECIPIENTS = 50;

export const oversightMode = z.enum(OVERSIGHT_MODES);

/**
 * Inbound mail failing DMARC: `quarantine` (the default; status
 * `quarantined`, still listed, a reviewer may release it) when the sender's
 * domain publishes p=quarantine or p=reject, or when the mail claims the
 * organisation's own domain without passing DMARC; `flag` (an admin's explicit
 * opt-in) delivers it as `received` with the flags.
 */
export const dmarcFailure = z
  .enum(['flag', 'quarantine'])
  .describe(
    "inbound mail failing DMARC: quarantine (default: when the sender's policy is p=quarantine or p=reject, or the mail claims the organisation's own domain without passing DMARC) or flag (admin opt-in: delivered with the flags)",
  );

export const DEFAULT_DMARC_FAILURE = 'quarantine' as const;

export const createMailboxBody = z.strictObject({
  agent_id: z.string().regex(/^agt_[0-9a-f]{32}$/),
  address: emailAddress.optional(),
  display_name: nameText(200).pipe(z.string().min(1)),
  oversight_mode: oversightMode.optional(),
  forward_to: emailAddress.nullable().optional(),
  phi_policy: phiPolicySchema.nullable().optional(),
  dmarc_failure: dmarcFailure.optional(),
  allow_templates: z
    .boolean()
    .optional()
    .describe('gated_send: sends of an approved template flow as monitored, without a per-message approval (admin; default false)'),
});

export const updateMailboxBody = z.strictObject({
  oversight_mode: oversightMode.optional(),
  display_name: nameText(200).pipe(z.string().min(1)).optional(),
  forward_to: emailAddress.nullable().optional(),
  phi_policy: phiPolicySchema.nullable().optional().describe('null restores the default policy; admin or privacy_officer'),
  dmarc_failure: dmarcFailure.optional(),
  allow_templates: z.boolean().optional().describe('true needs an admin; false is a tightening a reviewer may make'),
});

export const mailboxOut = z.object({
  id: z.string(),
  agent_id: z.string(),
  address: z.string(),
  display_name: z.string(),
  oversight_mode: oversightMode,
  forward_to: z.string().nullable(),
  phi_policy: phiPolicySchema.nullable(),
  dmarc_failure: dmarcFailure,
  allow_templates: z.boolean(),
  created_at: z.string(),
  updated_at: z.string(),
});

export const attachmentIn = z.strictObject({
  filename: headerText(255).pipe(z.string().min(1)),
  content_type: z
    .string()
    .max(127)
    .regex(/^[a-z0-9][a-z0-9!#$&^_.+-]*\/[a-z0-9][a-z0-9!#$&^_.+-]*$/i, 'must be a MIME type'),
  content_base64: z.string().regex(/^[A-Za-z0-9+/]*={0,2}$/, 'must be base64'),
});

const recipients = z.array(emailAddress).max(MAX_RECIPIENTS);

const tagList = z
  .array(
    z
      .string()
      .min(1)
      .max(64)
      .regex(/^[A-Za-z0-9:_.-]+$/),
  )
  .max(20);

export const tagsBody = z.strictObject({
  tags: tagList.describe(
    'the agent tags, replacing the previous ones; system tags (phi, part2, categories, bounce, unparsed) are kept whatever is sent',
  ),
});

/** The three views of a message's tags: `tags` (the union, as before), the system's (derived from content) and the agent's own. */
const tagViews = {
  tags: z.array(z.string()).describe('system_tags and agent_tags together'),
  system_tags: z
    .array(z.string())
    .describe(
      'derived by Mailward from the content (phi, part2, prescription, ...); an agent cannot change them, and an agent sees none on a message whose content is hidden',
    ),
  agent_tags: z.array(z.string()).describe('set by the agent (PUT /v1/emails/{id}/tags, tag_email) or given at send'),
};

/** PUT /v1/emails/{id}/tags and MCP tag_email. */
export const tagsOut = z.object({ id: z.string(), ...tagViews });

/** CONTRACT.md (second wave): what kind of message this is, checked against each recipient's consent categories. */
export const messageCategory = z
  .enum(CONSENT_CATEGORIES)
  .describe('consent category of the message; a recipient whose consent lists other categories only makes it held (consent_category)');

/** CONTRACT.md (second wave): the rejected message (msg_...) a send or reply revises. */
const revisionOf = z
  .string()
  .regex(/^msg_[0-9a-f]{32}$/, 'must be the msg_ id of a rejected message')
  .describe('the rejected message this one revises: the new approval links to the earlier one, and no header names the rejected message');

/** CONTRACT.md (second wave): the clinician (hum_...) an agent sends for, under a live grant for the message's category. */
const onBehalfOf = z
  .string()
  .regex(/^hum_[0-9a-f]{32}$/, 'must be the hum_ id of a clinician')
  .describe('the clinician this message is sent for: needs a category and a live grant (POST /v1/grants), else 403 no_grant');

export const sendBody = z
  .strictObject({
    to: recipients.min(1),
    cc: recipients.optional(),
    bcc: recipients.optional(),
    subject: nameText(998).optional(),
    text: z.string().optional(),
    html: z.string().optional(),
    tags: tagList.optional(),
    template_id: z
      .string()
      .regex(/^tpl_[0-9a-f]{32}$/, 'must be a tpl_ id')
      .optional()
      .describe('send the approved version of this template, rendered with `slots`, instead of subject/text/html'),
    slots: slotValues.optional().describe('slot values of the template (each checked against its slot type)'),
    attachments: z.array(attachmentIn).max(20).optional(),
    in_reply_to: z
      .string()
      .max(998)
      .refine((s) => !/[\r\n\0]/.test(s), 'must not contain CR, LF or NUL')
      .optional(),
    category: messageCategory.optional(),
    revision_of: revisionOf.optional(),
    on_behalf_of: onBehalfOf.optional(),
  })
  .refine((b) => b.to.length + (b.cc?.length ?? 0) + (b.bcc?.length ?? 0) <= MAX_RECIPIENTS, {
    message: `at most ${MAX_RECIPIENTS} recipients in to, cc and bcc together`,
    path: ['to'],
  })
  .refine((b) => b.template_id !== undefined || b.text !== undefined || b.html !== undefined, {
    message: 'text or html is required',
    path: ['text'],
  })
  .refine((b) => b.template_id !== undefined || b.subject !== undefined, { message: 'subject is required', path: ['subject'] })
  .refine(
    (b) => b.template_id === undefined || (b.subject === undefined && b.text === undefined && b.html === undefined && !b.attachments),
    { message: 'a template send takes template_id and slots, not subject, text, html or attachments', path: ['template_id'] },
  )
  .refine((b) => (b.template_id === undefined) === (b.slots === undefined), {
    message: 'template_id and slots go together',
    path: ['slots'],
  });

export const replyBody = z
  .strictObject({
    text: z.string().optional(),
    html: z.string().optional(),
    reply_all: z.boolean().optional(),
    category: messageCategory.optional(),
    revision_of: revisionOf.optional(),
    on_behalf_of: onBehalfOf.optional(),
    template_id: z
      .string()
      .regex(/^tpl_[0-9a-f]{32}$/, 'must be a tpl_ id')
      .optional()
      .describe("reply with the approved version of this template (its subject replaces the parent's), rendered with `slots`"),
    slots: slotValues.optional(),
  })
  .refine((b) => b.template_id !== undefined || b.text !== undefined || b.html !== undefined, {
    message: 'text or html is required',
    path: ['text'],
  })
  .refine((b) => b.template_id === undefined || (b.text === undefined && b.html === undefined), {
    message: 'a template reply takes template_id and slots, not text or html',
    path: ['template_id'],
  })
  .refine((b) => (b.template_id === undefined) === (b.slots === undefined), {
    message: 'template_id and slots go together',
    path: ['slots'],
  });

export const idempotencyKeyHeader = z
  .string()
  .min(1)
  .max(255)
  .regex(/^[\x21-\x7e]+$/, 'must be printable ASCII');

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
  revision_of: z
    .string()
    .nullable()
    .describe('the approval of the rejected message this one revises (its comment: GET /v1/emails/{id} revision)'),
  /** 21 CFR 11.50: who signed the decision, when, what it means and how they authenticated. */
  signature: z
    .object({ signer_id: z.string(), signer_name: z.string(), signed_at: z.string(), meaning: z.string(), auth_method: z.string() })
    .nullable(),
});

/** Sender authentication of an inbound message (src/inbound/auth-results.ts); null for outbound. */
export const authResultsOut = z.object({
  spf: z.object({ result: z.string(), domain: z.string().nullable() }).nullable(),
  dkim: z.array(
    z.object({
      result: z.string(),
      domain: z.string().nullable(),
      selector: z.string().nullable(),
      algo: z.string().nullable(),
      aligned: z.boolean(),
    }),
  ),
  dmarc: z.object({ result: z.string(), policy: z.string().nullable(), domain: z.string().nullable() }).nullable(),
  arc: z.object({ result: z.string() }).nullable(),
  flags: z
    .array(z.string())
    .describe('problems a reader must see: dmarc_fail, dkim_fail, spf_fail, no_authentication...; empty when all passed'),
});

export const emailOut = z.object({
  id: z.string(),
  mailbox_id: z.string(),
  direction: z.string(),
  status: z.string(),
  status_reason: z.record(z.string(), z.unknown()).nullable().describe('why it is held, rejected, bounced or quarantined'),
  content_hidden: z.literal(false),
  from: z.string(),
  from_name: z.string().nullable(),
  to: z.array(z.string()),
  cc: z.array(z.string()),
  bcc: z.array(z.string()),
  subject: z.string(),
  text: z.string().nullable(),
  html: z.string().nullable(),
  attachments: z.array(
    z.object({
      index: z.number().describe('for GET /v1/emails/{id}/attachments/{index}'),
      filename: z.string(),
      content_type: z.string(),
      size: z.number(),
    }),
  ),
  ...tagViews,
  phi_findings: z.array(phiFindingOut),
  phi_sensitivity: z.string().nullable(),
  auth_results: authResultsOut.nullable(),
  is_read: z.boolean(),
  unread: z.boolean(),
  thread_id: z.string(),
  message_id: z.string(),
  in_reply_to: z.string().nullable(),
  references: z.array(z.string()),
  oversight_mode: z.string(),
  created_at: z.string(),
  delivered_at: z.string().nullable(),
  on_behalf_of: z
    .object({ id: z.string(), name: z.string(), npi: z.string().nullable(), category: z.string(), grant_id: z.string() })
    .nullable()
    .describe('the clinician this message was sent for, and the grant it was sent under'),
  content_purged_at: z
    .string()
    .nullable()
    .describe('when retention destroyed the content (subject, bodies, addresses, attachments); metadata and hashes stay'),
  approval: approvalOut.nullable(),
  original: z.record(z.string(), z.unknown()).nullable(),
  revision: z
    .object({
      of_email_id: z.string(),
      of_approval_id: z.string().nullable(),
      rejection_comment: z.string().nullable(),
      changes: z.array(z.object({ field: z.string(), before: z.unknown(), after: z.unknown() })),
      text_diff: z.string().nullable().describe('unified diff of the text body, rejected version first'),
    })
    .nullable()
    .describe('for a revision: the rejected message it replaces, the reviewer’s comment and what changed'),
  events: z.array(eventOut),
});

/** What an agent sees of an inbound message no reviewer has released (held in gated_all, or quarantined). */
export const heldEmailOut = z.object({
  id: z.string(),
  mailbox_id: z.string(),
  direction: z.string(),
  status: z.string(),
  status_reason: z.record(z.string(), z.unknown()).nullable(),
  content_hidden: z.literal(true),
  from: z.string(),
  ...tagViews,
  auth_results: authResultsOut.nullable(),
  is_read: z.boolean(),
  unread: z.boolean(),
  thread_id: z.string(),
  created_at: z.string(),
  approval: z.object({ id: z.string(), status: z.string(), created_at: z.string(), expires_at: z.string() }).nullable(),
});

export const emailOrHeldOut = z.discriminatedUnion('content_hidden', [emailOut, heldEmailOut]);

/** One row of a list, thread or search; a held inbound message shows an agent its sender and time only (subject null, to empty). */
export const messageSummaryOut = z.object({
  id: z.string(),
  mailbox_id: z.string(),
  direction: z.string(),
  status: z.string(),
  status_reason: z.record(z.string(), z.unknown()).nullable(),
  content_hidden: z.boolean(),
  from: z.string(),
  to: z.array(z.string()),
  subject: z.string().nullable(),
  attachment_count: z.number().nullable(),
  auth_flags: z.array(z.string()).nullable().describe('inbound: authentication problems (empty when all passed); null for outbound'),
  is_read: z.boolean(),
  unread: z.boolean(),
  thread_id: z.string(),
  message_id: z.string().nullable(),
  ...tagViews,
  created_at: z.string(),
});

const cursorParam = z.string().regex(/^[A-Za-z0-9_-]{1,200}$/, 'must be a cursor from next_cursor');
const isoParam = z.iso.datetime({ offset: true });
const tagParam = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[A-Za-z0-9:_.-]+$/);
const needle = (what: string) =>
  z
    .string()
    .min(1)
    .max(200)
    .describe(
      `case-insensitive text matched from the start of a word of the ${what} (narrowed by the blind search index, confirmed after decryption)`,
    );

import { MESSAGE_STATUSES } from './message-lifecycle.js';

export { MESSAGE_STATUSES };

/** GET /v1/mailboxes/{id}/messages. */
export const messagesQuery = z.strictObject({
  direction: z.enum(['inbound', 'outbound']).optional(),
  // A status no message can have is a mistake to report (400), not a filter that matches nothing.
  status: z.enum(MESSAGE_STATUSES).optional(),
  unread: z.enum(['true', 'false']).optional().describe('true: unread only; false: read only'),
  since: isoParam.optional().describe('created at or after (ISO-8601)'),
  until: isoParam.optional().describe('created before (ISO-8601)'),
  from: needle('sender (address or name)').optional(),
  subject: needle('subject').optional(),
  tag: tagParam.optional(),
  cursor: cursorParam.optional(),
  limit: intQuery(1, 200).default(50),
});

/** GET /v1/mailboxes/{id}/search: `q` over sender, subject and body text, plus the list filters. */
export const searchQuery = messagesQuery.extend({ q: needle('sender, subject or body text').optional() });

export const messagePageOut = z.object({
  messages: z.array(messageSummaryOut),
  next_cursor: z.string().nullable(),
  partial: z
    .boolean()
    .describe(
      'true when the scan budget ended the page before it was full (follow next_cursor for more), or when unreadable messages were skipped',
    ),
  unreadable: z
    .number()
    .int()
    .min(0)
    .describe(
      'messages skipped because their sealed content could not be opened (each audited as email.unreadable); partial is true when this is not 0',
    ),
});

export const searchPageOut = z.object({
  messages: z.array(messageSummaryOut.extend({ matched_in: z.array(z.enum(['from', 'subject', 'body'])) })),
  next_cursor: z.string().nullable(),
  partial: z.boolean(),
  unreadable: z
    .number()
    .int()
    .min(0)
    .describe(
      'messages skipped because their sealed content could not be opened (each audited as email.unreadable); partial is true when this is not 0',
    ),
});

export const attachmentParams = z.strictObject({
  id: z.string().regex(/^msg_[0-9a-f]{32}$/, 'must be a msg_ id'),
  index: z
    .string()
    .regex(/^\d{1,4}$/, 'must be an attachment index from GET /v1/emails/{id}')
    .transform(Number),
});

export const approveBody = z.strictObject({
  comment: z.string().max(4000).optional(),
  category: messageCategory
    .optional()
    .describe('reclassifies the message; consent is checked against it (default: the category it was sent with)'),
  edits: z
    .strictObject({
      subject: nameText(998).optional(),
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
