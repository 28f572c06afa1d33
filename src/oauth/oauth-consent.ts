import type { Guard } from '../identity/guard.js';
import type { IdentityRepo } from '../identity/identity-repo.js';
import type { RequestContext, Role, Scope } from '../identity/principal.js';
import { AppError, notFound, unprocessable } from '../kernel/errors.js';
import type { Clock } from '../kernel/clock.js';
import type { Db, Tx } from '../store/db.js';
import { storedClientOf } from './oauth-records-repo.js';
import { grantableScopes, mayActFor } from './oauth-server.js';

type Deps = { db: Db; identity: IdentityRepo; guard: Guard; clock: Pick<Clock, 'now'> };

export type ConsentOptions = { agents: { id: string; name: string; address: string }[]; scopes: Scope[] };

/**
 * What a signed-in human may consent to when an MCP client asks for access (the consent page): which agents the
 * client may act as (those the human answers for; an admin: any active agent of the organisation) and which scopes
 * (never more than the human may hand to an agent: oauth-server.ts grantableScopes). Every decision is audited.
 */
export const createOauthConsent = ({ db, identity, guard, clock }: Deps) => {
  const requireHuman = (ctx: RequestContext) => {
    if (ctx.principal.type !== 'human') throw notFound('authorization request');
  };

  /** The agents and scopes this human may choose from. Reads identity only (no PHI). */
  const options = async (ctx: RequestContext): Promise<ConsentOptions> => {
    requireHuman(ctx);
    const p = ctx.principal;
    let q = db.selectFrom('agents').select(['id', 'name', 'address']).where('org_id', '=', p.orgId).where('is_active', '=', 1);
    if (!p.roles.includes('admin')) q = q.where('responsible_human_id', '=', p.id);
    return { agents: await q.orderBy('name').execute(), scopes: grantableScopes(p.roles) };
  };

  /**
   * Records the human's consent (`oauth.consent.granted`: client, agent, scopes) after checking it: the agent is one
   * they may choose (else 404), each scope was requested and is theirs to grant (else 422 oauth_scope_not_allowed),
   * and at least one is chosen (422 oauth_scope_required). The first consent to a client in the organisation also
   * records `oauth.client.granted` (the client's registration name, the agent, how it identified itself), so the
   * organisation's admins see each client that entered it: a registration itself is anonymous and belongs to no
   * organisation (RFC 7591). Then `then` (the authorization server's grant) runs in the same transaction: the events
   * and the grant commit together or not at all. Returns what `then` returns.
   */
  const grant = <T>(
    ctx: RequestContext,
    c: { clientId: string; agentId: string; scopes: string[]; requested: string[] },
    then: (tx: Tx, scopes: string[]) => Promise<T>,
  ) =>
    guard.change(ctx, 'oauth.consent.granted', { type: 'agent', id: c.agentId }, async (tx) => {
      requireHuman(ctx);
      const p = ctx.principal;
      const a = await identity.agent(tx, p.orgId, c.agentId);
      const h = await identity.human(tx, p.orgId, p.id);
      if (a?.is_active !== 1 || !h || !mayActFor(h, a)) throw notFound('agent');
      const allowed = grantableScopes(JSON.parse(h.roles) as Role[]);
      const scopes = [...new Set(c.scopes)];
      const bad = scopes.filter((s) => !allowed.includes(s as Scope) || !c.requested.includes(s));
      if (bad.length > 0) {
        throw unprocessable('oauth_scope_not_allowed', `Not requested by the client, or not yours to grant: ${bad.join(', ')}.`);
      }
      if (scopes.length === 0) throw unprocessable('oauth_scope_required', 'Choose at least one scope, or deny the request.');
      // One row per (organisation, client): the insert that wins is the first consent, in this process or another.
      const first = await tx
        .insertInto('oauth_client_orgs')
        .values({ org_id: p.orgId, client_id: c.clientId, first_granted_at: clock.now().toISOString(), first_granted_by: p.id })
        .onConflict((oc) => oc.columns(['org_id', 'client_id']).doNothing())
        .returning('client_id')
        .executeTakeFirst();
      if (first) {
        const registered = await storedClientOf(tx, c.clientId);
        await guard.recordIn(
          tx,
          ctx,
          'oauth.client.granted',
          { type: 'oauth_client', id: c.clientId },
          {
            client_id: c.clientId,
            client_name: registered?.client_name ?? null,
            // RFC 7591 registration, or a client ID metadata document (its client_id is the document's https URL).
            identified_by: registered ? 'registration' : 'metadata_document',
            agent_id: a.id,
          },
        );
      }
      await guard.recordIn(tx, ctx, 'oauth.consent.granted', { type: 'agent', id: a.id }, { client_id: c.clientId, scopes });
      return then(tx, scopes);
    });

  /** Records that the human declined (`oauth.consent.denied`), with `then` (the library's answer) in the same transaction. */
  const deny = <T>(ctx: RequestContext, clientId: string, then: (tx: Tx) => Promise<T>) =>
    guard.change(ctx, 'oauth.consent.denied', null, async (tx) => {
      requireHuman(ctx);
      await guard.recordIn(tx, ctx, 'oauth.consent.denied', null, { client_id: clientId });
      return then(tx);
    });

  return { options, grant, deny };
};

export type OauthConsent = ReturnType<typeof createOauthConsent>;

/** The interaction is gone (expired, finished, or its cookie missing): the client must start again. */
export const interactionGone = () =>
  new AppError(
    'oauth_interaction_expired',
    400,
    'This authorization request has expired or was already answered; start again from your MCP client.',
  );
