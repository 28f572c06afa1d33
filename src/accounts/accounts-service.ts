import { randomBytes } from 'node:crypto';
import { Secret, TOTP } from 'otpauth';
import type { AuditActor, AuditService } from '../audit/audit-service.js';
import type { Guard } from '../identity/guard.js';
import type { IdentityRepo } from '../identity/identity-repo.js';
import { requireAdmin } from '../identity/identity-service.js';
import { HUMAN_ROLES, type Principal, type RequestContext, type Role, systemActor } from '../identity/principal.js';
import type { Clock } from '../kernel/clock.js';
import { open, type SealedValue, seal } from '../kernel/crypto/envelope.js';
import { constantTimeEqual, sha256Hex } from '../kernel/crypto/hash.js';
import type { KeyRing } from '../kernel/crypto/keyring.js';
import { AppError, conflict, notFound, unauthorized, unprocessable } from '../kernel/errors.js';
import { newId } from '../kernel/ids.js';
import type { Db, Executor, Tx } from '../store/db.js';
import { isUniqueViolation } from '../store/errors.js';
import type { HumanSessionsTable, HumansTable } from '../store/schema.js';
import { parseTotpSeed, type TotpSeed, totpCode } from '../vault/totp.js';
import type { AccountsRepo } from './accounts-repo.js';
import { checkPasswordPolicy, hashPassword, verifyPassword } from './passwords.js';

/** Settings of sign-in (built from the environment by app/config.ts). */
export type AccountsConfig = {
  /** MAILWARD_PUBLIC_URL: the console's origin; unset, taken from a loopback Host (accounts/origin.ts). */
  publicUrl: string | undefined;
  /** 45 CFR 164.312(a)(2)(iii) automatic logoff: a session unused this long ends (MAILWARD_SESSION_IDLE_SECONDS, default 900). */
  sessionIdleSeconds: number;
  /** Absolute lifetime from sign-in (MAILWARD_SESSION_MAX_SECONDS, default 12 h). */
  sessionMaxSeconds: number;
  /** 21 CFR 11.200: a signature through a session needs a second factor this recent (MAILWARD_STEPUP_SECONDS, default 300). */
  stepUpSeconds: number;
  invitationTtlSeconds: number;
  /** An account locked after repeated failures unlocks itself after this long, or at once by an admin. */
  lockSeconds: number;
};

/** Who is signing in and from where; never logged with a password or code. */
export type SignInMeta = { requestId: string | null; clientIp: string | null; userAgent: string | null };

export type SecondFactorMethod = 'totp' | 'webauthn' | 'sso' | 'recovery_code';

export type SessionState = {
  session: HumanSessionsTable;
  human: HumansTable;
  org: { id: string; name: string; domain: string };
};

/** A freshly issued session: the cookie value (shown to the browser only) and its row. */
export type IssuedSession = { token: string; state: SessionState };

// Sign-in throttling (NIST SP 800-63B 5.2.2): failures counted per account and per client address in a window.
const THROTTLE_WINDOW_MS = 15 * 60_000;
/** From this many failures on, each further attempt waits 2^(n-5) s (at most 30 s) after the last failure: slowed. */
const SLOW_AFTER = 5;
/** This many failures from one address within the window: refused until the window ends. */
const ADDRESS_LIMIT = 20;
/** This many failures on one account lock it (admin unlock, or lockSeconds). */
const LOCK_AFTER = 10;
/** last_seen_at is written at most this often: idle expiry is exact to within this much. */
const TOUCH_MS = 15_000;
const RECOVERY_CODES = 10;

const hashToken = (token: string) => sha256Hex(`mailward/session/v1|${token}`);
const hashInvitation = (token: string) => sha256Hex(`mailward/invitation/v1|${token}`);
const hashRecovery = (humanId: string, code: string) =>
  sha256Hex(`mailward/recovery-code/v1|${humanId}|${code.replace(/[\s-]/g, '').toLowerCase()}`);
export const hashChallengeKey = (kind: string, key: string) => sha256Hex(`mailward/challenge/v1|${kind}|${key}`);
const accountSubject = (email: string) => `acct:${sha256Hex(email.trim().toLowerCase())}`;
const addressSubject = (ip: string | null) => `ip:${ip ?? 'unknown'}`;

/** Same associated data as app/sealed-columns.ts lists for human_credentials.totp_sealed. */
export const humanTotpAad = (orgId: string, humanId: string) => `mailward/human-totp/v1|${orgId}|${humanId}`;

const randomToken = () => randomBytes(32).toString('base64url');

/** The one refusal every failed sign-in gets: it never tells whether the account exists (no enumeration). */
export const signInFailed = () =>
  new AppError('sign_in_failed', 401, 'Sign-in failed: the email, password or code is wrong, or this account cannot sign in now.');
