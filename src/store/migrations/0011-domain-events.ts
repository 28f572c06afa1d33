import type { Kysely } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and must not depend on today's schema types
type AnyDb = Kysely<any>;

/**
 * The durable domain-event log (STYLE.md: events are rows, written in the same transaction as the change):
 * - `domain_events`: one row per lifecycle fact (email.submitted, email.held, approval.decided, ...), numbered
 *   per organisation without gaps (`seq`), carrying ids, types and non-PHI facts only (`data`, JSON).
 * - `event_heads`: the last `seq` given out per organisation. Taking the next number locks the organisation's
 *   row until commit, so numbers commit in order and a reader's cursor never skips an event.
 */
export const up = async (db: AnyDb): Promise<void> => {
  await db.schema
    .createTable('event_heads')
    .addColumn('org_id', 'text', (c) => c.primaryKey())
    .addColumn('seq', 'bigint', (c) => c.notNull())
    .execute();
  await db.schema
    .createTable('domain_events')
    .addColumn('org_id', 'text', (c) => c.notNull())
    .addColumn('seq', 'bigint', (c) => c.notNull())
    .addColumn('id', 'text', (c) => c.notNull().unique())
    .addColumn('type', 'text', (c) => c.notNull())
    .addColumn('occurred_at', 'text', (c) => c.notNull())
    .addColumn('mailbox_id', 'text')
    .addColumn('email_id', 'text')
    .addColumn('approval_id', 'text')
    .addColumn('data', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('domain_events_pk', ['org_id', 'seq'])
    .execute();
  await db.schema.createIndex('domain_events_mailbox_idx').on('domain_events').columns(['org_id', 'mailbox_id', 'seq']).execute();
};
