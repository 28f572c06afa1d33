import { type Kysely, PostgresAdapter, sql } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and must not depend on today's schema types
type AnyDb = Kysely<any>;

/**
 * Compact audit events a fourth time (six years of them are kept, 45 CFR 164.316(b)(2)(i)). As with 0040, 0042 and
 * 0046, the chained content and its canonical form (RFC 8785) do not change, so every event keeps its hash; only the
 * stored row does:
 * - `(action, actor_type, target_type, outcome, at_text)` is stored once per distinct combination in `audit_kinds`
 *   (append-only, like `audit_chains`), and the event refers to it by a small integer `kind_id` (smallint on
 *   PostgreSQL: at most 32,767 kinds; the writers' actions are the code's, and `at_text` is '' for every time the
 *   writers store, so a log holds a few hundred). `at_text` moves with them because it is '' on nearly every row
 *   and its 1 byte is what kept a PostgreSQL page at 27 rows of the benchmark's event instead of 28;
 * - the stored rows are in `audit_event_rows`, with the fixed-width columns first (8, 8, 4, 2 bytes: PostgreSQL
 *   aligns them, and the short varlenas after them need no padding);
 * - `audit_events` becomes a read-only view with the columns it had (the kind's columns joined back), so every
 *   reader reads as before. The join is a LEFT join on the kind's key: an event whose kind row is missing reads
 *   with a null action and fails its hash, and a reader that uses none of the kind's columns does not join at all
 *   (both planners drop a LEFT join to a unique key whose columns are unused).
 * Writes go to `audit_event_rows` (the integrator; the retention purge deletes from it). Its indexes keep 0046's
 * names, expressions and fillfactor, and the append-only triggers keep their names (0002, with the retention purge
 * rule of 0040; PostgreSQL's trigger function now applies that rule to `audit_event_rows`).
 */
