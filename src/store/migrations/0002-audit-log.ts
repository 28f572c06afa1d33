import { type Kysely, PostgresAdapter, sql } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and must not depend on today's schema types
type AnyDb = Kysely<any>;

/** Tables whose rows are never updated or deleted (the one exception: a recorded retention purge). */
const APPEND_ONLY = ['audit_events', 'audit_checkpoints', 'audit_purges', 'audit_tree_nodes'];

/**
 * Tamper-evident audit log (45 CFR 164.312(b), (c); 21 CFR 11.10(e)):
 * - stored Merkle subtree hashes so proofs at a million events stay O(log n) reads,
 * - signed checkpoints, retention purges and legal holds,
 * - triggers on both dialects that refuse UPDATE and DELETE on the audit
 *   tables; the only DELETE they let through is of events at or below the
 *   boundary of a recorded purge (src/audit/retention.ts writes that record
 *   and deletes in one transaction).
 */
export const up = async (db: AnyDb): Promise<void> => {
  const isPg = db.getExecutor().adapter instanceof PostgresAdapter;

  await db.schema.createIndex('audit_events_at_idx').on('audit_events').columns(['at']).execute();

  // Complete subtrees of 2^level leaves (level >= 4), index = first leaf / 2^level.
  await db.schema
    .createTable('audit_tree_nodes')
    .addColumn('level', 'integer', (c) => c.notNull())
    .addColumn('idx', 'bigint', (c) => c.notNull())
    .addColumn('hash', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('audit_tree_nodes_pk', ['level', 'idx'])
    .execute();

  // How many leaves the stored subtrees cover; locked by the indexer.
  await db.schema
    .createTable('audit_tree_state')
    .addColumn('id', 'integer', (c) => c.primaryKey())
    .addColumn('size', 'bigint', (c) => c.notNull())
    .execute();
  await db.insertInto('audit_tree_state').values({ id: 1, size: 0 }).execute();

  await db.schema
    .createTable('audit_checkpoints')
    .addColumn('tree_size', 'bigint', (c) => c.primaryKey())
    .addColumn('root_hash', 'text', (c) => c.notNull())
    .addColumn('at', 'text', (c) => c.notNull())
    .addColumn('origin', 'text', (c) => c.notNull())
    .addColumn('key_id', 'text', (c) => c.notNull())
    .addColumn('signature', 'text', (c) => c.notNull())
    .addColumn('note', 'text', (c) => c.notNull())
    .execute();

  await db.schema
    .createTable('audit_purges')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('through_seq', 'bigint', (c) => c.notNull())
    .addColumn('at', 'text', (c) => c.notNull())
    .addColumn('cutoff', 'text', (c) => c.notNull())
    .addColumn('boundary', 'text', (c) => c.notNull())
    .execute();

  await db.schema
    .createTable('audit_legal_holds')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('org_id', 'text', (c) => c.notNull())
    .addColumn('matter', 'text', (c) => c.notNull())
    .addColumn('created_by', 'text', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('released_by', 'text')
    .addColumn('released_at', 'text')
    .execute();
  await db.schema.createIndex('audit_legal_holds_org_idx').on('audit_legal_holds').columns(['org_id', 'released_at']).execute();

  if (isPg) {
    await sql`
      create function mailward_audit_append_only() returns trigger language plpgsql as $$
      begin
        if tg_op = 'DELETE' and tg_table_name = 'audit_events' then
          if old.seq <= coalesce((select max(through_seq) from audit_purges), 0) then
            return old;
          end if;
        end if;
        raise exception 'mailward: % is append-only (%)', tg_table_name, tg_op using errcode = 'P0001';
      end $$`.execute(db);
    for (const t of APPEND_ONLY) {
      await sql`create trigger ${sql.raw(`${t}_append_only`)} before update or delete on ${sql.table(t)} for each row execute function mailward_audit_append_only()`.execute(
        db,
      );
      await sql`create trigger ${sql.raw(`${t}_no_truncate`)} before truncate on ${sql.table(t)} for each statement execute function mailward_audit_append_only()`.execute(
        db,
      );
    }
  } else {
    for (const t of APPEND_ONLY) {
      await sql`create trigger ${sql.raw(`${t}_no_update`)} before update on ${sql.table(t)} begin select raise(abort, ${sql.lit(`mailward: ${t} is append-only (UPDATE)`)}); end`.execute(
        db,
      );
      const when = t === 'audit_events' ? sql`when old.seq > coalesce((select max(through_seq) from audit_purges), 0)` : sql``;
      await sql`create trigger ${sql.raw(`${t}_no_delete`)} before delete on ${sql.table(t)} ${when} begin select raise(abort, ${sql.lit(`mailward: ${t} is append-only (DELETE)`)}); end`.execute(
        db,
      );
    }
  }
};
