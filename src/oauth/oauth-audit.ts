import Provider from 'oidc-provider';
import type { AuditActor, AuditService } from '../audit/audit-service.js';
import type { IdentityRepo } from '../identity/identity-repo.js';
import type { Executor } from '../store/db.js';
import type { OauthAuditHook, OauthChange, OauthPayload } from './oauth-records-repo.js';

/**
 * The audit events of the authorization server's state changes (45 CFR 164.312(b)), derived from what the library
 * stores (oauth-records-repo.ts calls this inside the write's transaction, so the event commits with the change or
 * neither does). Ids and hashes only: never a code, token or client secret (the token's store hash names it).
 *
 * | change | action |
 * | --- | --- |
 * | Client stored (Dynamic Client Registration) | `oauth.client.registered` |
 * | Grant stored (the human's consent, as the library keeps it) | `oauth.grant.saved` |
 * | AuthorizationCode stored / consumed | `oauth.code.issued` / `oauth.code.redeemed` |
 * | AccessToken or RefreshToken stored | `oauth.token.issued` (`details.token_type`) |
 * | RefreshToken consumed (rotation) | `oauth.token.rotated` |
 * | a code or token destroyed, or a grant's removed (RFC 7009, a replayed code) | `oauth.token.revoked` |
 * | Grant destroyed, or revoked with its codes and tokens when its agent or human is deactivated or the agent handed to another human | `oauth.grant.revoked` (`details.reason`) |
 *
 * Sessions and interactions (the library's browser-session bookkeeping, which hand out no access) are not audited:
 * the consent page audits the human's decision (`oauth.consent.granted` / `.denied`) in the same transaction as the
 * grant it produces.
 */

const TOKEN_TYPE: Record<string, string> = {
  AccessToken: 'access_token',
  RefreshToken: 'refresh_token',
  AuthorizationCode: 'authorization_code',
  RegistrationAccessToken: 'registration_access_token',
  ClientCredentials: 'client_credentials',
};

const ACCOUNT_RE = /^(agt_[0-9A-Za-z]+):(hum_[0-9A-Za-z]+)$/;

const str = (v: unknown): string | null => (typeof v === 'string' ? v : null);
const epochIso = (v: unknown): string | null => (typeof v === 'number' ? new Date(v * 1000).toISOString() : null);
/** The grant type that produced a token: the last of the library's `gty` ("authorization_code refresh_token"). */
const grantTypeOf = (p: OauthPayload) => str(p.gty)?.split(' ').at(-1) ?? null;

