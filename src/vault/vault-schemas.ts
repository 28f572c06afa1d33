import { z } from 'zod';
import { TOTP_ALGORITHMS } from './totp.js';

/** One zod schema per wire shape: REST and MCP both use these. */
export const SECRET_KINDS = ['password', 'api_key', 'token', 'note', 'totp'] as const;

/** Names go in URL paths and in associated data (`|`-separated), so the alphabet is small. */
export const secretName = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/, 'must be 1-128 characters of A-Z a-z 0-9 . _ - starting with a letter or digit');

/** Metadata is stored in clear for listing: labels and URLs, never secrets. */
export const secretMetadata = z
  .record(z.string().min(1).max(64), z.union([z.string().max(1000), z.number(), z.boolean(), z.null()]))
  .refine((m) => Object.keys(m).length <= 32, 'at most 32 keys')
  .refine((m) => JSON.stringify(m).length <= 8192, 'at most 8 KiB as JSON');

export const secretNameParams = z.strictObject({ name: secretName });

export const vaultOwnerQuery = z.strictObject({
  agent_id: z
    .string()
    .regex(/^agt_[0-9a-f]{32}$/, 'must be an agt_ id')
    .optional()
    .describe('Admins only: the agent whose vault to manage. Agents always use their own vault.'),
});

export const putSecretBody = z.strictObject({
  kind: z.enum(SECRET_KINDS),
  value: z.string().min(1).max(65_536).optional().describe('The secret; for kind totp the base32 seed'),
  username: z.string().min(1).max(512).optional(),
  otpauth_uri: z.string().min(1).max(4096).optional().describe('kind totp only: otpauth://totp/... key URI'),
  algorithm: z.enum(TOTP_ALGORITHMS).optional().describe('kind totp with a base32 value (default SHA1)'),
  digits: z.number().int().min(6).max(8).optional().describe('kind totp with a base32 value (default 6)'),
  period: z.number().int().min(1).max(300).optional().describe('kind totp with a base32 value, seconds (default 30)'),
  metadata: secretMetadata.optional(),
});
export type PutSecretBody = z.infer<typeof putSecretBody>;

export const secretStoredOut = z.object({
  name: z.string(),
  kind: z.enum(SECRET_KINDS),
  version: z.number().int(),
  agent_id: z.string(),
});

export const secretSummaryOut = z.object({
  name: z.string(),
  kind: z.enum(SECRET_KINDS),
  version: z.number().int(),
  metadata: z.record(z.string(), z.unknown()),
  created_at: z.string(),
  updated_at: z.string(),
});

export const secretListOut = z.object({ agent_id: z.string(), secrets: z.array(secretSummaryOut) });

export const secretRevealedOut = z.object({
  name: z.string(),
  kind: z.enum(SECRET_KINDS),
  version: z.number().int(),
  value: z.string(),
  username: z.string().nullable(),
  metadata: z.record(z.string(), z.unknown()),
});

export const totpCodeOut = z.object({
  code: z.string(),
  period: z.number().int(),
  digits: z.number().int(),
  expires_at: z.string(),
});

export const secretDeletedOut = z.object({
  name: z.string(),
  kind: z.enum(SECRET_KINDS),
  version: z.number().int(),
  deleted_at: z.string(),
});
