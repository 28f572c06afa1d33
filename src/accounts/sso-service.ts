import * as oidc from 'openid-client';
import type { Guard } from '../identity/guard.js';
import type { IdentityRepo } from '../identity/identity-repo.js';
import { requireAdmin } from '../identity/identity-service.js';
import type { RequestContext, Role } from '../identity/principal.js';
import type { Clock } from '../kernel/clock.js';
import { open, seal } from '../kernel/crypto/envelope.js';
import type { KeyRing } from '../kernel/crypto/keyring.js';
import { AppError, notFound, unprocessable } from '../kernel/errors.js';
import type { Db } from '../store/db.js';
import type { HumansTable } from '../store/schema.js';
import type { AccountsRepo } from './accounts-repo.js';
import {
  type AccountsService,
  hashChallengeKey,
  type IssuedSession,
  type SessionState,
  type SignInMeta,
  signInFailed,
} from './accounts-service.js';

/** Same associated data as app/sealed-columns.ts lists for sso_configs.client_secret_sealed. */
export const ssoSecretAad = (orgId: string) => `mailward/sso-client-secret/v1|${orgId}`;

export type SsoConfigInput = {
  issuer: string;
  client_id: string;
  client_secret: string;
  role_claim?: string | undefined;
  role_map?: Record<string, string> | undefined;
};

const FLOW_TTL_MS = 10 * 60_000;
const isLoopback = (u: URL) => ['127.0.0.1', 'localhost', '[::1]'].includes(u.hostname);

type Deps = { db: Db; repo: AccountsRepo; identity: IdentityRepo; accounts: AccountsService; guard: Guard; ring: KeyRing; clock: Clock };

/**
 * Single sign-on with the organisation's OpenID Connect provider (openid-client): authorization code
 * with PKCE (RFC 7636, S256), `state` and `nonce` stored server-side and consumed once, the ID token
 * checked by openid-client (signature, `iss`, `aud` = our client, `nonce`, expiry). Humans are
 * matched by the `sub` stored at their first SSO sign-in, else by an email the provider marks
 * verified; roles stay granted in Mailward and a configured claim can only narrow them.
 */
