import type { Kysely } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and must not depend on today's schema types
type AnyDb = Kysely<any>;

/**
 * `oauth_records`: what the OAuth 2.1 authorization server keeps (authorization codes, access and refresh tokens,
 * grants, sessions, interactions, registered clients), one row per model and id, shared by every process.
 * Ids are bearer secrets for codes and tokens, so only their SHA-256 is stored (`id_hash`), and the payload is kept
 * without its `jti` (the id again); `uid_hash` and `user_code_hash` likewise.
 */
export const up = async (db: AnyDb): Promise<void> => {
  await db.schema
    .createTable('oauth_records')
    .addColumn('model', 'text', (c) => c.notNull())
    .addColumn('id_hash', 'text', (c) => c.notNull())
    .addColumn('payload', 'text', (c) => c.notNull())
    .addColumn('grant_id', 'text')
    .addColumn('uid_hash', 'text')
    .addColumn('user_code_hash', 'text')
    .addColumn('expires_at', 'text')
    .addColumn('consumed_at', 'text')
    .addPrimaryKeyConstraint('oauth_records_pk', ['model', 'id_hash'])
    .execute();
  await db.schema.createIndex('oauth_records_grant_idx').on('oauth_records').column('grant_id').execute();
  await db.schema.createIndex('oauth_records_uid_idx').on('oauth_records').columns(['model', 'uid_hash']).execute();
};