const tooMany = (retryAfter: number) =>
  new AppError('too_many_attempts', 429, 'Too many sign-in attempts; wait before trying again.', {
    temporary: true,
    extra: { retry_after: retryAfter },
  });
export const stepUpRequired = () =>
  new AppError('step_up_required', 403, 'Signing this decision needs a second-factor check within the last minutes (21 CFR 11.200).', {
    extra: { step_up_url: '/console/step-up' },
  });

type Deps = {
  db: Db;
  repo: AccountsRepo;
  identity: IdentityRepo;
  guard: Guard;
  audit: Pick<AuditService, 'record' | 'recordAlone'>;
  ring: KeyRing;
  clock: Clock;
  config: AccountsConfig;
};

export const createAccountsService = ({ db, repo, identity, guard, audit, ring, clock, config }: Deps) => {
  const now = () => clock.now();
  const nowIso = () => now().toISOString();

  const orgView = async (ex: Executor, orgId: string) => {
    const o = await identity.org(ex, orgId);
    return { id: orgId, name: o?.name ?? '', domain: o?.domain ?? '' };
  };

  const humanActor = async (ex: Executor, h: HumansTable): Promise<AuditActor> => ({
    type: 'human',
    id: h.id,
    orgId: h.org_id,
    chain: identity.humanChain(h, (await orgView(ex, h.org_id)).name),
  });

  const record = async (
    ex: Executor,
    action: string,
    h: HumansTable | null,
    meta: SignInMeta,
    details: Record<string, unknown>,
    outcome: 'success' | 'denied' = 'success',
    target: { type: string; id: string } | null = null,
    /** The organisation an anonymous refusal belongs to, when known (an SSO flow names it), so its admins see it. */
    orgId: string | null = null,
  ) => {
    const input = {
      action,
      actor: h ? await humanActor(ex, h) : { type: 'anonymous' as const, id: null, orgId, chain: [] },
      orgId: h?.org_id ?? orgId,
      target: target ?? (h ? { type: 'human', id: h.id } : null),
      outcome,
      requestId: meta.requestId,
      clientIp: meta.clientIp,
      details,
    };
    if (outcome === 'success') await audit.record(ex as Tx, input);
    else await audit.recordAlone(input);
  };

  // ---- sessions -----------------------------------------------------------------------------

  const issue = async (
    tx: Tx,
    h: HumansTable,
    stage: HumanSessionsTable['stage'],
    opts: {
      authMethod: string;
      secondFactorMethod?: SecondFactorMethod | null;
      roles?: Role[] | null;
      expiresAt?: string;
      createdAt?: string;
    },
    meta: SignInMeta,
  ): Promise<IssuedSession> => {
    const t = now();
    const token = randomToken();
    const row: HumanSessionsTable = {
      id: newId('session'),
      token_hash: hashToken(token),
      org_id: h.org_id,
      human_id: h.id,
      stage,
      csrf_token: randomBytes(32).toString('base64url'),
      auth_method: opts.authMethod,
      roles: opts.roles ? JSON.stringify(opts.roles) : null,
      second_factor_at: opts.secondFactorMethod ? t.toISOString() : null,
      second_factor_method: opts.secondFactorMethod ?? null,
      created_at: opts.createdAt ?? t.toISOString(),
      last_seen_at: t.toISOString(),
      expires_at: opts.expiresAt ?? new Date(t.getTime() + config.sessionMaxSeconds * 1000).toISOString(),
      ended_at: null,
      end_reason: null,
      client_ip: meta.clientIp,
      user_agent: meta.userAgent?.slice(0, 200) ?? null,
    };
    await repo.insertSession(tx, row);
    return { token, state: { session: row, human: h, org: await orgView(tx, h.org_id) } };
  };

  /**
   * A new session id whenever the session gains privilege (OWASP Session Management: renew the id
   * after any privilege change): the old id ends (`rotated`), the absolute lifetime is kept.
   */
  const rotate = async (
    tx: Tx,
    s: SessionState,
    stage: HumanSessionsTable['stage'],
    secondFactorMethod: SecondFactorMethod,
    meta: SignInMeta,
  ): Promise<IssuedSession> => {
    if (!(await repo.endSession(tx, s.session.id, nowIso(), 'rotated'))) throw unauthorized('The session has ended; sign in again.');
    return issue(
      tx,
      s.human,
      stage,
      {
        authMethod: s.session.auth_method ?? 'password',
        secondFactorMethod,
        roles: s.session.roles ? (JSON.parse(s.session.roles) as Role[]) : null,
        expiresAt: s.session.expires_at,
        createdAt: s.session.created_at,
      },
      meta,
    );
  };

  const endWithAudit = async (s: HumanSessionsTable, h: HumansTable | undefined, reason: string, meta: SignInMeta) =>
    db.transaction().execute(async (tx) => {
      if (!(await repo.endSession(tx, s.id, nowIso(), reason))) return;
      if (h) await record(tx, 'session.ended', h, meta, { session_id: s.id, reason }, 'success', { type: 'session', id: s.id });
    });

  /**
   * The session behind a cookie value, or null. Every request reads the store (no cache), so a
   * sign-out, revocation, deactivation or idle expiry takes effect in every process at once. A
   * session idle longer than sessionIdleSeconds or past its absolute lifetime is ended here
   * (45 CFR 164.312(a)(2)(iii) automatic logoff) and audited session.ended.
   */
  const resolve = async (token: string | undefined, meta: SignInMeta): Promise<SessionState | null> => {
    if (!token || token.length > 100) return null;
    const s = await repo.sessionByHash(db, hashToken(token));
    if (!s) return null;
    const t = now();
    const h = await identity.human(db, s.org_id, s.human_id);
    if (h?.is_active !== 1) {
      await endWithAudit(s, h, 'deactivated', meta);
      return null;
    }
    if (Date.parse(s.expires_at) <= t.getTime()) {
      await endWithAudit(s, h, 'expired', meta);
      return null;
    }
    if (t.getTime() - Date.parse(s.last_seen_at) >= config.sessionIdleSeconds * 1000) {
      await endWithAudit(s, h, 'idle_timeout', meta);
      return null;
    }
    if (t.getTime() - Date.parse(s.last_seen_at) >= TOUCH_MS) {
      s.last_seen_at = t.toISOString();
      await repo.updateSession(db, s.id, { last_seen_at: s.last_seen_at });
    }
    return { session: s, human: h, org: await orgView(db, h.org_id) };
  };

  /** The roles a session carries: the human's roles, narrowed by the identity provider's claim at SSO sign-in. */
  const sessionRoles = (s: SessionState): Role[] => {
    const held = JSON.parse(s.human.roles) as Role[];
    if (!s.session.roles) return held;
    const narrowed = JSON.parse(s.session.roles) as Role[];
    return held.filter((r) => narrowed.includes(r));
  };

  /** A signed-in session as the Principal every service takes (the REST API accepts sessions beside keys). */
  const principalOf = (s: SessionState): Principal => ({
    type: 'human',
    id: s.human.id,
    orgId: s.human.org_id,
    name: s.human.name,
    keyId: s.session.id,
    roles: sessionRoles(s),
    scopes: [],
    chain: identity.humanChain(s.human, s.org.name),
    org: s.org,
    session: {
      id: s.session.id,
      authMethod: s.session.auth_method ?? 'password',
      secondFactorAt: s.session.second_factor_at,
      secondFactorMethod: s.session.second_factor_method,
    },
  });

  /**
   * Authenticates a REST call made with a session cookie: only a fully signed-in session; a state-changing
   * call must carry the session's CSRF token in `x-csrf-token` (OWASP synchronizer token). Throws 401
   * unauthorized / 403 csrf_failed.
   */
  const authenticateRest = async (token: string | undefined, meta: SignInMeta, csrf: { unsafe: boolean; header: string | undefined }) => {
    const s = await resolve(token, meta);
    if (s?.session.stage !== 'full') throw unauthorized('A valid API key or a signed-in session is required.');
    if (csrf.unsafe && !csrfMatches(s, csrf.header)) throw new AppError('csrf_failed', 403, 'The CSRF token is missing or wrong.');
    return principalOf(s);
  };

  const csrfMatches = (s: SessionState, presented: string | undefined) =>
    !!presented && constantTimeEqual(Buffer.from(presented), Buffer.from(s.session.csrf_token));

  /** Signs out: the session ends at once in every process. Audits session.ended (signed_out). */
  const signOut = async (s: SessionState, meta: SignInMeta) => endWithAudit(s.session, s.human, 'signed_out', meta);

  const sessionView = (row: HumanSessionsTable, currentId: string | null) => ({
    id: row.id,
    stage: row.stage,
    auth_method: row.auth_method,
    second_factor_method: row.second_factor_method,
    second_factor_at: row.second_factor_at,
    created_at: row.created_at,
    last_seen_at: row.last_seen_at,
    expires_at: row.expires_at,
    idle_expires_at: new Date(Date.parse(row.last_seen_at) + config.sessionIdleSeconds * 1000).toISOString(),
    client_ip: row.client_ip,
    user_agent: row.user_agent,
    current: row.id === currentId,
  });

  const requireHumanCaller = (ctx: RequestContext) => {
    if (ctx.principal.type !== 'human') throw notFound('session');
  };

  /** One's own open sessions, or (admins) another human's. Audited as a read (session.list). */
  const listSessions = (ctx: RequestContext, humanId?: string) =>
    guard.change(ctx, 'session.list', humanId ? { type: 'human', id: humanId } : null, async (tx) => {
      requireHumanCaller(ctx);
      const id = humanId ?? ctx.principal.id;
      if (id !== ctx.principal.id) {
        requireAdmin(ctx);
        if (!(await identity.human(tx, ctx.principal.orgId, id))) throw notFound('human');
      }
      const t = now().getTime();
      const rows = (await repo.openSessions(tx, id)).filter(
        (r) => Date.parse(r.expires_at) > t && t - Date.parse(r.last_seen_at) < config.sessionIdleSeconds * 1000,
      );
      await guard.recordIn(tx, ctx, 'session.list', { type: 'human', id }, { count: rows.length });
      return { sessions: rows.map((r) => sessionView(r, ctx.principal.session?.id ?? null)) };
    });

  /** Ends one session: one's own, or any of the organisation's (admins). Throws 404. Audits session.ended (revoked). */
  const revokeSession = (ctx: RequestContext, sessionId: string) =>
    guard.change(
      ctx,
      'session.ended',
      { type: 'session', id: sessionId },
      async (tx) => {
        requireHumanCaller(ctx);
        const s = await repo.sessionById(tx, sessionId);
        if (!s || s.org_id !== ctx.principal.orgId) throw notFound('session');
        if (s.human_id !== ctx.principal.id) {
          if (!ctx.principal.roles.includes('admin')) throw notFound('session');
        }
        const ended = await repo.endSession(tx, s.id, nowIso(), s.human_id === ctx.principal.id ? 'revoked' : 'ended_by_admin');
        if (ended)
          await guard.recordIn(tx, ctx, 'session.ended', { type: 'session', id: s.id }, { human_id: s.human_id, reason: 'revoked' });
        return { id: s.id, ended: true };
      },
      { invalidatesAuth: true },
    );

  /** An admin ends every session of a human at once (every process: sessions are read from the store). Audits session.ended. */
  const endHumanSessions = (ctx: RequestContext, humanId: string) =>
    guard.change(
      ctx,
      'session.ended',
      { type: 'human', id: humanId },
      async (tx) => {
        requireAdmin(ctx);
        if (!(await identity.human(tx, ctx.principal.orgId, humanId))) throw notFound('human');
        const ended = await repo.endSessions(tx, humanId, nowIso(), 'ended_by_admin');
        await guard.recordIn(tx, ctx, 'session.ended', { type: 'human', id: humanId }, { reason: 'ended_by_admin', session_ids: ended });
        return { ended: ended.length };
      },
      { invalidatesAuth: true },
    );

  // ---- invitations --------------------------------------------------------------------------

  const mintInvitation = async (tx: Tx, h: HumansTable, createdBy: string | null, origin: string) => {
    const at = nowIso();
    await repo.voidInvitations(tx, h.id, at);
    const token = randomToken();
    const row = {
      id: newId('invitation'),
      org_id: h.org_id,
      human_id: h.id,
      token_hash: hashInvitation(token),
      created_at: at,
      created_by: createdBy,
      expires_at: new Date(now().getTime() + config.invitationTtlSeconds * 1000).toISOString(),
    };
    await repo.insertInvitation(tx, row);
    return { invitation_id: row.id, human_id: h.id, url: `${origin}/console/invite/${token}`, expires_at: row.expires_at };
  };

  /**
   * A one-time link where the human sets a password and enrols a second factor. Shown once; only its
   * hash is stored; earlier unused links of the human stop working. Throws 403 admin_required, 404,
   * 422 principal_inactive. Audits human.invited (never the link).
   */
  const invite = (ctx: RequestContext, humanId: string, origin: string) =>
    guard.change(ctx, 'human.invited', { type: 'human', id: humanId }, async (tx) => {
      requireAdmin(ctx);
      const h = await identity.human(tx, ctx.principal.orgId, humanId);
      if (!h) throw notFound('human');
      if (h.is_active !== 1) throw unprocessable('principal_inactive', 'The human is deactivated.');
      const out = await mintInvitation(tx, h, ctx.principal.id, origin);
      await guard.recordIn(
        tx,
        ctx,
        'human.invited',
        { type: 'human', id: h.id },
        { invitation_id: out.invitation_id, expires_at: out.expires_at },
      );
      return out;
    });

  /**
   * CLI `mailward humans invite`: creates the human (as the system, like `mailward init`) and the
   * one-time link. Throws 404 when the organisation is unknown, 409 email_taken. Audits human.created and human.invited.
   */
  const inviteNewHuman = (orgId: string, body: { name: string; email: string; roles: Role[] }, origin: string) =>
    db.transaction().execute(async (tx) => {
      if (!(await identity.org(tx, orgId))) throw notFound('organization');
      const h: HumansTable = {
        id: newId('human'),
        org_id: orgId,
        name: body.name,
        email: body.email.toLowerCase(),
        roles: JSON.stringify([...new Set(body.roles)]),
        is_active: 1,
        created_at: nowIso(),
        deactivated_at: null,
      };
      try {
        await tx.insertInto('humans').values(h).execute();
      } catch (e) {
        if (isUniqueViolation(e)) throw conflict('email_taken', 'A human with this email already exists in the organization.');
        throw e;
      }
      const actor = systemActor(orgId);
      await audit.record(tx, { action: 'human.created', actor, target: { type: 'human', id: h.id }, details: { roles: body.roles } });
      const out = await mintInvitation(tx, h, null, origin);
      await audit.record(tx, {
        action: 'human.invited',
        actor,
        target: { type: 'human', id: h.id },
        details: { invitation_id: out.invitation_id, expires_at: out.expires_at },
      });
      return out;
    });

  const liveInvitation = async (ex: Executor, token: string) => {
    const inv = await repo.invitationByHash(ex, hashInvitation(token));
    if (!inv || inv.used_at || Date.parse(inv.expires_at) <= now().getTime()) return null;
    const h = await identity.human(ex, inv.org_id, inv.human_id);
    if (h?.is_active !== 1) return null;
    return { inv, h };
  };

  /** What the invitation page shows (name and email), or 404 for an unknown, used or expired link. */
  const invitation = async (token: string) => {
    const r = await liveInvitation(db, token);
    if (!r) throw notFound('invitation');
    return { name: r.h.name, email: r.h.email, expires_at: r.inv.expires_at };
  };

  /**
   * Uses an invitation: sets the password (policy: passwords.ts) and opens an `enrol` session, which
   * reaches nothing but second-factor enrolment. Throws 404 (link unknown, used or expired), 422
   * weak_password. Audits human.password_set.
   */
  const acceptInvitation = async (token: string, password: string, meta: SignInMeta): Promise<IssuedSession> => {
    const pre = await liveInvitation(db, token);
    if (!pre) throw notFound('invitation');
    checkPasswordPolicy(password, { email: pre.h.email, name: pre.h.name });
    const passwordHash = await hashPassword(password);
    return db.transaction().execute(async (tx) => {
      const r = await liveInvitation(tx, token);
      if (!r || !(await repo.useInvitation(tx, r.inv.id, nowIso()))) throw notFound('invitation');
      await repo.upsertCredentials(tx, {
        human_id: r.h.id,
        org_id: r.h.org_id,
        password_hash: passwordHash,
        locked_at: null,
        updated_at: nowIso(),
      });
      await record(tx, 'human.password_set', r.h, meta, { invitation_id: r.inv.id });
      const hasFactor = await hasSecondFactor(tx, r.h.id);
      return issue(tx, r.h, hasFactor ? 'second_factor' : 'enrol', { authMethod: 'password' }, meta);
    });
  };

  // ---- factors ------------------------------------------------------------------------------

  const hasSecondFactor = async (ex: Executor, humanId: string) => {
    const c = await repo.credentials(ex, humanId);
    if (c?.totp_confirmed_at) return true;
    return (await repo.webauthnCredentials(ex, humanId)).length > 0;
  };

  const openSeed = (orgId: string, humanId: string, sealed: SealedValue): TotpSeed =>
    JSON.parse(open(ring, sealed, humanTotpAad(orgId, humanId)).toString()) as TotpSeed;

  /**
   * Starts (or resumes) TOTP enrolment: a fresh 160-bit seed (RFC 4226 section 4 R6), sealed at rest.
   * The secret is returned for the page to show; it is never logged. Throws 409 totp_enrolled.
   */
  const beginTotp = async (s: SessionState, meta: SignInMeta) => {
    const h = s.human;
    // Showing the seed is a read of a secret: audited, in the transaction that creates or reads it (45 CFR 164.312(b)).
    const seed = await db.transaction().execute(async (tx): Promise<TotpSeed> => {
      const c = await repo.credentials(tx, h.id);
      if (c?.totp_confirmed_at) throw conflict('totp_enrolled', 'An authenticator app is already enrolled.');
      if (c?.totp_sealed) {
        await record(tx, 'human.totp_seed_shown', h, meta, { new_seed: false });
        return openSeed(h.org_id, h.id, c.totp_sealed);
      }
      const fresh = parseTotpSeed({ secret: new Secret({ size: 20 }).base32 });
      await repo.upsertCredentials(tx, {
        human_id: h.id,
        org_id: h.org_id,
        totp_sealed: seal(ring, JSON.stringify(fresh), humanTotpAad(h.org_id, h.id)),
        totp_last_step: null,
        updated_at: nowIso(),
      });
      await record(tx, 'human.totp_seed_shown', h, meta, { new_seed: true });
      return fresh;
    });
    const uri = new TOTP({
      issuer: `Mailward (${s.org.name})`,
      label: h.email,
      secret: Secret.fromBase32(seed.secret),
      algorithm: seed.algorithm,
      digits: seed.digits,
      period: seed.period,
    }).toString();
    return { secret: seed.secret, otpauth_uri: uri, digits: seed.digits, period: seed.period };
  };

  /**
   * Checks a TOTP code (RFC 6238; one step of clock drift either side) and spends its time step: a
   * code is accepted once per window, across processes (compare-and-set on totp_last_step).
   */
  const checkTotp = async (tx: Executor, h: HumansTable, code: string, requireConfirmed: boolean): Promise<boolean> => {
    const c = await repo.credentials(tx, h.id);
    if (!c?.totp_sealed || (requireConfirmed && !c.totp_confirmed_at)) return false;
    const clean = code.replace(/\s/g, '');
    if (!/^\d{6,8}$/.test(clean)) return false;
    const seed = openSeed(h.org_id, h.id, c.totp_sealed);
    const step = Math.floor(now().getTime() / (seed.period * 1000));
    for (const s of [step - 1, step, step + 1]) {
      const expected = totpCode(seed, new Date(s * seed.period * 1000)).code;
      if (constantTimeEqual(Buffer.from(expected), Buffer.from(clean))) return repo.claimTotpStep(tx, h.id, s);
    }
    return false;
  };

  const newRecoveryCodes = async (tx: Tx, humanId: string): Promise<string[]> => {
    const codes = Array.from({ length: RECOVERY_CODES }, () => (randomBytes(10).toString('hex').match(/.{4}/g) ?? []).join('-'));
    await repo.replaceRecoveryCodes(
      tx,
      humanId,
      codes.map((c) => ({ id: newId('recoveryCode'), code_hash: hashRecovery(humanId, c) })),
      nowIso(),
    );
    return codes;
  };

  /**
   * Confirms TOTP enrolment with a first code. The first factor a human enrols also yields recovery
   * codes (shown once, stored hashed); an `enrol` session becomes a full session (new id). Throws 401
   * second_factor_failed. Audits human.factor_enrolled.
   */
  const confirmTotp = async (s: SessionState, code: string, meta: SignInMeta) =>
    db.transaction().execute(async (tx) => {
      if (!(await checkTotp(tx, s.human, code, false))) {
        throw new AppError('second_factor_failed', 401, 'The code is wrong or was already used; enter the current code.');
      }
      await repo.upsertCredentials(tx, { human_id: s.human.id, org_id: s.human.org_id, totp_confirmed_at: nowIso(), updated_at: nowIso() });
      await record(tx, 'human.factor_enrolled', s.human, meta, { factor: 'totp', session_id: s.session.id });
      return finishEnrolment(tx, s, 'totp', meta);
    });

  /** After a first factor: recovery codes, and an `enrol` session becomes full (rotated). */
  const finishEnrolment = async (tx: Tx, s: SessionState, method: SecondFactorMethod, meta: SignInMeta) => {
    const recoveryCodes = (await repo.unusedRecoveryCodes(tx, s.human.id)) === 0 ? await newRecoveryCodes(tx, s.human.id) : null;
    if (recoveryCodes) await record(tx, 'human.factor_enrolled', s.human, meta, { factor: 'recovery_codes', count: recoveryCodes.length });
    let issued: IssuedSession | null = null;
    if (s.session.stage === 'enrol') {
      issued = await rotate(tx, s, 'full', method, meta);
      await record(tx, 'human.signed_in', s.human, meta, {
        method: `password+${method}`,
        session_id: issued.state.session.id,
        enrolment: true,
      });
    }
    return { recoveryCodes, issued };
  };

  /** New recovery codes (the old ones stop working). Needs a recent second factor. Audits human.factor_enrolled. */
  const regenerateRecoveryCodes = async (s: SessionState, meta: SignInMeta) =>
    db.transaction().execute(async (tx) => {
      requireRecentFactor(s);
      const codes = await newRecoveryCodes(tx, s.human.id);
      await record(tx, 'human.factor_enrolled', s.human, meta, { factor: 'recovery_codes', count: codes.length, regenerated: true });
      return codes;
    });

  /** Removes the authenticator app; refused when it is the last factor. Needs a recent second factor. Audits human.factor_removed. */
  const removeTotp = async (s: SessionState, meta: SignInMeta) =>
    db.transaction().execute(async (tx) => {
      requireRecentFactor(s);
      if ((await repo.webauthnCredentials(tx, s.human.id)).length === 0) {
        throw conflict('last_factor', 'The last second factor cannot be removed; add a passkey first.');
      }
      await repo.upsertCredentials(tx, {
        human_id: s.human.id,
        org_id: s.human.org_id,
        totp_sealed: null,
        totp_confirmed_at: null,
        totp_last_step: null,
        updated_at: nowIso(),
      });
      await record(tx, 'human.factor_removed', s.human, meta, { factor: 'totp' });
    });

  const requireRecentFactor = (s: SessionState) => {
    const at = s.session.second_factor_at ? Date.parse(s.session.second_factor_at) : 0;
    if (now().getTime() - at > config.stepUpSeconds * 1000) throw stepUpRequired();
  };

  const factorSummary = async (humanId: string) => {
    const c = await repo.credentials(db, humanId);
    const keys = await repo.webauthnCredentials(db, humanId);
    return {
      totp: !!c?.totp_confirmed_at,
      passkeys: keys.map((k) => ({ id: k.id, created_at: k.created_at, last_used_at: k.last_used_at })),
      recovery_codes_left: await repo.unusedRecoveryCodes(db, humanId),
      has_password: !!c?.password_hash,
    };
  };

  // ---- sign-in ------------------------------------------------------------------------------

  const throttleCheck = async (subjects: string[]) => {
    const t = now().getTime();
    for (const r of await repo.throttles(db, subjects)) {
      if (t - Date.parse(r.window_started_at) >= THROTTLE_WINDOW_MS) continue;
      if (r.subject.startsWith('ip:') && r.failures >= ADDRESS_LIMIT) {
        throw tooMany(Math.ceil((Date.parse(r.window_started_at) + THROTTLE_WINDOW_MS - t) / 1000));
      }
      if (r.failures >= SLOW_AFTER) {
        const waitMs = Math.min(2 ** (r.failures - SLOW_AFTER), 30) * 1000;
        const until = Date.parse(r.last_failure_at) + waitMs;
        if (t < until) throw tooMany(Math.ceil((until - t) / 1000));
      }
    }
  };

  /** Counts a failure against the address and the account; the account locks at LOCK_AFTER. Audits the failure (and human.locked). */
  const failure = async (h: HumansTable | null, email: string, meta: SignInMeta, reason: string, action = 'human.sign_in_failed') => {
    const at = nowIso();
    const windowStart = new Date(now().getTime() - THROTTLE_WINDOW_MS).toISOString();
    await db.transaction().execute(async (tx) => {
      await repo.addFailure(tx, addressSubject(meta.clientIp), at, windowStart);
      const n = await repo.addFailure(tx, accountSubject(email), at, windowStart);
      if (h && n >= LOCK_AFTER) {
        const c = await repo.credentials(tx, h.id);
        if (c && !isLocked(c.locked_at)) {
          await repo.upsertCredentials(tx, { human_id: h.id, org_id: h.org_id, locked_at: at, updated_at: at });
          await record(tx, 'human.locked', h, meta, { failures: n });
        }
      }
    });
    await record(db, action, h, meta, { reason }, 'denied');
    return signInFailed();
  };

  const isLocked = (lockedAt: string | null) => !!lockedAt && now().getTime() - Date.parse(lockedAt) < config.lockSeconds * 1000;

  /**
   * First step of password sign-in. Success opens a `second_factor` session (or `enrol` when the
   * human has none yet): a password alone never signs anyone in. Every failure is the same 401
   * sign_in_failed whether or not the account exists; attempts are slowed after 5 failures and refused
   * after 20 per address (429 too_many_attempts), and an account locks after 10. Audits
   * human.sign_in_failed (denied) or human.password_verified.
   */
  const passwordSignIn = async (email: string, password: string, meta: SignInMeta): Promise<IssuedSession> => {
    const e = email.trim().toLowerCase();
    try {
      await throttleCheck([addressSubject(meta.clientIp), accountSubject(e)]);
    } catch (err) {
      await record(db, 'human.sign_in_failed', null, meta, { reason: 'throttled' }, 'denied');
      throw err;
    }
    const candidates = (await repo.humansByEmail(db, e)).filter((h) => h.is_active === 1);
    let found: HumansTable | null = null;
    let locked = false;
    for (const h of candidates) {
      const c = await repo.credentials(db, h.id);
      if (await verifyPassword(c?.password_hash ?? null, password)) {
        found = h;
        locked = isLocked(c?.locked_at ?? null);
        break;
      }
    }
    if (candidates.length === 0) await verifyPassword(null, password);
    if (!found || locked) throw await failure(found ?? candidates[0] ?? null, e, meta, locked ? 'locked' : 'bad_credentials');
    const h = found;
    return db.transaction().execute(async (tx) => {
      await repo.clearThrottle(tx, accountSubject(e));
      const stage = (await hasSecondFactor(tx, h.id)) ? 'second_factor' : 'enrol';
      const issued = await issue(tx, h, stage, { authMethod: 'password' }, meta);
      await record(tx, 'human.password_verified', h, meta, { session_id: issued.state.session.id, next: stage });
      return issued;
    });
  };

  /**
   * Second step: a TOTP code or a recovery code. Success rotates to a full session (human.signed_in);
   * failure is 401 sign_in_failed, throttled and counted like a wrong password.
   */
  const completeSecondFactor = async (s: SessionState, code: string, meta: SignInMeta): Promise<IssuedSession> => {
    if (s.session.stage !== 'second_factor') throw conflict('wrong_stage', 'This session is not waiting for a second factor.');
    try {
      await throttleCheck([addressSubject(meta.clientIp), accountSubject(s.human.email)]);
    } catch (err) {
      await record(db, 'human.second_factor_failed', s.human, meta, { reason: 'throttled' }, 'denied');
      throw err;
    }
    // An account locked meanwhile (failures from elsewhere) takes no more codes either.
    if (isLocked((await repo.credentials(db, s.human.id))?.locked_at ?? null)) {
      throw await failure(s.human, s.human.email, meta, 'locked', 'human.second_factor_failed');
    }
    const out = await db.transaction().execute(async (tx) => {
      let method: SecondFactorMethod | null = null;
      if (await checkTotp(tx, s.human, code, true)) method = 'totp';
      else if (
        /^[0-9a-f]{4}(-?[0-9a-f]{4}){4}$/i.test(code.trim()) &&
        (await repo.useRecoveryCode(tx, s.human.id, hashRecovery(s.human.id, code), nowIso()))
      )
        method = 'recovery_code';
      if (!method) return null;
      await repo.clearThrottle(tx, accountSubject(s.human.email));
      const issued = await rotate(tx, s, 'full', method, meta);
      await record(tx, 'human.signed_in', s.human, meta, { method: `password+${method}`, session_id: issued.state.session.id });
      return issued;
    });
    if (!out) throw await failure(s.human, s.human.email, meta, 'bad_second_factor', 'human.second_factor_failed');
    return out;
  };

  /**
   * Step-up (21 CFR 11.200(a)(1)(i)): a signed-in human re-checks a TOTP code; the session gets a new
   * id and a fresh second_factor_at. Throws 401 second_factor_failed. Audits human.step_up.
   */
  const stepUpTotp = async (s: SessionState, code: string, meta: SignInMeta): Promise<IssuedSession> => {
    if (s.session.stage !== 'full') throw unauthorized();
    await throttleCheck([addressSubject(meta.clientIp), accountSubject(s.human.email)]);
    const out = await db.transaction().execute(async (tx) => {
      if (!(await checkTotp(tx, s.human, code, true))) return null;
      const issued = await rotate(tx, s, 'full', 'totp', meta);
      await record(tx, 'human.step_up', s.human, meta, { method: 'totp', session_id: issued.state.session.id });
      return issued;
    });
    if (!out) throw await failure(s.human, s.human.email, meta, 'bad_second_factor', 'human.second_factor_failed');
    return out;
  };

  /** Admin unlock of an account locked by failed sign-ins; clears its failure count. Audits human.unlocked. */
  const unlock = (ctx: RequestContext, humanId: string) =>
    guard.change(ctx, 'human.unlocked', { type: 'human', id: humanId }, async (tx) => {
      requireAdmin(ctx);
      const h = await identity.human(tx, ctx.principal.orgId, humanId);
      if (!h) throw notFound('human');
      const c = await repo.credentials(tx, h.id);
      const wasLocked = !!c && isLocked(c.locked_at);
      if (c) await repo.upsertCredentials(tx, { human_id: h.id, org_id: h.org_id, locked_at: null, updated_at: nowIso() });
      await repo.clearThrottle(tx, accountSubject(h.email));
      await guard.recordIn(tx, ctx, 'human.unlocked', { type: 'human', id: h.id }, { was_locked: wasLocked });
      return { id: h.id, locked: false, was_locked: wasLocked };
    });

  /** A validated list of Mailward roles (unknown names dropped). */
  const rolesOnly = (names: string[]): Role[] => names.filter((n): n is Role => (HUMAN_ROLES as readonly string[]).includes(n));

  return {
    issue,
    rotate,
    resolve,
    principalOf,
    authenticateRest,
    csrfMatches,
    signOut,
    listSessions,
    revokeSession,
    endHumanSessions,
    invite,
    inviteNewHuman,
    invitation,
    acceptInvitation,
    hasSecondFactor,
    beginTotp,
    confirmTotp,
    finishEnrolment,
    regenerateRecoveryCodes,
    removeTotp,
    factorSummary,
    passwordSignIn,
    completeSecondFactor,
    stepUpTotp,
    unlock,
    record,
    rolesOnly,
    requireRecentFactor,
  };
};

export type AccountsService = ReturnType<typeof createAccountsService>;