export const up = async (db: AnyDb): Promise<void> => {
  const isPg = db.getExecutor().adapter instanceof PostgresAdapter;
  const bytes = isPg ? 'bytea' : 'blob';
  const big = isPg ? 'bigint' : 'integer';
  const small = isPg ? 'smallint' : 'integer';

  await db.schema
    .createTable('audit_kinds')
    .addColumn('id', small, (c) => c.primaryKey())
    .addColumn('action', 'text', (c) => c.notNull())
    .addColumn('actor_type', 'text', (c) => c.notNull())
    .addColumn('target_type', 'text')
    .addColumn('outcome', 'text', (c) => c.notNull().check(sql`outcome in ('success', 'denied', 'error')`))
    .addColumn('at_text', 'text', (c) => c.notNull().defaultTo(''))
    .execute();
  await sql`insert into audit_kinds (id, action, actor_type, target_type, outcome, at_text)
    select row_number() over (order by min(seq)), action, actor_type, target_type, outcome, at_text
    from audit_events group by action, actor_type, target_type, outcome, at_text`.execute(db);

  // Fixed-width columns first: PostgreSQL aligns them, and after the variable ones each could cost padding.
  await db.schema
    .createTable('audit_event_rows')
    .addColumn('seq', big, (c) => c.primaryKey())
    .addColumn('at', big, (c) => c.notNull())
    .addColumn('chain_id', 'integer', (c) => c.notNull())
    .addColumn('kind_id', small, (c) => c.notNull())
    .addColumn('id', bytes, (c) => c.notNull())
    .addColumn('org_id', bytes)
    .addColumn('actor_id', bytes)
    .addColumn('target_id', bytes)
    .addColumn('request_id', bytes)
    .addColumn('client_ip', 'text')
    .addColumn('content_hash', bytes)
    .addColumn('details', 'text', (c) => c.notNull())
    .addColumn('hash', bytes, (c) => c.notNull())
    .execute();
  // PostgreSQL: as in 0046, the indexes whose keys grow with time are filled at their right edge only (append-only).
  const ff = isPg ? sql` with (fillfactor = 100)` : sql``;
  if (isPg) await sql`alter index audit_event_rows_pkey set (fillfactor = 100)`.execute(db);

  // Null-safe equality for the kind's one nullable column.
  const same = isPg ? sql`k.target_type is not distinct from e.target_type` : sql`k.target_type is e.target_type`;
  await sql`insert into audit_event_rows
    (seq, at, chain_id, kind_id, id, org_id, actor_id, target_id, request_id, client_ip, content_hash, details, hash)
    select e.seq, e.at, e.chain_id, k.id, e.id, e.org_id, e.actor_id, e.target_id, e.request_id, e.client_ip, e.content_hash, e.details, e.hash
    from audit_events e join audit_kinds k
      on k.action = e.action and k.actor_type = e.actor_type and ${same} and k.outcome = e.outcome and k.at_text = e.at_text
    order by e.seq`.execute(db);
  await db.schema.dropTable('audit_events').execute();

  await sql`create view audit_events as
    select e.seq, e.at, e.chain_id, e.id, e.org_id, k.action, k.actor_type, e.actor_id, k.target_type, e.target_id, k.outcome,
      e.request_id, e.client_ip, e.content_hash, e.details, e.hash, k.at_text, e.kind_id
    from audit_event_rows e left join audit_kinds k on k.id = e.kind_id`.execute(db);

  // 0046's indexes, by the same names and expressions (src/audit/audit-columns.ts idKeySql; both planners match an
  // expression index by its expression, through the view too).
  await sql`create index audit_events_id_key_idx on audit_event_rows (substr(id, 4, 7))${ff}`.execute(db);
  for (const [name, col] of [
    ['audit_events_org_key_idx', 'org_id'],
    ['audit_events_actor_key_idx', 'actor_id'],
    ['audit_events_target_key_idx', 'target_id'],
  ] as const) {
    await sql`create index ${sql.raw(name)} on audit_event_rows (substr(${sql.raw(col)}, 13, 7)) where ${sql.raw(col)} is not null`.execute(
      db,
    );
  }
  await sql`create index audit_events_at_idx on audit_event_rows (at)${ff}`.execute(db);

  // The append-only triggers (dropped with the old table) on the stored rows, and on the kinds as on the chains (0040).
  if (isPg) {
    await sql`create or replace function mailward_audit_append_only() returns trigger language plpgsql as $$
      begin
        if tg_op = 'DELETE' and tg_table_name = 'audit_event_rows' then
          if old.seq <= coalesce((select max(through_seq) from audit_purges), 0) then
            return old;
          end if;
        end if;
        raise exception 'mailward: % is append-only (%)', tg_table_name, tg_op using errcode = 'P0001';
      end $$`.execute(db);
    for (const [name, table] of [
      ['audit_events', 'audit_event_rows'],
      ['audit_kinds', 'audit_kinds'],
    ] as const) {
      await sql`create trigger ${sql.raw(`${name}_append_only`)} before update or delete on ${sql.table(table)} for each row execute function mailward_audit_append_only()`.execute(
        db,
      );
      await sql`create trigger ${sql.raw(`${name}_no_truncate`)} before truncate on ${sql.table(table)} for each statement execute function mailward_audit_append_only()`.execute(
        db,
      );
    }
  } else {
    for (const [name, table] of [
      ['audit_events', 'audit_event_rows'],
      ['audit_kinds', 'audit_kinds'],
    ] as const) {
      await sql`create trigger ${sql.raw(`${name}_no_update`)} before update on ${sql.table(table)} begin select raise(abort, ${sql.lit(`mailward: ${table} is append-only (UPDATE)`)}); end`.execute(
        db,
      );
      const when = table === 'audit_event_rows' ? sql`when old.seq > coalesce((select max(through_seq) from audit_purges), 0)` : sql``;
      await sql`create trigger ${sql.raw(`${name}_no_delete`)} before delete on ${sql.table(table)} ${when} begin select raise(abort, ${sql.lit(`mailward: ${table} is append-only (DELETE)`)}); end`.execute(
        db,
      );
    }
  }
};
