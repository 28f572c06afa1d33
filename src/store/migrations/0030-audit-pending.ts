import { type Kysely, PostgresAdapter } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and must not depend on today's schema types
type AnyDb = Kysely<any>;

/**
 * `audit_pending`: audit events committed with their change but not yet sequenced (src/audit/integrator.ts).
 * Writers insert here and take no shared lock; the integrator moves rows into `audit_events` in batches,
 * assigning seq, prev_hash and hash. `pid` only orders the pending rows (a bigserial on PostgreSQL, the
 * rowid on SQLite); the same columns as an event, without seq and hashes.
 */
export const up = async (db: AnyDb): Promise<void> => {
  const isPg = db.getExecutor().adapter instanceof PostgresAdapter;
  await db.schema
    .createTable('audit_pending')
    .addColumn('pid', isPg ? 'bigserial' : 'integer', (c) => c.primaryKey())
    .addColumn('id', 'text', (c) => c.notNull())
    .addColumn('at', 'text', (c) => c.notNull())
    .addColumn('org_id', 'text')
    .addColumn('action', 'text', (c) => c.notNull())
    .addColumn('actor_type', 'text', (c) => c.notNull())
    .addColumn('actor_id', 'text')
    .addColumn('delegation_chain', 'text', (c) => c.notNull())
    .addColumn('target_type', 'text')
    .addColumn('target_id', 'text')
    .addColumn('outcome', 'text', (c) => c.notNull())
    .addColumn('request_id', 'text')
    .addColumn('client_ip', 'text')
    .addColumn('content_hash', 'text')
    .addColumn('details', 'text', (c) => c.notNull())
    .execute();
};