export const createOauthAuditHook = ({
  audit,
  identity,
}: {
  audit: Pick<AuditService, 'record'>;
  identity: IdentityRepo;
}): OauthAuditHook => {
  /**
   * Who a grant or token acts for: the agent, the granting human last in its chain (as at /mcp). Read in the change's
   * transaction, active or not (a revocation after a deactivation still names them). Unknown: the system.
   */
  const actorOf = async (tx: Executor, accountId: unknown): Promise<AuditActor> => {
    const m = typeof accountId === 'string' ? ACCOUNT_RE.exec(accountId) : null;
    const a = m ? await tx.selectFrom('agents').selectAll().where('id', '=', m[1]!).executeTakeFirst() : undefined;
    if (!m || !a) return { type: 'system', id: null, orgId: null, chain: [] };
    const org = await identity.org(tx, a.org_id);
    const h = await identity.human(tx, a.org_id, m[2]!);
    return {
      type: 'agent',
      id: a.id,
      orgId: a.org_id,
      chain: [...(await identity.agentChain(tx, a, org?.name ?? '')), ...(h ? [{ type: 'human', id: h.id, name: h.name }] : [])],
    };
  };

  const eventOf = (c: OauthChange): { action: string; details: Record<string, unknown>; grantId: string | null } | null => {
    if (c.op === 'revoke_delegation') {
      const p = c.rows.find((r) => r.model === 'Grant')?.payload ?? c.rows[0]?.payload ?? {};
      return {
        action: 'oauth.grant.revoked',
        grantId: c.grantId,
        details: {
          client_id: str(p.clientId),
          reason: c.reason,
          token_hashes: c.rows.filter((r) => TOKEN_TYPE[r.model]).map((r) => r.idHash),
        },
      };
    }
    const type = TOKEN_TYPE[c.model];
    if (c.op === 'revoke_grant') {
      if (!type) return null;
      return {
        action: 'oauth.token.revoked',
        grantId: c.grantId,
        details: { token_type: type, token_hashes: c.rows.map((r) => r.idHash), reason: 'grant_revoked' },
      };
    }
    const p = c.payload;
    const clientId = str(p.clientId) ?? str(p.client_id);
    if (c.model === 'Client') {
      if (c.op === 'upsert') {
        return {
          action: c.created ? 'oauth.client.registered' : 'oauth.client.updated',
          grantId: null,
          details: { client_id: clientId, client_name: str(p.client_name) },
        };
      }
      return c.op === 'destroy' ? { action: 'oauth.client.deleted', grantId: null, details: { client_id: clientId } } : null;
    }
    if (c.model === 'Grant') {
      const grantId = str(p.jti);
      if (c.op === 'upsert') {
        const resources = (p.resources ?? {}) as Record<string, string>;
        return {
          action: 'oauth.grant.saved',
          grantId,
          details: {
            client_id: clientId,
            resources: Object.keys(resources),
            scope: Object.values(resources).join(' ') || null,
            expires_at: epochIso(p.exp),
          },
        };
      }
      return c.op === 'destroy' ? { action: 'oauth.grant.revoked', grantId, details: { client_id: clientId } } : null;
    }
    if (!type) return null;
    const grantId = str(p.grantId);
    const base = { client_id: clientId, token_type: type, token_hash: c.idHash };
    if (c.op === 'upsert') {
      if (!c.created) return null;
      const common = { ...base, grant_type: grantTypeOf(p), scope: str(p.scope), expires_at: c.expiresAt };
      if (c.model === 'AuthorizationCode')
        return { action: 'oauth.code.issued', grantId, details: { ...base, scope: str(p.scope), expires_at: c.expiresAt } };
      if (c.model === 'RefreshToken') return { action: 'oauth.token.issued', grantId, details: { ...common, rotations: p.rotations ?? 0 } };
      return { action: 'oauth.token.issued', grantId, details: common };
    }
    if (c.op === 'consume') {
      if (c.model === 'AuthorizationCode') return { action: 'oauth.code.redeemed', grantId, details: base };
      if (c.model === 'RefreshToken') return { action: 'oauth.token.rotated', grantId, details: base };
      return null;
    }
    return { action: 'oauth.token.revoked', grantId, details: { ...base, reason: 'destroyed' } };
  };

  return async (tx, change) => {
    const ev = eventOf(change);
    if (!ev) return;
    const accountId =
      change.op === 'revoke_grant' || change.op === 'revoke_delegation' ? change.rows[0]?.payload.accountId : change.payload.accountId;
    const actor =
      change.model === 'Client'
        ? ({ type: 'anonymous', id: null, orgId: null, chain: [] } satisfies AuditActor)
        : await actorOf(tx, accountId);
    // The library's request (its own AsyncLocalStorage): the client's address, when a request is being served.
    const ctx = Provider.ctx;
    await audit.record(tx, {
      action: ev.action,
      actor,
      orgId: actor.orgId,
      target:
        change.model === 'Client'
          ? { type: 'oauth_client', id: String(ev.details.client_id) }
          : ev.grantId
            ? { type: 'oauth_grant', id: ev.grantId }
            : null,
      requestId: null,
      clientIp: ctx?.ip ?? null,
      details: ev.details,
    });
  };
};
