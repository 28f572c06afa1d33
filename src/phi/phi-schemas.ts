import { z } from 'zod';
import { OVERSIGHT_MODES } from '../oversight/oversight-modes.js';
import { FINDING_TYPES, type FindingType, SENSITIVITIES } from './phi-types.js';

/** One zod schema per wire shape: a mailbox's PHI policy (POST/PATCH /v1/mailboxes) and the findings shown to reviewers. */
const threshold = z.enum([...SENSITIVITIES, 'never'] as const);

export const phiPolicySchema = z
  .strictObject({
    hold_at: z
      .strictObject(
        Object.fromEntries(OVERSIGHT_MODES.map((m) => [m, threshold.optional()])) as Record<
          (typeof OVERSIGHT_MODES)[number],
          z.ZodOptional<typeof threshold>
        >,
      )
      .optional()
      .describe(
        'Per oversight mode, the lowest sensitivity that holds a message (none|low|moderate|high|restricted) or never; unset modes use the default',
      ),
    hold_types: z
      .array(z.enum(FINDING_TYPES as [FindingType, ...FindingType[]]))
      .max(FINDING_TYPES.length)
      .optional()
      .describe('Finding types that hold a message in any mode but read_only'),
  })
  .describe('PHI policy of the mailbox; Part 2 content and PHI in a subject are held whatever it says');
export type PhiPolicyInput = z.infer<typeof phiPolicySchema>;

/** Where and what, never the text: a reviewer opens the message to see the span. */
export const phiFindingOut = z.object({
  type: z.string(),
  field: z.enum(['subject', 'text', 'html', 'attachment', 'attachment_name']),
  attachment: z.number().int().optional().describe('Index into attachments, for attachment findings'),
  start: z.number().int().describe('UTF-16 offset into the field, inclusive'),
  end: z.number().int().describe('UTF-16 offset into the field, exclusive'),
  confidence: z.number(),
});
export type PhiFindingOut = z.infer<typeof phiFindingOut>;
