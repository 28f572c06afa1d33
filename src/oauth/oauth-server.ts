import type { IncomingMessage, ServerResponse } from 'node:http';
import Provider, { type Configuration, errors, type KoaContextWithOIDC } from 'oidc-provider';
import { consoleOrigin } from '../accounts/origin.js';
import type { AuditService } from '../audit/audit-service.js';
import type { IdentityRepo } from '../identity/identity-repo.js';
import { AGENT_SCOPES, DEFAULT_AGENT_SCOPES, type Principal, type Role, type Scope } from '../identity/principal.js';
import { AppError, unauthorized } from '../kernel/errors.js';
import type { Logger } from '../kernel/log.js';
import type { Db, Executor } from '../store/db.js';
import type { AgentsTable, HumansTable } from '../store/schema.js';
import { createOauthFetch, type OauthFetchConfig } from './oauth-fetch.js';
import type { OauthKeys } from './oauth-keys.js';
import type { OauthRecordsRepo } from './oauth-records-repo.js';

/**
 * The OAuth 2.1 authorization server of the MCP endpoint (MCP authorization; draft-ietf-oauth-v2-1), built on
 * `oidc-provider` (a certified, well-kept implementation: no protocol code of our own), mounted under /oauth on the
 * same server. What it issues:
 * - authorization code with PKCE, S256 only (oidc-provider 9 implements no `plain`; PKCE is required of every client);
 * - clients by Dynamic Client Registration (RFC 7591) or by Client ID Metadata Document (draft-ietf-oauth-client-id-metadata-document,
 *   oidc-provider's experimental `clientIdMetadataDocument`, https client ids only, fetched as oauth-fetch.ts says);
 * - RFC 8707 resource indicators: the only resource is this server's `/mcp`, which is every token's audience;
 * - opaque access tokens (short-lived, stored hashed through oauth-records-repo.ts, so every process sees the same ones
 *   and a revocation anywhere holds everywhere) and refresh tokens that rotate at each use;
 * - RFC 7009 revocation.
 * The issuer is the server's origin (MAILWARD_PUBLIC_URL, or a loopback Host in development), so the RFC 8414 metadata
 * lives at `/.well-known/oauth-authorization-server` of the origin.
 *
 * A token's account is `<agent id>:<human id>`: the agent the client acts as, and the human who granted it. Both are
 * checked in the store on every use (a deactivated human or agent, or a human no longer answerable for the agent,
 * makes the token worthless at once, in every process): no cache.
 */

export const OAUTH_PREFIX = '/oauth';
export const AUTHORIZATION_SERVER_METADATA_PATH = '/.well-known/oauth-authorization-server';

/** Where the consent page lives (the console's, src/web/oauth-consent-routes.ts). */
export const consentPath = (uid: string) => `/console/oauth/${encodeURIComponent(uid)}`;

const ACCOUNT_RE = /^(agt_[0-9A-Za-z]+):(hum_[0-9A-Za-z]+)$/;
export const accountIdOf = (agentId: string, humanId: string) => `${agentId}:${humanId}`;
const parseAccount = (id: string) => {
  const m = ACCOUNT_RE.exec(id);
  return m ? { agentId: m[1]!, humanId: m[2]! } : null;
};

/**
 * The scopes a human may hand to an agent: an admin any agent scope; anyone else the scopes an agent key gets by
 * default, that is all but `vault:reveal`, which only an admin grants (as for keys, identity/principal.ts).
 */
export const grantableScopes = (roles: Role[]): Scope[] => (roles.includes('admin') ? [...AGENT_SCOPES] : [...DEFAULT_AGENT_SCOPES]);

/** The human may let a client act as this agent: it is theirs to answer for, or they are an admin of its organisation. */
export const mayActFor = (h: HumansTable, a: AgentsTable) =>
  h.org_id === a.org_id && (a.responsible_human_id === h.id || (JSON.parse(h.roles) as Role[]).includes('admin'));

export const mcpResourceOf = (origin: string) => `${origin}/mcp`;

type Deps = {
  db: Db;
  records: OauthRecordsRepo;
  identity: IdentityRepo;
  audit: Pick<AuditService, 'recordAlone'>;
  keys: OauthKeys;
  logger: Logger;
  config: { publicUrl: string | undefined; accessTokenSeconds: number; refreshTokenSeconds: number } & OauthFetchConfig;
};

type AuthMeta = { requestId: string | null; clientIp: string | null };

export type ConsentResult = { agentId: string; humanId: string; scopes: string[] };

export type InteractionView = {
  uid: string;
  clientId: string;
  clientName: string | null;
  redirectUri: string | null;
  requestedScopes: string[];
};

