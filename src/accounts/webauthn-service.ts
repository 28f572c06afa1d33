import {
  type AuthenticationResponseJSON,
  generateAuthenticationOptions,
  generateRegistrationOptions,
  type RegistrationResponseJSON,
  verifyAuthenticationResponse,
  verifyRegistrationResponse,
} from '@simplewebauthn/server';
import type { IdentityRepo } from '../identity/identity-repo.js';
import type { Clock } from '../kernel/clock.js';
import { AppError } from '../kernel/errors.js';
import type { Db } from '../store/db.js';
import type { AccountsRepo } from './accounts-repo.js';
import {
  type AccountsService,
  hashChallengeKey,
  type IssuedSession,
  type SessionState,
  type SignInMeta,
  signInFailed,
} from './accounts-service.js';

/** The relying party: the console's origin and its host name (WebAuthn L3 5.1.4: rp.id is the origin's effective domain). */
export type RelyingParty = { id: string; origin: string; name: string };

const CHALLENGE_TTL_MS = 5 * 60_000;

const challengeOf = (clientDataJSON: string): string | null => {
  try {
    const c = JSON.parse(Buffer.from(clientDataJSON, 'base64url').toString('utf8')) as { challenge?: unknown };
    return typeof c.challenge === 'string' && c.challenge.length <= 200 ? c.challenge : null;
  } catch {
    return null;
  }
};

const passkeyFailed = () => new AppError('passkey_failed', 401, 'The passkey could not be verified; try again.');

type Deps = { db: Db; repo: AccountsRepo; identity: IdentityRepo; accounts: AccountsService; clock: Clock };

/**
 * Passkeys (WebAuthn Level 3 through @simplewebauthn/server). A passkey with user verification is a
 * multi-factor authenticator on its own (NIST SP 800-63B 5.1.9: something you have, unlocked by
 * something you know or are), so it signs in without a password and serves as the step-up factor.
 * Each challenge is stored server-side and consumed once.
 */
