import type { Kysely } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and must not depend on today's schema types
type AnyDb = Kysely<any>;

/**
 * Patient consent to electronic communication, per organisation and contact.
 * The address itself is not stored: rows are keyed by a SHA-256 hash of the
 * normalised address (the caller always knows the address it asks about), so
 * this table does not become a list of patients' addresses.
 */
export const up = async (db: AnyDb): Promise<void> => {
  await db.schema
    .createTable('contact_consents')
    .addColumn('org_id', 'text', (c) => c.notNull().references('organizations.id'))
    .addColumn('address_hash', 'text', (c) => c.notNull())
    .addColumn('electronic', 'integer', (c) => c.notNull())
    .addColumn('categories', 'text', (c) => c.notNull())
    .addColumn('source', 'text', (c) => c.notNull())
    .addColumn('recorded_at', 'text', (c) => c.notNull())
    .addColumn('recorded_by_type', 'text', (c) => c.notNull())
    .addColumn('recorded_by_id', 'text', (c) => c.notNull())
    .addColumn('version', 'integer', (c) => c.notNull())
    .addColumn('updated_at', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('contact_consents_pk', ['org_id', 'address_hash'])
    .execute();
};
