import { sql } from 'kysely';
import type { Executor } from '../store/db.js';
import type {
  AuthChallengesTable,
  HumanCredentialsTable,
  HumanSessionsTable,
  SsoConfigsTable,
  WebauthnCredentialsTable,
} from '../store/schema.js';

/**
 * The only writer of the sign-in tables (human_credentials, human_invitations, human_sessions,
 * webauthn_credentials, recovery_codes, auth_challenges, signin_throttles, sso_configs).
 */
export const createAccountsRepo = () => {
  const credentials = (db: Executor, humanId: string) =>
    db.selectFrom('human_credentials').selectAll().where('human_id', '=', humanId).executeTakeFirst();

  const upsertCredentials = async (
    db: Executor,
    row: Partial<HumanCredentialsTable> & { human_id: string; org_id: string; updated_at: string },
  ) => {
    const existing = await credentials(db, row.human_id);
    if (existing) {
      const { human_id, org_id, ...set } = row;
      await db.updateTable('human_credentials').set(set).where('human_id', '=', human_id).execute();
    } else {
      await db
        .insertInto('human_credentials')
        .values({
          password_hash: null,
          totp_sealed: null,
          totp_confirmed_at: null,
          totp_last_step: null,
          sso_subject: null,
          locked_at: null,
          ...row,
        })
        .execute();
    }
  };

  /** Codes are used once per window (RFC 6238 section 5.2): the step moves forward only, by compare-and-set. */
  const claimTotpStep = async (db: Executor, humanId: string, step: number): Promise<boolean> => {
    const u = await db
      .updateTable('human_credentials')
      .set({ totp_last_step: step })
      .where('human_id', '=', humanId)
      .where((eb) => eb.or([eb('totp_last_step', 'is', null), eb('totp_last_step', '<', step)]))
      .executeTakeFirst();
    return Number(u.numUpdatedRows) === 1;
  };

  const insertInvitation = (
    db: Executor,
    row: {
      id: string;
      org_id: string;
      human_id: string;
      token_hash: string;
      created_at: string;
      created_by: string | null;
      expires_at: string;
    },
  ) =>
    db
      .insertInto('human_invitations')
      .values({ ...row, used_at: null })
      .execute();

  const invitationByHash = (db: Executor, tokenHash: string) =>
    db.selectFrom('human_invitations').selectAll().where('token_hash', '=', tokenHash).executeTakeFirst();

  const useInvitation = async (db: Executor, id: string, at: string): Promise<boolean> => {
    const u = await db
      .updateTable('human_invitations')
      .set({ used_at: at })
      .where('id', '=', id)
      .where('used_at', 'is', null)
      .executeTakeFirst();
    return Number(u.numUpdatedRows) === 1;
  };

  /** An invitation replaces the human's earlier unused ones. */
  const voidInvitations = (db: Executor, humanId: string, at: string) =>
    db.updateTable('human_invitations').set({ used_at: at }).where('human_id', '=', humanId).where('used_at', 'is', null).execute();

  const insertSession = (db: Executor, row: HumanSessionsTable) => db.insertInto('human_sessions').values(row).execute();

  const sessionByHash = (db: Executor, tokenHash: string) =>
    db.selectFrom('human_sessions').selectAll().where('token_hash', '=', tokenHash).where('ended_at', 'is', null).executeTakeFirst();

  const sessionById = (db: Executor, id: string) => db.selectFrom('human_sessions').selectAll().where('id', '=', id).executeTakeFirst();

  const updateSession = (db: Executor, id: string, set: Partial<Omit<HumanSessionsTable, 'id'>>) =>
    db.updateTable('human_sessions').set(set).where('id', '=', id).where('ended_at', 'is', null).executeTakeFirst();

  const openSessions = (db: Executor, humanId: string) =>
    db.selectFrom('human_sessions').selectAll().where('human_id', '=', humanId).where('ended_at', 'is', null).orderBy('id').execute();

  /** Ends every open session of a human (sign-out everywhere, deactivation, admin). Returns the ids ended. */
  const endSessions = async (db: Executor, humanId: string, at: string, reason: string): Promise<string[]> => {
    const open = await openSessions(db, humanId);
    if (open.length === 0) return [];
    await db
      .updateTable('human_sessions')
      .set({ ended_at: at, end_reason: reason })
      .where('human_id', '=', humanId)
      .where('ended_at', 'is', null)
      .execute();
    return open.map((s) => s.id);
  };

  const endSession = async (db: Executor, id: string, at: string, reason: string): Promise<boolean> => {
    const u = await updateSession(db, id, { ended_at: at, end_reason: reason });
    return Number(u.numUpdatedRows) === 1;
  };

  const webauthnCredentials = (db: Executor, humanId: string) =>
    db.selectFrom('webauthn_credentials').selectAll().where('human_id', '=', humanId).orderBy('created_at').execute();

  const webauthnCredential = (db: Executor, id: string) =>
    db.selectFrom('webauthn_credentials').selectAll().where('id', '=', id).executeTakeFirst();

  const insertWebauthnCredential = (db: Executor, row: WebauthnCredentialsTable) =>
    db.insertInto('webauthn_credentials').values(row).execute();

  /** The signature counter only moves forward (WebAuthn L3 6.1.1: a cloned authenticator shows as a counter that did not). */
  const advanceWebauthnCounter = (db: Executor, id: string, counter: number, at: string) =>
    db.updateTable('webauthn_credentials').set({ counter, last_used_at: at }).where('id', '=', id).execute();

  const replaceRecoveryCodes = async (db: Executor, humanId: string, rows: { id: string; code_hash: string }[], at: string) => {
    await db.deleteFrom('recovery_codes').where('human_id', '=', humanId).execute();
    if (rows.length > 0)
      await db
        .insertInto('recovery_codes')
        .values(rows.map((r) => ({ ...r, human_id: humanId, created_at: at, used_at: null })))
        .execute();
  };

  const useRecoveryCode = async (db: Executor, humanId: string, codeHash: string, at: string): Promise<boolean> => {
    const u = await db
      .updateTable('recovery_codes')
      .set({ used_at: at })
      .where('human_id', '=', humanId)
      .where('code_hash', '=', codeHash)
      .where('used_at', 'is', null)
      .executeTakeFirst();
    return Number(u.numUpdatedRows) === 1;
  };

  const unusedRecoveryCodes = async (db: Executor, humanId: string): Promise<number> => {
    const r = await db
      .selectFrom('recovery_codes')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('human_id', '=', humanId)
      .where('used_at', 'is', null)
      .executeTakeFirst();
    return Number(r?.n ?? 0);
  };

  /** Inserts a challenge; every 100th insert also drops challenges expired two hours ago (anyone may ask for a sign-in challenge). */
  let inserts = 0;
  const insertChallenge = async (db: Executor, row: Omit<AuthChallengesTable, 'used_at'>) => {
    await db
      .insertInto('auth_challenges')
      .values({ ...row, used_at: null })
      .execute();
    if (++inserts % 100 === 0) {
      const before = new Date(Date.parse(row.expires_at) - 2 * 3600_000).toISOString();
      await db.deleteFrom('auth_challenges').where('expires_at', '<', before).execute();
    }
  };

  /** A challenge, state or nonce is consumed once: the first caller wins, every replay finds nothing. */
  const consumeChallenge = async (db: Executor, keyHash: string, kind: string, at: string): Promise<AuthChallengesTable | undefined> => {
    const row = await db
      .selectFrom('auth_challenges')
      .selectAll()
      .where('key_hash', '=', keyHash)
      .where('kind', '=', kind)
      .where('used_at', 'is', null)
      .where('expires_at', '>', at)
      .executeTakeFirst();
    if (!row) return undefined;
    const u = await db
      .updateTable('auth_challenges')
      .set({ used_at: at })
      .where('key_hash', '=', keyHash)
      .where('used_at', 'is', null)
      .executeTakeFirst();
    return Number(u.numUpdatedRows) === 1 ? row : undefined;
  };

  const throttles = (db: Executor, subjects: string[]) =>
    db.selectFrom('signin_throttles').selectAll().where('subject', 'in', subjects).execute();

  /** One failure more for `subject`, in a window that restarts when older than `windowStart` (one statement: safe across processes). */
  const addFailure = async (db: Executor, subject: string, at: string, windowStart: string): Promise<number> => {
    const r = await sql<{ failures: number }>`
      insert into signin_throttles (subject, failures, window_started_at, last_failure_at) values (${subject}, 1, ${at}, ${at})
      on conflict (subject) do update set
        failures = case when signin_throttles.window_started_at < ${windowStart} then 1 else signin_throttles.failures + 1 end,
        window_started_at = case when signin_throttles.window_started_at < ${windowStart} then ${at} else signin_throttles.window_started_at end,
        last_failure_at = ${at}
      returning failures`.execute(db);
    return Number(r.rows[0]?.failures ?? 1);
  };

  const clearThrottle = (db: Executor, subject: string) => db.deleteFrom('signin_throttles').where('subject', '=', subject).execute();

  const ssoConfig = (db: Executor, orgId: string) =>
    db.selectFrom('sso_configs').selectAll().where('org_id', '=', orgId).executeTakeFirst();

  const ssoOrgs = (db: Executor) =>
    db
      .selectFrom('sso_configs')
      .innerJoin('organizations', 'organizations.id', 'sso_configs.org_id')
      .select(['organizations.id', 'organizations.name'])
      .orderBy('organizations.name')
      .execute();

  const upsertSsoConfig = async (db: Executor, row: SsoConfigsTable) => {
    await db
      .insertInto('sso_configs')
      .values(row)
      .onConflict((oc) => oc.column('org_id').doUpdateSet({ ...row }))
      .execute();
  };

  const humanBySsoSubject = (db: Executor, orgId: string, sub: string) =>
    db
      .selectFrom('human_credentials')
      .innerJoin('humans', 'humans.id', 'human_credentials.human_id')
      .selectAll('humans')
      .where('human_credentials.org_id', '=', orgId)
      .where('human_credentials.sso_subject', '=', sub)
      .executeTakeFirst();

  const humansByEmail = (db: Executor, email: string, orgId?: string) => {
    let q = db.selectFrom('humans').selectAll().where('email', '=', email.toLowerCase());
    if (orgId) q = q.where('org_id', '=', orgId);
    return q.execute();
  };

  return {
    credentials,
    upsertCredentials,
    claimTotpStep,
    insertInvitation,
    invitationByHash,
    useInvitation,
    voidInvitations,
    insertSession,
    sessionByHash,
    sessionById,
    updateSession,
    openSessions,
    endSessions,
    endSession,
    webauthnCredentials,
    webauthnCredential,
    insertWebauthnCredential,
    advanceWebauthnCounter,
    replaceRecoveryCodes,
    useRecoveryCode,
    unusedRecoveryCodes,
    insertChallenge,
    consumeChallenge,
    throttles,
    addFailure,
    clearThrottle,
    ssoConfig,
    ssoOrgs,
    upsertSsoConfig,
    humanBySsoSubject,
    humansByEmail,
  };
};

export type AccountsRepo = ReturnType<typeof createAccountsRepo>;
