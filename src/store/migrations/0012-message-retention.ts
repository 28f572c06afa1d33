import type { Kysely } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and must not depend on today's schema types
type AnyDb = Kysely<any>;

/**
 * Message retention (45 CFR 164.316(b)(2)(i): six years):
 * - `organizations.message_retention_days`: how long after a message's last status change its sealed content is
 *   kept (at least 2190 days); past it, `mailward mail purge` (and `serve`, daily) destroys the content and keeps
 *   the row's metadata and hashes.
 * - `messages.content_purged_at`: when that happened (null while the content is kept).
 * - `mail_legal_holds`: holds that stop the purge for a mailbox, a thread or a contact address (stored as the
 *   contact hash of src/phi/consent-service.ts, never the address).
 */
export const up = async (db: AnyDb): Promise<void> => {
  await db.schema
    .alterTable('organizations')
    .addColumn('message_retention_days', 'integer', (c) => c.notNull().defaultTo(2190))
    .execute();
  await db.schema.alterTable('messages').addColumn('content_purged_at', 'text').execute();
  await db.schema
    .createTable('mail_legal_holds')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('org_id', 'text', (c) => c.notNull())
    .addColumn('scope', 'text', (c) => c.notNull())
    .addColumn('scope_value', 'text', (c) => c.notNull())
    .addColumn('matter', 'text', (c) => c.notNull())
    .addColumn('created_by', 'text', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('released_by', 'text')
    .addColumn('released_at', 'text')
    .execute();
  await db.schema.createIndex('mail_legal_holds_org_idx').on('mail_legal_holds').columns(['org_id', 'released_at']).execute();
  await db.schema.createIndex('messages_retention_idx').on('messages').columns(['org_id', 'content_purged_at', 'updated_at']).execute();
};
