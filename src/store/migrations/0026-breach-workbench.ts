import type { Kysely } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and must not depend on today's schema types
type AnyDb = Kysely<any>;

/**
 * The breach workbench (45 CFR 164.400-414):
 * - `breach_incidents`: discovery time, description, the 60-day deadline (164.404(b)), the scope (JSON), the
 *   four-factor risk assessment (164.402(2), JSON), the state or jurisdiction for HHS, and the notice sent (JSON).
 * - `breach_individuals`: one row per affected individual: contact hash, the address sealed under the key ring
 *   (needed to notify; never plaintext at rest), PHI types, message ids, whether consent allows email, the notice.
 * - `breach_reminders`: which deadline reminders (30, 14, 7, 1 days) were sent, once each.
 */
export const up = async (db: AnyDb): Promise<void> => {
  await db.schema
    .createTable('breach_incidents')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('org_id', 'text', (c) => c.notNull())
    .addColumn('title', 'text', (c) => c.notNull())
    .addColumn('description', 'text', (c) => c.notNull())
    .addColumn('discovered_at', 'text', (c) => c.notNull())
    .addColumn('deadline_at', 'text', (c) => c.notNull())
    .addColumn('state', 'text')
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('scope', 'text')
    .addColumn('risk_assessment', 'text')
    .addColumn('notice', 'text')
    .addColumn('created_by', 'text', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'text', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('breach_incidents_org_idx').on('breach_incidents').columns(['org_id', 'discovered_at']).execute();
  await db.schema
    .createTable('breach_individuals')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('incident_id', 'text', (c) => c.notNull())
    .addColumn('contact_hash', 'text', (c) => c.notNull())
    .addColumn('address_sealed', 'text', (c) => c.notNull())
    .addColumn('phi_types', 'text', (c) => c.notNull())
    .addColumn('message_ids', 'text', (c) => c.notNull())
    .addColumn('email_allowed', 'integer', (c) => c.notNull())
    .addColumn('notice_email_id', 'text')
    .addColumn('notified_at', 'text')
    .execute();
  await db.schema.createIndex('breach_individuals_uq').on('breach_individuals').columns(['incident_id', 'contact_hash']).unique().execute();
  await db.schema
    .createTable('breach_reminders')
    .addColumn('incident_id', 'text', (c) => c.notNull())
    .addColumn('days_before', 'integer', (c) => c.notNull())
    .addColumn('sent_at', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('breach_reminders_pk', ['incident_id', 'days_before'])
    .execute();
};