export const createSsoService = ({ db, repo, identity, accounts, guard, ring, clock }: Deps) => {
  const nowIso = () => clock.now().toISOString();
  const cache = new Map<string, { key: string; config: Promise<oidc.Configuration> }>();

  const configFor = async (orgId: string) => {
    const row = await repo.ssoConfig(db, orgId);
    if (!row) throw notFound('single sign-on configuration');
    const key = `${row.issuer}|${row.client_id}|${row.updated_at}`;
    let config = cache.get(orgId)?.key === key ? cache.get(orgId)?.config : undefined;
    if (!config) {
      const secret = open(ring, row.client_secret_sealed, ssoSecretAad(orgId)).toString();
      const issuer = new URL(row.issuer);
      // Plain http only for a provider on this machine (development and tests); anything else must be https.
      const options = issuer.protocol === 'http:' && isLoopback(issuer) ? { execute: [oidc.allowInsecureRequests] } : undefined;
      config = oidc.discovery(issuer, row.client_id, undefined, oidc.ClientSecretBasic(secret), options);
      cache.set(orgId, { key, config });
    }
    try {
      return { row, config: await config };
    } catch {
      cache.delete(orgId);
      // The provider's discovery document could not be read: nothing of its answer is repeated.
      throw new AppError('sso_unavailable', 503, 'The identity provider cannot be reached; try again later.', { temporary: true });
    }
  };

  /** Sets the organisation's provider (admin). The client secret is sealed at rest and never returned. Audits sso.configured. */
  const configure = (ctx: RequestContext, body: SsoConfigInput) =>
    guard.change(ctx, 'sso.configured', null, async (tx) => {
      requireAdmin(ctx);
      const issuer = new URL(body.issuer);
      if (!(issuer.protocol === 'https:' || (issuer.protocol === 'http:' && isLoopback(issuer)))) {
        throw unprocessable('invalid_issuer', 'The issuer must be an https:// URL (http:// only on loopback).');
      }
      const orgId = ctx.principal.orgId;
      await repo.upsertSsoConfig(tx, {
        org_id: orgId,
        issuer: body.issuer,
        client_id: body.client_id,
        client_secret_sealed: seal(ring, body.client_secret, ssoSecretAad(orgId)),
        role_claim: body.role_claim ?? null,
        role_map: body.role_map ? JSON.stringify(body.role_map) : null,
        updated_at: nowIso(),
      });
      await guard.recordIn(
        tx,
        ctx,
        'sso.configured',
        { type: 'organization', id: orgId },
        {
          issuer: body.issuer,
          client_id: body.client_id,
          role_claim: body.role_claim ?? null,
        },
      );
      return { issuer: body.issuer, client_id: body.client_id, role_claim: body.role_claim ?? null, role_map: body.role_map ?? null };
    });

  /** Organisations whose sign-in page offers SSO. */
  const providers = () => repo.ssoOrgs(db);

  /**
   * Starts a sign-in (or, with `stepUpOf`, a re-authentication: max_age=0 and prompt=login make the
   * provider check the person again). Returns the provider's authorization URL.
   */
  const start = async (orgId: string, redirectUri: string, stepUpOf?: SessionState) => {
    const { config } = await configFor(orgId);
    const verifier = oidc.randomPKCECodeVerifier();
    const state = oidc.randomState();
    const nonce = oidc.randomNonce();
    await repo.insertChallenge(db, {
      key_hash: hashChallengeKey('oidc', state),
      kind: 'oidc',
      org_id: orgId,
      human_id: stepUpOf?.human.id ?? null,
      payload: JSON.stringify({ verifier, nonce, redirect_uri: redirectUri, step_up_session_id: stepUpOf?.session.id ?? null }),
      expires_at: new Date(clock.now().getTime() + FLOW_TTL_MS).toISOString(),
    });
    return oidc.buildAuthorizationUrl(config, {
      redirect_uri: redirectUri,
      scope: 'openid email profile',
      code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      state,
      nonce,
      ...(stepUpOf ? { max_age: '0', prompt: 'login' } : {}),
    }).href;
  };

  const narrowRoles = (claims: Record<string, unknown>, roleClaim: string | null, roleMap: string | null): Role[] | null => {
    if (!roleClaim) return null;
    const raw = claims[roleClaim];
    const values = (Array.isArray(raw) ? raw : raw === undefined ? [] : [raw]).map(String);
    const map = roleMap ? (JSON.parse(roleMap) as Record<string, string>) : {};
    return accounts.rolesOnly(values.map((v) => map[v] ?? v));
  };

  /**
   * Finishes the flow at the redirect URI. Refuses (401 sign_in_failed, audited with the reason) an
   * unknown, used or expired `state`, a code the provider refuses (replayed, or issued to another
   * client), an ID token that fails openid-client's checks (another audience, wrong nonce, bad
   * signature) and a person Mailward does not know. A step-up must be the same human.
   */
  const callback = async (currentUrl: URL, meta: SignInMeta): Promise<{ issued: IssuedSession; stepUp: boolean }> => {
    let flowOrg: string | null = null;
    const fail = async (reason: string, h: HumansTable | null = null) => {
      await accounts.record(db, 'human.sign_in_failed', h, meta, { reason, method: 'sso' }, 'denied', null, flowOrg);
      return signInFailed();
    };
    const state = currentUrl.searchParams.get('state');
    if (!state || state.length > 200) throw await fail('bad_state');
    const ch = await repo.consumeChallenge(db, hashChallengeKey('oidc', state), 'oidc', nowIso());
    if (!ch?.org_id) throw await fail('bad_state');
    flowOrg = ch.org_id;
    const flow = JSON.parse(ch.payload) as { verifier: string; nonce: string; redirect_uri: string; step_up_session_id: string | null };
    const { row, config } = await configFor(ch.org_id);
    let claims: Record<string, unknown>;
    try {
      const tokens = await oidc.authorizationCodeGrant(config, currentUrl, {
        pkceCodeVerifier: flow.verifier,
        expectedState: state,
        expectedNonce: flow.nonce,
        idTokenExpected: true,
        ...(flow.step_up_session_id ? { maxAge: 60 } : {}),
      });
      const idClaims = (tokens.claims() ?? {}) as Record<string, unknown>;
      // Providers may keep email and group claims out of the ID token (OIDC Core 5.4): UserInfo, bound to the same `sub`, adds them.
      const info = await oidc.fetchUserInfo(config, tokens.access_token, String(idClaims.sub ?? ''));
      claims = { ...info, ...idClaims };
    } catch (e) {
      const code = (e as { code?: string; error?: string }).error ?? (e as { code?: string }).code ?? 'token_refused';
      throw await fail(`token_refused:${String(code).slice(0, 60)}`);
    }
    const sub = typeof claims.sub === 'string' ? claims.sub : '';
    let h = sub ? await repo.humanBySsoSubject(db, ch.org_id, sub) : undefined;
    let linked = false;
    if (!h && claims.email_verified === true && typeof claims.email === 'string') {
      const byEmail = (await repo.humansByEmail(db, claims.email, ch.org_id))[0];
      const c = byEmail ? await repo.credentials(db, byEmail.id) : undefined;
      // Matched by email only while no other subject is linked to this human.
      if (byEmail && !c?.sso_subject) {
        h = byEmail;
        linked = true;
      }
    }
    if (h?.is_active !== 1) throw await fail('unknown_person');
    const human = h;
    // A step-up returns through a cross-site redirect, which carries no SameSite=Strict cookie: the session is the one that started the flow.
    let current: SessionState | undefined;
    if (flow.step_up_session_id) {
      const row = await repo.sessionById(db, flow.step_up_session_id);
      if (
        !row ||
        row.ended_at ||
        row.stage !== 'full' ||
        row.human_id !== human.id ||
        Date.parse(row.expires_at) <= clock.now().getTime()
      ) {
        throw await fail('step_up_other_session', human);
      }
      const o = await identity.org(db, human.org_id);
      current = { session: row, human, org: { id: human.org_id, name: o?.name ?? '', domain: o?.domain ?? '' } };
    }
    const roles = narrowRoles(claims, row.role_claim, row.role_map);
    const issued = await db.transaction().execute(async (tx) => {
      if (linked) {
        await repo.upsertCredentials(tx, { human_id: human.id, org_id: human.org_id, sso_subject: sub, updated_at: nowIso() });
        await accounts.record(tx, 'human.factor_enrolled', human, meta, { factor: 'sso', issuer: row.issuer });
      }
      if (current && flow.step_up_session_id) {
        const r = await accounts.rotate(tx, current, 'full', 'sso', meta);
        await accounts.record(tx, 'human.step_up', human, meta, { method: 'sso', session_id: r.state.session.id });
        return r;
      }
      const r = await accounts.issue(tx, human, 'full', { authMethod: 'sso', secondFactorMethod: 'sso', roles }, meta);
      await accounts.record(tx, 'human.signed_in', human, meta, {
        method: 'sso',
        issuer: row.issuer,
        session_id: r.state.session.id,
        roles,
      });
      return r;
    });
    return { issued, stepUp: !!flow.step_up_session_id };
  };

  return { configure, providers, start, callback };
};

export type SsoService = ReturnType<typeof createSsoService>;
