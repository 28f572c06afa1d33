import { z } from 'zod';
import { isValidNpi } from './npi.js';
import { AGENT_SCOPES, HUMAN_ROLES } from './principal.js';

/** Printable single-line text: no CR, LF or other control characters (header injection, log forging). */
export const safeName = z
  .string()
  .trim()
  .min(1)
  .max(200)
  .regex(/^[^\p{Cc}\p{Cf}\u2028\u2029]+$/u, 'must be a single line without control characters');

const idOf = (prefix: string) => z.string().regex(new RegExp(`^${prefix}_[0-9a-f]{32}$`), `must be a ${prefix}_ id`);
export const departmentId = idOf('dep');
export const humanId = idOf('hum');
export const agentId = idOf('agt');
export const apiKeyId = idOf('key');

/** A practical RFC 5321 mailbox: ASCII local part and a dotted domain; no spaces, no control characters. */
export const emailAddress = z
  .string()
  .trim()
  .max(254)
  .regex(
    /^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z][A-Za-z0-9-]{0,61}[A-Za-z0-9]$/,
    'must be an email address',
  )
  .transform((v) => v.toLowerCase());

export const localPart = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$/, 'must be lowercase letters, digits, dot, dash or underscore');

export const roleSchema = z.enum(HUMAN_ROLES);
export const scopeSchema = z.enum(AGENT_SCOPES);

export const createDepartmentBody = z.strictObject({ name: safeName, parent_id: departmentId.nullish() });
export const departmentOut = z.object({
  id: z.string(),
  name: z.string(),
  parent_id: z.string().nullable(),
  created_at: z.string(),
});

export const createHumanBody = z.strictObject({
  name: safeName,
  email: emailAddress,
  roles: z.array(roleSchema).min(1).max(HUMAN_ROLES.length),
  npi: z
    .string()
    .refine(isValidNpi, 'must be a 10-digit National Provider Identifier with a valid check digit')
    .optional()
    .describe('National Provider Identifier of a clinician (checked with its Luhn check digit)'),
});
export const humanOut = z.object({
  id: z.string(),
  name: z.string(),
  email: z.string(),
  roles: z.array(roleSchema),
  npi: z.string().nullable(),
  is_active: z.boolean(),
  created_at: z.string(),
  deactivated_at: z.string().nullable(),
});

export const chainEntryOut = z.object({
  type: z.enum(['organization', 'department', 'agent', 'human']),
  id: z.string(),
  name: z.string(),
});

export const createAgentBody = z.strictObject({
  name: safeName,
  department_id: departmentId,
  responsible_human_id: humanId,
  address_local_part: localPart.optional(),
});
export const updateAgentBody = z
  .strictObject({ name: safeName.optional(), department_id: departmentId.optional(), responsible_human_id: humanId.optional() })
  .refine((b) => Object.keys(b).length > 0, 'give at least one field to change');
export const agentOut = z.object({
  id: z.string(),
  name: z.string(),
  address: z.string(),
  department_id: z.string(),
  is_active: z.boolean(),
  created_at: z.string(),
  deactivated_at: z.string().nullable(),
  delegation_chain: z.array(chainEntryOut),
  responsible_human: z.object({ id: z.string(), name: z.string() }),
});

export const createKeyBody = z
  .strictObject({
    scopes: z.array(z.string().max(40)).max(10).optional(),
    // Human keys only: the key may read (GET, HEAD) but change nothing; scripts that report, not sign.
    read_only: z.boolean().optional(),
  })
  .optional();
export const keyCreatedOut = z.object({
  id: z.string(),
  key: z.string(),
  principal: z.object({ type: z.enum(['human', 'agent']), id: z.string() }),
  scopes: z.array(z.string()),
  read_only: z.boolean(),
  created_at: z.string(),
});
export const keyOut = z.object({
  id: z.string(),
  principal: z.object({ type: z.enum(['human', 'agent']), id: z.string() }),
  scopes: z.array(z.string()),
  read_only: z.boolean(),
  created_at: z.string(),
  revoked_at: z.string().nullable(),
  last_used_at: z.string().nullable(),
});

export const meOut = z.object({
  principal: z.object({ id: z.string(), type: z.enum(['human', 'agent']), name: z.string() }),
  organization: z.object({ id: z.string(), name: z.string(), domain: z.string() }),
  delegation_chain: z.array(chainEntryOut),
  roles: z.array(roleSchema).optional(),
  scopes: z.array(scopeSchema).optional(),
  address: z.string().optional(),
  responsible_human: z.object({ id: z.string(), name: z.string() }).optional(),
  key_id: z.string(),
});
