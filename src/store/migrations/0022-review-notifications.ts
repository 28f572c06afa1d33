import type { Kysely } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and must not depend on today's schema types
type AnyDb = Kysely<any>;

/**
 * Reviewer notifications: each reviewer's preference (on or off, minutes between digests) with the
 * time of the last digest sent, and the approvals already escalated as close to expiry (one
 * escalation each). Counts and ids only: no PHI.
 */
export const up = async (db: AnyDb): Promise<void> => {
  await db.schema
    .createTable('reviewer_notification_prefs')
    .addColumn('human_id', 'text', (c) => c.primaryKey().references('humans.id'))
    .addColumn('org_id', 'text', (c) => c.notNull().references('organizations.id'))
    .addColumn('enabled', 'integer', (c) => c.notNull())
    .addColumn('batch_minutes', 'integer', (c) => c.notNull())
    .addColumn('last_digest_at', 'text')
    .addColumn('updated_at', 'text', (c) => c.notNull())
    .execute();
  await db.schema
    .createTable('approval_escalations')
    .addColumn('approval_id', 'text', (c) => c.primaryKey().references('approvals.id'))
    .addColumn('org_id', 'text', (c) => c.notNull())
    .addColumn('escalated_at', 'text', (c) => c.notNull())
    .execute();
  // The queue's "expiring soonest" order and the escalation sweep read pending approvals by expiry per organisation.
  await db.schema
    .createIndex('approvals_org_status_expiry_idx')
    .on('approvals')
    .columns(['org_id', 'status', 'expires_at', 'id'])
    .execute();
};
