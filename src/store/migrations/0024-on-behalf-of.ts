import type { Kysely } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and must not depend on today's schema types
type AnyDb = Kysely<any>;

/**
 * Acting on behalf of a clinician:
 * - `humans.npi`, `organizations.npi`: National Provider Identifiers (type 1 for people, type 2 for the organisation).
 * - `grants`: a clinician's authority for an agent to send for them in some categories until an expiry; revocable.
 * - `messages.on_behalf_of`: `{id, name, npi, category, grant_id}` (JSON) of a message sent for a clinician.
 */
export const up = async (db: AnyDb): Promise<void> => {
  await db.schema.alterTable('humans').addColumn('npi', 'text').execute();
  await db.schema.alterTable('organizations').addColumn('npi', 'text').execute();
  await db.schema.alterTable('messages').addColumn('on_behalf_of', 'text').execute();
  await db.schema
    .createTable('grants')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('org_id', 'text', (c) => c.notNull())
    .addColumn('agent_id', 'text', (c) => c.notNull())
    .addColumn('clinician_id', 'text', (c) => c.notNull())
    .addColumn('categories', 'text', (c) => c.notNull())
    .addColumn('created_by', 'text', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('expires_at', 'text', (c) => c.notNull())
    .addColumn('revoked_at', 'text')
    .addColumn('revoked_by', 'text')
    .execute();
  await db.schema.createIndex('grants_lookup_idx').on('grants').columns(['org_id', 'agent_id', 'clinician_id']).execute();
};
