import { z } from 'zod';
import { slotValues } from '../templates/templates-schemas.js';
import { emailAddress, idempotencyKeyHeader, MAX_RECIPIENTS, messageCategory } from './mail-schemas.js';

export const MAX_BULK_ROWS = 10_000;

const recipients = z.array(emailAddress).max(MAX_RECIPIENTS);

/** One row of a bulk send: its recipients, slot values and idempotency key (the same key repeated sends nothing twice). */
export const bulkRow = z
  .strictObject({
    to: recipients.min(1),
    cc: recipients.optional(),
    slots: slotValues,
    idempotency_key: idempotencyKeyHeader,
    category: messageCategory.optional(),
  })
  .refine((r) => r.to.length + (r.cc?.length ?? 0) <= MAX_RECIPIENTS, {
    message: `at most ${MAX_RECIPIENTS} recipients in to and cc together`,
    path: ['to'],
  });
export type BulkRow = z.infer<typeof bulkRow>;

/** POST /v1/mailboxes/{id}/send-bulk and MCP send_template_bulk: one approved template, up to 10,000 rows. */
export const bulkBody = z.strictObject({
  template_id: z.string().regex(/^tpl_[0-9a-f]{32}$/, 'must be a tpl_ id'),
  rows: z.array(bulkRow).min(1).max(MAX_BULK_ROWS),
  tags: z
    .array(
      z
        .string()
        .min(1)
        .max(64)
        .regex(/^[A-Za-z0-9:_.-]+$/),
    )
    .max(20)
    .optional(),
});
export type BulkInput = z.infer<typeof bulkBody>;

export const bulkResult = z.object({
  row: z.number().int().describe('index of the row in the request'),
  idempotency_key: z.string(),
  status: z.string().describe('queued, pending_approval (held: see the email for the reasons) or refused (code says why)'),
  email_id: z.string().optional(),
  code: z.string().optional(),
  detail: z.string().optional(),
});
export type BulkResult = z.infer<typeof bulkResult>;

export const bulkOut = z.object({
  template_id: z.string(),
  counts: z.object({ queued: z.number(), pending_approval: z.number(), refused: z.number() }),
  results: z.array(bulkResult),
});