export const createWebauthnService = ({ db, repo, identity, accounts, clock }: Deps) => {
  const nowIso = () => clock.now().toISOString();
  const expires = () => new Date(clock.now().getTime() + CHALLENGE_TTL_MS).toISOString();

  /** Options for adding a passkey to the signed-in (or enrolling) human. */
  const registrationOptions = async (s: SessionState, rp: RelyingParty) => {
    const existing = await repo.webauthnCredentials(db, s.human.id);
    const options = await generateRegistrationOptions({
      rpName: rp.name,
      rpID: rp.id,
      userName: s.human.email,
      userDisplayName: s.human.name,
      userID: new TextEncoder().encode(s.human.id),
      attestationType: 'none',
      excludeCredentials: existing.map((c) => ({ id: c.id, transports: JSON.parse(c.transports) as string[] })),
      authenticatorSelection: { residentKey: 'required', userVerification: 'required' },
    });
    await repo.insertChallenge(db, {
      key_hash: hashChallengeKey('webauthn_reg', options.challenge),
      kind: 'webauthn_reg',
      org_id: s.human.org_id,
      human_id: s.human.id,
      payload: JSON.stringify({ session_id: s.session.id }),
      expires_at: expires(),
    });
    return options;
  };

  /**
   * Verifies a new passkey and stores its public key. The first factor enrolled also yields recovery
   * codes and turns an `enrol` session into a full one. Throws 401 passkey_failed. Audits human.factor_enrolled.
   */
  const register = async (s: SessionState, response: RegistrationResponseJSON, rp: RelyingParty, meta: SignInMeta) => {
    const challenge = challengeOf(response.response.clientDataJSON);
    if (!challenge) throw passkeyFailed();
    return db.transaction().execute(async (tx) => {
      const ch = await repo.consumeChallenge(tx, hashChallengeKey('webauthn_reg', challenge), 'webauthn_reg', nowIso());
      if (!ch || ch.human_id !== s.human.id) throw passkeyFailed();
      const v = await verifyRegistrationResponse({
        response,
        expectedChallenge: challenge,
        expectedOrigin: rp.origin,
        expectedRPID: rp.id,
        requireUserVerification: true,
      }).catch(() => null);
      if (!v?.verified) throw passkeyFailed();
      const cred = v.registrationInfo.credential;
      await repo.insertWebauthnCredential(tx, {
        id: cred.id,
        org_id: s.human.org_id,
        human_id: s.human.id,
        public_key: Buffer.from(cred.publicKey).toString('base64url'),
        counter: cred.counter,
        transports: JSON.stringify(cred.transports ?? []),
        created_at: nowIso(),
        last_used_at: null,
      });
      await accounts.record(tx, 'human.factor_enrolled', s.human, meta, { factor: 'webauthn', credential_id: cred.id });
      return accounts.finishEnrolment(tx, s, 'webauthn', meta);
    });
  };

  /** Options for signing in (discoverable credentials: no user named) or for a step-up of `s`. */
  const authenticationOptions = async (rp: RelyingParty, s?: SessionState) => {
    const allow = s ? await repo.webauthnCredentials(db, s.human.id) : [];
    const options = await generateAuthenticationOptions({
      rpID: rp.id,
      userVerification: 'required',
      ...(s ? { allowCredentials: allow.map((c) => ({ id: c.id, transports: JSON.parse(c.transports) as string[] })) } : {}),
    });
    await repo.insertChallenge(db, {
      key_hash: hashChallengeKey('webauthn_auth', options.challenge),
      kind: 'webauthn_auth',
      org_id: s?.human.org_id ?? null,
      human_id: s?.human.id ?? null,
      payload: '{}',
      expires_at: expires(),
    });
    return options;
  };

  /**
   * Verifies a passkey assertion. Without `stepUpOf`: signs in (a new full session; human.signed_in).
   * With it: the same human's step-up (rotated session; human.step_up). Throws 401 sign_in_failed
   * (the same refusal as any failed sign-in). The signature counter must move forward.
   */
  const authenticate = async (
    response: AuthenticationResponseJSON,
    rp: RelyingParty,
    meta: SignInMeta,
    stepUpOf?: SessionState,
  ): Promise<IssuedSession> => {
    const challenge = challengeOf(response.response?.clientDataJSON ?? '');
    const fail = async (reason: string) => {
      await accounts.record(db, 'human.sign_in_failed', stepUpOf?.human ?? null, meta, { reason, method: 'webauthn' }, 'denied');
      return signInFailed();
    };
    if (!challenge) throw await fail('bad_challenge');
    const out = await db.transaction().execute(async (tx) => {
      const ch = await repo.consumeChallenge(tx, hashChallengeKey('webauthn_auth', challenge), 'webauthn_auth', nowIso());
      if (!ch) return 'bad_challenge';
      const cred = await repo.webauthnCredential(tx, response.id);
      if (!cred) return 'unknown_credential';
      if (ch.human_id && ch.human_id !== cred.human_id) return 'other_human';
      if (stepUpOf && stepUpOf.human.id !== cred.human_id) return 'other_human';
      const h = await identity.human(tx, cred.org_id, cred.human_id);
      if (h?.is_active !== 1) return 'principal_inactive';
      const v = await verifyAuthenticationResponse({
        response,
        expectedChallenge: challenge,
        expectedOrigin: rp.origin,
        expectedRPID: rp.id,
        requireUserVerification: true,
        credential: {
          id: cred.id,
          publicKey: new Uint8Array(Buffer.from(cred.public_key, 'base64url')),
          counter: cred.counter,
          transports: JSON.parse(cred.transports) as never,
        },
      }).catch(() => null);
      if (!v?.verified) return 'bad_signature';
      await repo.advanceWebauthnCounter(tx, cred.id, v.authenticationInfo.newCounter, nowIso());
      if (stepUpOf) {
        const issued = await accounts.rotate(tx, stepUpOf, 'full', 'webauthn', meta);
        await accounts.record(tx, 'human.step_up', h, meta, { method: 'webauthn', session_id: issued.state.session.id });
        return issued;
      }
      const issued = await accounts.issue(tx, h, 'full', { authMethod: 'webauthn', secondFactorMethod: 'webauthn' }, meta);
      await accounts.record(tx, 'human.signed_in', h, meta, { method: 'webauthn', session_id: issued.state.session.id });
      return issued;
    });
    if (typeof out === 'string') throw await fail(out);
    return out;
  };

  return { registrationOptions, register, authenticationOptions, authenticate };
};

export type WebauthnService = ReturnType<typeof createWebauthnService>;
