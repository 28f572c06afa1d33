import type { Kysely } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and must not depend on today's schema types
type AnyDb = Kysely<any>;

/**
 * Humans sign in (45 CFR 164.312(d) person authentication; 164.312(a)(2)(iii) automatic logoff):
 * - `human_credentials`: one row per human: argon2id password hash, the sealed TOTP seed and the
 *   last time step used (codes are used once per window), an optional OpenID `sub`, the lockout;
 * - `human_invitations`: one-time links, stored as the token's hash only;
 * - `human_sessions`: server-side sessions (a sign-out takes effect in every process); only the
 *   hash of the cookie's random id is stored;
 * - `webauthn_credentials`, `recovery_codes` (hashed), `auth_challenges` (WebAuthn challenges and
 *   OpenID state/nonce/PKCE verifier, each consumed once), `signin_throttles` (failure counters per
 *   account and per client address, shared by every process), `sso_configs` (the client secret sealed).
 */
export const up = async (db: AnyDb): Promise<void> => {
  // A human's key for scripts can be limited to reads (GET/HEAD); reviewers sign decisions through sessions.
  await db.schema
    .alterTable('api_keys')
    .addColumn('read_only', 'integer', (c) => c.notNull().defaultTo(0))
    .execute();
  await db.schema
    .createTable('human_credentials')
    .addColumn('human_id', 'text', (c) => c.primaryKey().references('humans.id'))
    .addColumn('org_id', 'text', (c) => c.notNull())
    .addColumn('password_hash', 'text')
    .addColumn('totp_sealed', 'text')
    .addColumn('totp_confirmed_at', 'text')
    .addColumn('totp_last_step', 'integer')
    .addColumn('sso_subject', 'text')
    .addColumn('locked_at', 'text')
    .addColumn('updated_at', 'text', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('human_credentials_sso_uq').on('human_credentials').columns(['org_id', 'sso_subject']).unique().execute();

  await db.schema
    .createTable('human_invitations')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('org_id', 'text', (c) => c.notNull())
    .addColumn('human_id', 'text', (c) => c.notNull().references('humans.id'))
    .addColumn('token_hash', 'text', (c) => c.notNull().unique())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('created_by', 'text')
    .addColumn('expires_at', 'text', (c) => c.notNull())
    .addColumn('used_at', 'text')
    .execute();

  await db.schema
    .createTable('human_sessions')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('token_hash', 'text', (c) => c.notNull().unique())
    .addColumn('org_id', 'text', (c) => c.notNull())
    .addColumn('human_id', 'text', (c) => c.notNull().references('humans.id'))
    .addColumn('stage', 'text', (c) => c.notNull())
    .addColumn('csrf_token', 'text', (c) => c.notNull())
    .addColumn('auth_method', 'text')
    .addColumn('roles', 'text')
    .addColumn('second_factor_at', 'text')
    .addColumn('second_factor_method', 'text')
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('last_seen_at', 'text', (c) => c.notNull())
    .addColumn('expires_at', 'text', (c) => c.notNull())
    .addColumn('ended_at', 'text')
    .addColumn('end_reason', 'text')
    .addColumn('client_ip', 'text')
    .addColumn('user_agent', 'text')
    .execute();
  await db.schema.createIndex('human_sessions_human_idx').on('human_sessions').columns(['human_id', 'ended_at']).execute();

  await db.schema
    .createTable('webauthn_credentials')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('org_id', 'text', (c) => c.notNull())
    .addColumn('human_id', 'text', (c) => c.notNull().references('humans.id'))
    .addColumn('public_key', 'text', (c) => c.notNull())
    .addColumn('counter', 'integer', (c) => c.notNull())
    .addColumn('transports', 'text', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('last_used_at', 'text')
    .execute();

  await db.schema
    .createTable('recovery_codes')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('human_id', 'text', (c) => c.notNull().references('humans.id'))
    .addColumn('code_hash', 'text', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('used_at', 'text')
    .execute();

  await db.schema
    .createTable('auth_challenges')
    .addColumn('key_hash', 'text', (c) => c.primaryKey())
    .addColumn('kind', 'text', (c) => c.notNull())
    .addColumn('org_id', 'text')
    .addColumn('human_id', 'text')
    .addColumn('payload', 'text', (c) => c.notNull())
    .addColumn('expires_at', 'text', (c) => c.notNull())
    .addColumn('used_at', 'text')
    .execute();
  await db.schema.createIndex('auth_challenges_expires_idx').on('auth_challenges').column('expires_at').execute();

  await db.schema
    .createTable('signin_throttles')
    .addColumn('subject', 'text', (c) => c.primaryKey())
    .addColumn('failures', 'integer', (c) => c.notNull())
    .addColumn('window_started_at', 'text', (c) => c.notNull())
    .addColumn('last_failure_at', 'text', (c) => c.notNull())
    .execute();

  await db.schema
    .createTable('sso_configs')
    .addColumn('org_id', 'text', (c) => c.primaryKey().references('organizations.id'))
    .addColumn('issuer', 'text', (c) => c.notNull())
    .addColumn('client_id', 'text', (c) => c.notNull())
    .addColumn('client_secret_sealed', 'text', (c) => c.notNull())
    .addColumn('role_claim', 'text')
    .addColumn('role_map', 'text')
    .addColumn('updated_at', 'text', (c) => c.notNull())
    .execute();
};
