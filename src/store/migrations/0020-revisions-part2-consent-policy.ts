import type { Kysely } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and must not depend on today's schema types
type AnyDb = Kysely<any>;

/**
 * Clinical workflows:
 * - `messages.revision_of`: the rejected message a revision replaces; `approvals.revision_of`: the earlier
 *   approval (so a reviewer sees the rejection and its comment).
 * - `organizations.consent_category_mismatch`: what a send whose category a recipient's consent does not cover
 *   gets: `hold` (for a reviewer, the default) or `refuse` (422 no_consent).
 * - `part2_consents`: 42 CFR 2.31 consents to disclose Part 2 records to a named recipient (an address, stored as
 *   its contact hash) or a recipient organisation (a domain), for a purpose, until an expiry, revocable.
 */
export const up = async (db: AnyDb): Promise<void> => {
  await db.schema.alterTable('messages').addColumn('revision_of', 'text').execute();
  // One revision per rejected message (NULLs are distinct in both dialects' unique indexes).
  await db.schema.createIndex('messages_revision_of_idx').unique().on('messages').column('revision_of').execute();
  await db.schema.alterTable('approvals').addColumn('revision_of', 'text').execute();
  await db.schema
    .alterTable('organizations')
    .addColumn('consent_category_mismatch', 'text', (c) => c.notNull().defaultTo('hold'))
    .execute();
  await db.schema
    .createTable('part2_consents')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('org_id', 'text', (c) => c.notNull())
    .addColumn('recipient_kind', 'text', (c) => c.notNull())
    .addColumn('recipient_value', 'text', (c) => c.notNull())
    .addColumn('purpose', 'text', (c) => c.notNull())
    .addColumn('source', 'text', (c) => c.notNull())
    .addColumn('granted_by', 'text', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('expires_at', 'text')
    .addColumn('revoked_at', 'text')
    .addColumn('revoked_by', 'text')
    .execute();
  await db.schema
    .createIndex('part2_consents_lookup_idx')
    .on('part2_consents')
    .columns(['org_id', 'recipient_kind', 'recipient_value'])
    .execute();
};
