import { z } from 'zod';
import { CONSENT_CATEGORIES } from '../phi/consent-schemas.js';

/** Slot types (README "Templates and bulk sends"): each has its own value rules and the PHI types its value may carry. */
export const SLOT_TYPES = ['patient_name', 'date', 'time', 'provider', 'location', 'short_text'] as const;
export type SlotType = (typeof SLOT_TYPES)[number];

export const MAX_SLOTS = 20;

const slotName = z
  .string()
  .regex(/^[a-z][a-z0-9_]{0,39}$/, 'must be lower-case letters, digits and _ (at most 40), starting with a letter');

export const slotDef = z.strictObject({
  name: slotName,
  type: z.enum(SLOT_TYPES),
  max_length: z.number().int().min(1).max(500).optional().describe('short_text only: the longest value (default 60)'),
});
export type SlotDef = z.infer<typeof slotDef>;

/** One line, no control or format characters: the subject is a header (header injection, bidi spoofing). */
const subjectText = z
  .string()
  .min(1)
  .max(998)
  .refine((s) => !/[\p{Cc}\p{Cf}\u2028\u2029]/u.test(s), 'must not contain control characters, format characters or line breaks');

const templateContent = {
  subject: subjectText,
  text: z.string().min(1).max(100_000),
  html: z.string().max(200_000).optional(),
  slots: z
    .array(slotDef)
    .max(MAX_SLOTS)
    .refine((a) => new Set(a.map((s) => s.name)).size === a.length, 'slot names must be unique'),
  category: z.enum(CONSENT_CATEGORIES).optional().describe('the consent category of messages sent from it'),
};

export const createTemplateBody = z.strictObject({
  name: z
    .string()
    .min(1)
    .max(120)
    .refine((s) => !/[\p{Cc}\p{Cf}]/u.test(s), 'must not contain control characters'),
  ...templateContent,
});
export type CreateTemplateInput = z.infer<typeof createTemplateBody>;

/** PUT /v1/templates/{id}: a new version, pending until approved; the last approved version stays in use meanwhile. */
export const updateTemplateBody = z.strictObject(templateContent);
export type UpdateTemplateInput = z.infer<typeof updateTemplateBody>;

export const approveTemplateBody = z.strictObject({
  version: z.number().int().min(1).optional().describe('the version approved (default: the newest); a stale number answers 409'),
});

/** Slot values of a send: checked against the approved version's slot types (422 invalid_slot naming the slot). */
export const slotValues = z
  .record(slotName, z.string().max(500))
  .refine((o) => Object.keys(o).length <= MAX_SLOTS, `at most ${MAX_SLOTS} slots`);
export type SlotValues = z.infer<typeof slotValues>;

export const signatureOut = z.object({
  signer: z.object({ id: z.string(), name: z.string() }),
  meaning: z.literal('approved as a template'),
  method: z.string(),
  key_id: z.string(),
  at: z.string(),
  content_hash: z.string(),
});

export const templateVersionOut = z.object({
  version: z.number(),
  subject: z.string(),
  text: z.string(),
  html: z.string().nullable(),
  slots: z.array(slotDef),
  category: z.string().nullable(),
  allowed_phi_types: z.array(z.string()),
  content_hash: z.string(),
  status: z.enum(['pending', 'approved', 'superseded']),
  created_by: z.string(),
  created_at: z.string(),
  approved_by: z.string().nullable(),
  approved_at: z.string().nullable(),
  signature: signatureOut.nullable(),
});

export const templateOut = z.object({
  id: z.string(),
  name: z.string(),
  created_by: z.string(),
  created_at: z.string(),
  current_version: z.number(),
  approved_version: z.number().nullable().describe('the version sends use (null: none approved yet)'),
  versions: z.array(templateVersionOut),
});

export const templateCreated = z.object({ id: z.string(), version: z.number(), status: z.string() });
export const templateList = z.object({
  templates: z.array(templateOut.omit({ versions: true }).extend({ category: z.string().nullable() })),
});
