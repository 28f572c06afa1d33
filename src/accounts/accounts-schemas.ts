import { z } from 'zod';

/** Wire shapes of sign-in administration (REST); the console's forms are parsed in src/web. */
export const invitationOut = z.object({ invitation_id: z.string(), human_id: z.string(), url: z.string(), expires_at: z.string() });

export const sessionOut = z.object({
  id: z.string(),
  stage: z.string(),
  auth_method: z.string().nullable(),
  second_factor_method: z.string().nullable(),
  second_factor_at: z.string().nullable(),
  created_at: z.string(),
  last_seen_at: z.string(),
  expires_at: z.string(),
  idle_expires_at: z.string(),
  client_ip: z.string().nullable(),
  user_agent: z.string().nullable(),
  current: z.boolean(),
});

export const sessionsOut = z.object({ sessions: z.array(sessionOut) });

export const ssoConfigBody = z.strictObject({
  issuer: z.url({ protocol: /^https?$/ }).max(500),
  client_id: z.string().min(1).max(200),
  client_secret: z.string().min(1).max(500),
  role_claim: z
    .string()
    .regex(/^[A-Za-z0-9_:./-]{1,100}$/)
    .optional(),
  role_map: z.record(z.string().max(200), z.enum(['admin', 'reviewer', 'privacy_officer', 'auditor'])).optional(),
});

export const ssoConfigOut = z.object({
  issuer: z.string(),
  client_id: z.string(),
  role_claim: z.string().nullable(),
  role_map: z.record(z.string(), z.string()).nullable(),
});

export const sessionIdParams = z.strictObject({ id: z.string().regex(/^ses_[0-9a-f]{32}$/, 'must be a ses_ id') });