export const createOauthServer = ({ db, records, identity, audit, keys, logger, config }: Deps) => {
  const providers = new Map<string, { provider: Provider; handler: ReturnType<Provider['callback']> }>();
  const outbound = createOauthFetch(config);

  /** Both still active, and the human still answerable for the agent: else nothing they granted is honoured. */
  const liveDelegation = async (accountId: string) => {
    const ids = parseAccount(accountId);
    if (!ids) return null;
    const a = await db.selectFrom('agents').selectAll().where('id', '=', ids.agentId).executeTakeFirst();
    if (a?.is_active !== 1) return null;
    const h = await identity.human(db, a.org_id, ids.humanId);
    if (h?.is_active !== 1 || !mayActFor(h, a)) return null;
    return { a, h };
  };

  const build = (origin: string): Provider => {
    const resource = mcpResourceOf(origin);
    const configuration: Configuration = {
      adapter: class {
        constructor(name: string) {
          // biome-ignore lint/correctness/noConstructorReturn: oidc-provider instantiates the adapter class per model
          return records.adapterFor(name);
        }
      } as never,
      findAccount: async (_ctx, id) => {
        // Called at every code redemption and refresh: a deactivated human or agent gets invalid_grant.
        if (!(await liveDelegation(id))) return undefined;
        return { accountId: id, claims: async () => ({ sub: id }) };
      },
      routes: {
        authorization: `${OAUTH_PREFIX}/authorize`,
        token: `${OAUTH_PREFIX}/token`,
        registration: `${OAUTH_PREFIX}/register`,
        revocation: `${OAUTH_PREFIX}/revoke`,
        jwks: `${OAUTH_PREFIX}/jwks`,
        userinfo: `${OAUTH_PREFIX}/userinfo`,
        end_session: `${OAUTH_PREFIX}/session/end`,
        introspection: `${OAUTH_PREFIX}/introspect`,
        pushed_authorization_request: `${OAUTH_PREFIX}/par`,
        code_verification: `${OAUTH_PREFIX}/device`,
        device_authorization: `${OAUTH_PREFIX}/device/auth`,
        backchannel_authentication: `${OAUTH_PREFIX}/backchannel`,
        challenge: `${OAUTH_PREFIX}/challenge`,
      },
      interactions: { url: (_ctx, interaction) => consentPath(interaction.uid) },
      // Each authorization asks the human again (which agent, which scopes): a grant is never reused silently.
      loadExistingGrant: async (ctx: KoaContextWithOIDC) => {
        const id = ctx.oidc.result?.consent?.grantId;
        return id ? ctx.oidc.provider.Grant.find(id) : undefined;
      },
      // The agent scopes are also declared here: clients register them in their `scope` metadata (RFC 7591 2).
      scopes: ['openid', 'offline_access', ...AGENT_SCOPES],
      pkce: { required: () => true },
      features: {
        devInteractions: { enabled: false },
        registration: { enabled: true },
        // RFC 7009 2.1: a client revokes only its own tokens (a public client's foreign token is ignored, as 200).
        revocation: { enabled: true, allowedPolicy: async (_ctx, client, token) => token.clientId === client.clientId },
        userinfo: { enabled: false },
        resourceIndicators: {
          enabled: true,
          defaultResource: () => resource,
          useGrantedResource: () => true,
          getResourceServerInfo: (_ctx, indicator) => {
            // RFC 8707 2: a resource this server does not serve is refused (invalid_target).
            if (indicator !== resource) throw new errors.InvalidTarget(`the only resource is ${resource}`);
            return {
              scope: AGENT_SCOPES.join(' '),
              audience: resource,
              accessTokenTTL: config.accessTokenSeconds,
              accessTokenFormat: 'opaque',
            };
          },
        },
        clientIdMetadataDocument: {
          enabled: true,
          ack: 'draft-02',
          // No fetches to addresses rather than names, nor to this machine (SSRF), unless allow-listed (oauth-fetch.ts);
          // the library also requires https.
          allowFetch: async (_ctx, clientId) => outbound.allowFetch(clientId),
        },
      },
      fetch: outbound.fetch as never,
      clientDefaults: {
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        token_endpoint_auth_method: 'none',
        id_token_signed_response_alg: 'EdDSA',
      },
      enabledJWA: { idTokenSigningAlgValues: ['EdDSA'] },
      jwks: { keys: [keys.signingJwk as never] },
      cookies: { keys: keys.cookieKeys },
      ttl: {
        AccessToken: config.accessTokenSeconds,
        AuthorizationCode: 60,
        RefreshToken: config.refreshTokenSeconds,
        Grant: config.refreshTokenSeconds,
        Interaction: 600,
        Session: 600,
        IdToken: 600,
      },
      // OAuth 2.1 4.3.1: refresh tokens of public clients are sender-constrained or rotate; these rotate at every use.
      rotateRefreshToken: true,
      issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
      // The library's default ties tokens without offline_access to the browser session at the authorization server;
      // an MCP client's tokens outlive that sign-in (they end with their TTL, a revocation, or a deactivation).
      expiresWithSession: async () => false,
      renderError: async (ctx, out) => {
        ctx.type = 'html';
        const esc = (v: unknown) => String(v ?? '').replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
        ctx.body = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Authorization failed · Mailward</title></head><body><main><h1>Authorization failed</h1><p>${esc(out.error)}: ${esc(out.error_description)}</p></main></body></html>`;
      },
    };
    const provider = new Provider(origin, configuration);
    // Behind the TLS proxy MAILWARD_PUBLIC_URL names, the connection to us is plain HTTP.
    provider.proxy = origin.startsWith('https://');
    provider.on('server_error', (_ctx, err) => logger.error({ err: { name: err.name, message: err.message } }, 'oauth server error'));
    // Issued, rotated and revoked codes and tokens, grants and registered clients are audited by the adapter, in the
    // transaction of each write (oauth-audit.ts): a failure to record fails the library's action.
    return provider;
  };

  /** The authorization server of this origin; undefined when the origin cannot be trusted (no public URL, non-loopback Host). */
  const forHost = (host: string | undefined) => {
    let origin: string;
    try {
      origin = consoleOrigin(config.publicUrl, host);
    } catch (e) {
      if (e instanceof AppError && e.code === 'public_url_required') return undefined;
      throw e;
    }
    let p = providers.get(origin);
    if (!p) {
      const provider = build(origin);
      p = { provider, handler: provider.callback() };
      providers.set(origin, p);
    }
    return { origin, ...p };
  };

  const mustFor = (host: string | undefined) => {
    const p = forHost(host);
    if (!p) throw new AppError('public_url_required', 503, 'Set MAILWARD_PUBLIC_URL: the authorization server needs a fixed origin.');
    return p;
  };

  /** Hands a request under /oauth (or the RFC 8414 metadata) to the library, on the raw node objects. */
  const handle = (req: IncomingMessage, res: ServerResponse) => {
    const p = mustFor(req.headers.host);
    // RFC 8414 3: the metadata of issuer `<origin>` is at /.well-known/oauth-authorization-server; the library serves
    // the same document (with the OAuth fields) at its OpenID discovery path.
    if (req.url?.split('?')[0] === AUTHORIZATION_SERVER_METADATA_PATH) req.url = '/.well-known/openid-configuration';
    return p.handler(req, res);
  };

  /** The consent page's view of an interaction (throws the library's SessionNotFound when the cookie is gone). */
  const interaction = async (req: IncomingMessage, res: ServerResponse): Promise<InteractionView> => {
    const { provider } = mustFor(req.headers.host);
    const d = await provider.interactionDetails(req, res);
    const clientId = String(d.params.client_id ?? '');
    const client = await provider.Client.find(clientId);
    return {
      uid: d.uid,
      clientId,
      clientName: (client?.clientName as string | undefined) ?? null,
      redirectUri: typeof d.params.redirect_uri === 'string' ? d.params.redirect_uri : null,
      requestedScopes: String(d.params.scope ?? '')
        .split(' ')
        .filter((s) => s.length > 0),
    };
  };

  /**
   * Ends the interaction with the human's choice: one grant for `<agent>:<human>` holding the chosen scopes on /mcp,
   * every other requested scope rejected (so the library does not ask again). Returns where the browser goes next.
   * Runs in `tx`, the consent's transaction: the grant (and its `oauth.grant.saved` event) commits with the human's
   * `oauth.consent.granted` event, or neither does.
   */
  const finish = (tx: Executor, req: IncomingMessage, res: ServerResponse, choice: ConsentResult): Promise<string> =>
    records.within(tx, () => finishIn(req, res, choice));
  const finishIn = async (req: IncomingMessage, res: ServerResponse, choice: ConsentResult): Promise<string> => {
    const { provider, origin } = mustFor(req.headers.host);
    const d = await provider.interactionDetails(req, res);
    const accountId = accountIdOf(choice.agentId, choice.humanId);
    const grant = new provider.Grant({ accountId, clientId: String(d.params.client_id) });
    const resource = mcpResourceOf(origin);
    const requested = String(d.params.scope ?? '')
      .split(' ')
      .filter((s) => s.length > 0);
    // The agent scopes are both resource scopes of /mcp (what the access token carries) and declared scopes of the
    // server (so clients may register them): the grant holds the chosen ones in both lists and rejects the rest, so
    // the library's consent checks find nothing left to ask.
    if (choice.scopes.length > 0) {
      grant.addResourceScope(resource, choice.scopes.join(' '));
      grant.addOIDCScope(choice.scopes.join(' '));
    }
    const rejected = requested.filter((s) => !choice.scopes.includes(s));
    if (rejected.length > 0) {
      grant.rejectOIDCScope(rejected.join(' '));
      const rejectedAgentScopes = rejected.filter((s) => (AGENT_SCOPES as readonly string[]).includes(s));
      if (rejectedAgentScopes.length > 0) grant.rejectResourceScope(resource, rejectedAgentScopes.join(' '));
    }
    const grantId = await grant.save();
    return provider.interactionResult(req, res, { login: { accountId }, consent: { grantId } }, { mergeWithLastSubmission: false });
  };

  /** The human said no: the client gets access_denied (RFC 6749 4.1.2.1). In `tx`, with the denial's audit event. */
  const refuse = (tx: Executor, req: IncomingMessage, res: ServerResponse): Promise<string> =>
    records.within(tx, () =>
      mustFor(req.headers.host).provider.interactionResult(
        req,
        res,
        { error: 'access_denied', error_description: 'The person declined.' },
        { mergeWithLastSubmission: false },
      ),
    );

  const denial = async (meta: AuthMeta, reason: string, orgId: string | null = null) => {
    await audit.recordAlone({
      action: 'auth.denied',
      actor: { type: 'anonymous', id: null, orgId, chain: [] },
      orgId,
      target: null,
      outcome: 'denied',
      requestId: meta.requestId,
      clientIp: meta.clientIp,
      details: { reason, credential: 'oauth_access_token' },
    });
    return unauthorized('A valid API key or OAuth access token for this server’s /mcp is required.');
  };

  /**
   * Resolves an OAuth access token presented at /mcp to the agent it acts as, the granting human last in its
   * delegation chain. Throws 401 (audited `auth.denied` with the reason, never the token) when it is unknown, expired
   * or revoked, was issued for another resource (RFC 8707: audience must be this origin's /mcp), or its human or agent
   * is no longer active.
   */
  const authenticate = async (token: string, host: string | undefined, meta: AuthMeta): Promise<Principal> => {
    const p = forHost(host);
    if (!p) throw await denial(meta, 'public_url_required');
    const at = await p.provider.AccessToken.find(token);
    if (!at) throw await denial(meta, 'unknown_token');
    const aud = Array.isArray(at.aud) ? at.aud : at.aud ? [at.aud] : [];
    if (!aud.includes(mcpResourceOf(p.origin))) throw await denial(meta, 'wrong_audience');
    const live = await liveDelegation(at.accountId);
    if (!live) throw await denial(meta, 'principal_inactive');
    const { a, h } = live;
    const org = await identity.org(db, a.org_id);
    if (!org) throw await denial(meta, 'unknown_org');
    const rh = await identity.human(db, a.org_id, a.responsible_human_id);
    // Never more than the human may grant today (an admin who lost the role takes vault:reveal back with it).
    const mayGrant = grantableScopes(JSON.parse(h.roles) as Role[]);
    const scopes = String(at.scope ?? '')
      .split(' ')
      .filter((s): s is Scope => mayGrant.includes(s as Scope));
    return {
      type: 'agent',
      id: a.id,
      orgId: a.org_id,
      name: a.name,
      keyId: `oauth:${at.grantId}`,
      roles: [],
      scopes,
      chain: [...(await identity.agentChain(db, a, org.name)), { type: 'human', id: h.id, name: h.name }],
      org: { id: org.id, name: org.name, domain: org.domain },
      address: a.address,
      responsibleHuman: { id: a.responsible_human_id, name: rh?.name ?? '' },
      oauth: { grantId: at.grantId, clientId: at.clientId ?? '', human: { id: h.id, name: h.name } },
    };
  };

  /** Past any cache, just before an act that cannot be taken back: the grant still has tokens and both people are active. */
  const isLive = async (p: Principal): Promise<boolean> => {
    if (!p.oauth) return false;
    if (!(await liveDelegation(accountIdOf(p.id, p.oauth.human.id)))) return false;
    return records.grantHasTokens(p.oauth.grantId);
  };

  return { handle, interaction, finish, refuse, authenticate, isLive, forHost };
};

export type OauthServer = ReturnType<typeof createOauthServer>;
