import { z } from 'zod';

/**
 * Wire shapes of the breach workbench (45 CFR 164.400-414), shared by the REST routes (which register them for
 * OpenAPI) and the console's forms, so both edges accept exactly the same input.
 */
const text = (max: number) => z.string().trim().min(1).max(max);
const isoTime = z.iso.datetime({ offset: true });
const idList = (prefix: string) =>
  z
    .array(z.string().regex(new RegExp(`^${prefix}_[0-9a-f]{32}$`), `must be ${prefix}_ ids`))
    .max(1000)
    .optional();

export const breachIdSchema = z.string().regex(/^brc_[0-9a-f]{32}$/, 'must be a breach incident id');

export const breachCreateIn = z.strictObject({
  title: text(200),
  description: text(8000),
  discovered_at: isoTime,
  state: text(100).optional(),
});

export const breachScopeIn = z.strictObject({
  since: isoTime.optional(),
  until: isoTime.optional(),
  mailbox_ids: idList('mbx'),
  agent_ids: idList('agt'),
  recipients: z.array(z.email().max(320)).max(10_000).optional(),
  message_ids: idList('msg'),
  tags: z.array(z.string().min(1).max(64)).max(100).optional(),
});

export const breachRiskIn = z.strictObject({
  nature_and_extent: text(4000).describe('164.402(2)(i): the PHI involved, types of identifiers, likelihood of re-identification'),
  unauthorized_person: text(4000).describe('164.402(2)(ii): who used or received the PHI'),
  acquired_or_viewed: text(4000).describe('164.402(2)(iii): whether the PHI was actually acquired or viewed'),
  mitigation: text(4000).describe('164.402(2)(iv): the extent to which the risk was mitigated'),
  low_probability_of_compromise: z.boolean(),
});

export const breachNoticeIn = z.strictObject({
  what_happened: text(4000),
  breach_date: text(200),
  steps_individuals_should_take: text(4000),
  what_we_are_doing: text(4000),
  contact_procedures: text(2000).describe('164.404(c)(1)(E): toll-free number, email address, web site or postal address'),
  subject: text(200).optional(),
});
