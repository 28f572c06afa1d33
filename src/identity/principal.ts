import { AppError } from '../kernel/errors.js';
import type { AuditActor } from '../audit/audit-service.js';

/** CONTRACT.md roles; `clinician` (second wave) grants agents authority to send for them and has no console powers. */
export const HUMAN_ROLES = ['admin', 'reviewer', 'privacy_officer', 'auditor', 'clinician'] as const;
export type Role = (typeof HUMAN_ROLES)[number];

export const AGENT_SCOPES = ['mail:read', 'mail:send', 'vault:read', 'vault:write', 'vault:reveal', 'vault:totp'] as const;
export type Scope = (typeof AGENT_SCOPES)[number];

/** What an agent key gets when no scopes are asked for: everything but vault:reveal, which an admin grants explicitly. */
export const DEFAULT_AGENT_SCOPES: Scope[] = ['mail:read', 'mail:send', 'vault:read', 'vault:write', 'vault:totp'];

/** One link of a delegation chain: organisation > department(s) > agent (or > human). */
export type ChainEntry = { type: 'organization' | 'department' | 'agent' | 'human'; id: string; name: string };

export type Principal = {
  type: 'human' | 'agent';
  id: string;
  orgId: string;
  name: string;
  keyId: string;
  /** Roles of a human key (a subset of the human's roles). Empty for agents. */
  roles: Role[];
  /** Scopes of an agent key. Empty for humans: no key may both send and approve. */
  scopes: Scope[];
  chain: ChainEntry[];
  org: { id: string; name: string; domain: string };
  /** Agents only: their address and the human answerable for them. */
  address?: string;
  responsibleHuman?: { id: string; name: string };
  /**
   * Humans signed in through the console: the session (`keyId` is its id) and when and how the
   * second factor was last checked (21 CFR 11.200 step-up). Absent for API keys.
   */
  /** A human key limited to reads: the REST edge refuses anything but GET and HEAD (403 read_only_key). */
  readOnly?: boolean;
  session?: { id: string; authMethod: string; secondFactorAt: string | null; secondFactorMethod: string | null };
  /**
   * An agent acting through an OAuth access token (src/oauth): the grant, the client, and the human who granted it
   * (last in `chain`, and in the identity header of mail it sends). `keyId` is `oauth:<grant id>`. Absent for API keys.
   */
  oauth?: { grantId: string; clientId: string; human: { id: string; name: string } };
};

/** Everything a service needs to know about who is asking and from where. */
export type RequestContext = { principal: Principal; requestId: string | null; clientIp: string | null };

/** The system itself (CLI init, workers): an actor with no key. */
export const systemActor = (orgId: string | null = null): AuditActor => ({
  type: 'system',
  id: null,
  orgId,
  chain: [],
});

export const actorOf = (ctx: RequestContext): AuditActor => ({
  type: ctx.principal.type,
  id: ctx.principal.id,
  orgId: ctx.principal.orgId,
  chain: ctx.principal.chain,
});

export const hasRole = (p: Principal, role: Role): boolean => p.type === 'human' && p.roles.includes(role);
export const hasScope = (p: Principal, scope: Scope): boolean => p.type === 'agent' && p.scopes.includes(scope);

/** Throws 403 unless the caller is a human holding one of `roles`; agents get 404 (they must not learn the route's resources exist). */
export const requireAnyRole = (ctx: RequestContext, roles: Role[], what = 'resource') => {
  const p = ctx.principal;
  if (p.type !== 'human') throw new AppError('not_found', 404, `No such ${what}.`);
  if (!roles.some((r) => p.roles.includes(r))) {
    throw new AppError('role_required', 403, `This needs one of the roles: ${roles.join(', ')}.`);
  }
};
