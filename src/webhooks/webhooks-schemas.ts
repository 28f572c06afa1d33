import { z } from 'zod';
import { DOMAIN_EVENT_TYPE_NAMES, DOMAIN_EVENT_TYPES } from '../events/event-types.js';
import { intQuery } from '../kernel/query-int.js';

/** The event types, each with what its `data` carries (OpenAPI: an enum with a description per value). */
export const eventTypeSchema = z.enum(DOMAIN_EVENT_TYPE_NAMES as [string, ...string[]]).describe(
  `Domain event type. Data shapes: ${Object.entries(DOMAIN_EVENT_TYPES)
    .map(([t, d]) => `${t}: ${d}`)
    .join('; ')}`,
);

const mailboxId = z.string().regex(/^mbx_[0-9a-f]{32}$/, 'must be a mbx_ id');
const cursor = z.string().regex(/^[A-Za-z0-9_-]{1,200}$/, 'must be a cursor from next_cursor');

/** A domain event on the wire (events API, stream, webhook bodies): ids, statuses, reason codes, counts; never PHI. */
export const eventOut = z.object({
  id: z.string().describe('evt_...: also the webhook-id header of its deliveries'),
  seq: z.number().int().describe('per-organisation sequence number (the stream `id:` field; Last-Event-ID resumes after it)'),
  type: eventTypeSchema,
  occurred_at: z.string(),
  org_id: z.string(),
  mailbox_id: z.string().nullable(),
  email_id: z.string().nullable(),
  approval_id: z.string().nullable(),
  data: z.record(z.string(), z.unknown()).describe('non-PHI facts of the event; see the type description'),
});

const csv = <T extends z.ZodType<string, string>>(item: T, max: number) =>
  z
    .string()
    .max(4000)
    .transform((s) =>
      s
        .split(',')
        .map((x) => x.trim())
        .filter(Boolean),
    )
    .pipe(z.array(item).max(max));

export const listEventsQuery = z.strictObject({
  types: csv(eventTypeSchema, 50).optional().describe('comma-separated event types'),
  mailbox_ids: csv(mailboxId, 100).optional().describe('comma-separated mailbox ids (an agent: only its own; others answer 404)'),
  since: z.iso.datetime({ offset: true }).optional().describe('only events that occurred at or after this time'),
  cursor: cursor.optional(),
  order: z.enum(['asc', 'desc']).default('asc'),
  limit: intQuery(1, 500).default(100),
});
export type ListEventsQuery = z.infer<typeof listEventsQuery>;

export const eventListOut = z.object({
  events: z.array(eventOut),
  next_cursor: z.string().nullable().describe('asc: always set (poll with it: it never skips an event); desc: null after the oldest page'),
});

export const streamEventsQuery = z.strictObject({
  types: csv(eventTypeSchema, 50).optional(),
  mailbox_ids: csv(mailboxId, 100).optional(),
  cursor: cursor.optional().describe('resume after this cursor (from GET /v1/events); Last-Event-ID takes precedence'),
});
export type StreamEventsQuery = z.infer<typeof streamEventsQuery>;

export const webhookIdParams = z.strictObject({ id: z.string().regex(/^whk_[0-9a-f]{32}$/, 'must be a whk_ id') });

const url = z.string().min(8).max(2048).describe('https URL (plain http only for MAILWARD_WEBHOOK_ALLOW_HOSTS entries)');
export const createWebhookBody = z.strictObject({
  url,
  description: z.string().max(200).optional(),
  event_types: z.array(eventTypeSchema).max(50).optional().describe('[] or absent: every type'),
  mailbox_ids: z.array(mailboxId).max(100).optional().describe('[] or absent: every mailbox'),
});
export type CreateWebhookBody = z.infer<typeof createWebhookBody>;

export const updateWebhookBody = z.strictObject({
  url: url.optional(),
  description: z.string().max(200).optional(),
  event_types: z.array(eventTypeSchema).max(50).optional(),
  mailbox_ids: z.array(mailboxId).max(100).optional(),
  status: z.enum(['active', 'disabled']).optional().describe('disabled: nothing is sent; active again: fan-out resumes where it stopped'),
});
export type UpdateWebhookBody = z.infer<typeof updateWebhookBody>;

export const webhookOut = z.object({
  id: z.string(),
  url: z.string(),
  description: z.string(),
  event_types: z.array(z.string()),
  mailbox_ids: z.array(z.string()),
  status: z.enum(['active', 'disabled']),
  disabled_reason: z.string().nullable(),
  consecutive_failures: z.number().int(),
  last_success_at: z.string().nullable(),
  last_failure_at: z.string().nullable(),
  created_at: z.string(),
  updated_at: z.string(),
});
export type WebhookOut = z.infer<typeof webhookOut>;
export const webhookCreatedOut = webhookOut.extend({ secret: z.string().describe('whsec_...: shown once') });
export const webhookListOut = z.object({ webhooks: z.array(webhookOut) });
export const webhookDeletedOut = z.object({ id: z.string(), deleted: z.literal(true) });

export const rotateSecretBody = z.strictObject({
  overlap_seconds: z
    .number()
    .int()
    .min(0)
    .max(7 * 86_400)
    .default(86_400)
    .describe('how long the previous secrets keep signing (default 24 h; 0 ends them now)'),
});
export const rotateSecretOut = z.object({
  id: z.string(),
  secret: z.string().describe('the new whsec_... secret: shown once'),
  previous_expires_at: z.string().describe('until when deliveries also carry signatures of the previous secrets'),
});

export const replayBody = z
  .strictObject({
    since: z.iso.datetime({ offset: true }).optional().describe('every matching event that occurred at or after this time'),
    event_id: z
      .string()
      .regex(/^evt_[0-9a-f]{32}$/)
      .optional()
      .describe('one event'),
  })
  .refine((b) => (b.since === undefined) !== (b.event_id === undefined), 'give exactly one of since or event_id');
export type ReplayBody = z.infer<typeof replayBody>;
export const replayOut = z.object({
  queued: z.number().int().describe('deliveries queued (each re-sends the event with its own webhook-id)'),
  capped: z.boolean().describe('true when more events matched than one replay queues (10,000): replay again from the last one'),
  last_event_id: z.string().nullable(),
});

export const deliveriesQuery = z.strictObject({
  cursor: cursor.optional(),
  limit: intQuery(1, 500).default(100),
  event_id: z
    .string()
    .regex(/^evt_[0-9a-f]{32}$/)
    .optional(),
});
export const attemptOut = z.object({
  id: z.string(),
  delivery_id: z.string(),
  event_id: z.string(),
  attempt: z.number().int(),
  at: z.string(),
  outcome: z.enum(['delivered', 'failed', 'refused']),
  status_code: z.number().int().nullable(),
  latency_ms: z.number().int(),
  error: z.string().nullable().describe('error class and text; never the response body'),
});
export const deliveriesOut = z.object({ deliveries: z.array(attemptOut), next_cursor: z.string().nullable() });
