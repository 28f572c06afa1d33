import { z } from 'zod';
import { emailAddress } from '../identity/identity-schemas.js';

/** One zod schema per wire shape: REST and MCP (check_consent) both use these. */
export const CONSENT_CATEGORIES = [
  'appointment',
  'results',
  'billing',
  'care_coordination',
  'prescription',
  'referral',
  'general',
  // Second wave: what clinicians grant agents (refills, prior authorisations), checked against consent like the others.
  'refill',
  'prior_auth',
] as const;
export type ConsentCategory = (typeof CONSENT_CATEGORIES)[number];

export const consentParams = z.strictObject({ email: emailAddress });

export const putConsentBody = z.strictObject({
  electronic: z.boolean().describe('true: the patient agreed to email; false: they refused it'),
  categories: z
    .array(z.enum(CONSENT_CATEGORIES))
    .max(CONSENT_CATEGORIES.length)
    .describe('What the consent covers; empty when electronic is false'),
  // A short token, not prose: free text here could carry PHI into the audit log.
  source: z
    .string()
    .regex(/^[a-z0-9][a-z0-9_.:-]{0,63}$/, 'must be a short token such as paper_form, patient_portal, verbal, email_reply')
    .describe('How the consent was obtained: paper_form, patient_portal, verbal, email_reply, ehr_import...'),
  recorded_at: z.iso.datetime({ offset: true }).optional().describe('When the patient gave it (default: now); not in the future'),
});
export type PutConsentBody = z.infer<typeof putConsentBody>;

export const consentOut = z.object({
  email: z.string(),
  status: z.enum(['granted', 'refused', 'unknown']),
  electronic: z.boolean().nullable(),
  categories: z.array(z.string()),
  source: z.string().nullable(),
  recorded_at: z.string().nullable(),
  recorded_by: z.object({ type: z.enum(['human', 'agent']), id: z.string() }).nullable(),
  version: z.number().int(),
  updated_at: z.string().nullable(),
});
export type ConsentOut = z.infer<typeof consentOut>;
