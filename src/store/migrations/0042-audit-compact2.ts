import { type Kysely, PostgresAdapter, sql } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and must not depend on today's schema types
type AnyDb = Kysely<any>;

/**
 * Compact audit events further (six years of them are kept, 45 CFR 164.316(b)(2)(i)). As with 0040, the chained
 * content and its canonical form (RFC 8785) do not change, so every event keeps its hash; only the stored row does:
 * - `id`, `org_id`, `actor_id`, `target_id` and `request_id` are id bytes (src/audit/audit-columns.ts storedOfId):
 *   a Mailward id (three lowercase letters, `_`, 32 lowercase hex digits) as its 3 prefix bytes + 16 bytes, any
 *   other text as 0x00 + its UTF-8, so each reads back exactly and the indexes on them hold 19 bytes, not 36;
 * - `prev_hash` is dropped: it is always the previous row's `hash` (the first after a retention purge: the purge
 *   boundary's anchor; seq 1: the genesis hash), and verification reads in seq order and chains from that hash;
 * - `audit_events_at_idx` is kept: time ranges (export `--since/--until`, retention's cutoff, the events API's
 *   `since/until`) find their first and last events through it; without it each is a scan of the whole log, which
 *   holds six years of events.
 * The table is rebuilt (create, copy, drop, rename) on both dialects, its indexes and the append-only triggers
 * (0002, with the retention purge rule of 0040) recreated.
 */
export const up = async (db: AnyDb): Promise<void> => {
  const isPg = db.getExecutor().adapter instanceof PostgresAdapter;
  const bytes = isPg ? 'bytea' : 'blob';

  await db.schema
    .createTable('audit_events_new')
    .addColumn('seq', isPg ? 'bigint' : 'integer', (c) => c.primaryKey())
    .addColumn('id', bytes, (c) => c.notNull().unique())
    .addColumn('at', 'text', (c) => c.notNull())
    .addColumn('org_id', bytes)
    .addColumn('action', 'text', (c) => c.notNull())
    .addColumn('actor_type', 'text', (c) => c.notNull())
    .addColumn('actor_id', bytes)
    .addColumn('chain_id', 'integer', (c) => c.notNull())
    .addColumn('target_type', 'text')
    .addColumn('target_id', bytes)
    .addColumn('outcome', 'text', (c) => c.notNull().check(sql`outcome in ('success', 'denied', 'error')`))
    .addColumn('request_id', bytes)
    .addColumn('client_ip', 'text')
    .addColumn('content_hash', bytes)
    .addColumn('details', 'text', (c) => c.notNull())
    .addColumn('hash', bytes, (c) => c.notNull())
    .execute();
  // storedOfId in SQL: the id form for exactly `[a-z]{3}_[0-9a-f]{32}`, else 0x00 + UTF-8.
  const id = (col: string) => {
    const c = sql.ref(col);
    return isPg
      ? sql`case when ${c} is null then null when ${c} collate "C" ~ '^[a-z]{3}_[0-9a-f]{32}$' then convert_to(substr(${c}, 1, 3), 'UTF8') || decode(substr(${c}, 5), 'hex') else '\\x00'::bytea || convert_to(${c}, 'UTF8') end`
      : sql`case when ${c} is null then null when length(${c}) = 36 and substr(${c}, 4, 1) = '_' and substr(${c}, 1, 3) not glob '*[^a-z]*' and substr(${c}, 5) not glob '*[^0-9a-f]*' then unhex(hex(substr(${c}, 1, 3)) || substr(${c}, 5)) else unhex('00' || hex(${c})) end`;
  };
  await sql`insert into audit_events_new
    (seq, id, at, org_id, action, actor_type, actor_id, chain_id, target_type, target_id, outcome, request_id, client_ip, content_hash, details, hash)
    select seq, ${id('id')}, at, ${id('org_id')}, action, actor_type, ${id('actor_id')}, chain_id, target_type, ${id('target_id')}, outcome,
      ${id('request_id')}, client_ip, content_hash, details, hash
    from audit_events order by seq`.execute(db);
  await db.schema.dropTable('audit_events').execute();
  await sql`alter table audit_events_new rename to audit_events`.execute(db);
  if (isPg) {
    await sql`alter table audit_events rename constraint audit_events_new_pkey to audit_events_pkey`.execute(db);
    await sql`alter table audit_events rename constraint audit_events_new_id_key to audit_events_id_key`.execute(db);
  }
  // Partial: an event without an organisation, actor or target is never looked up by it (`where x = ?` implies
  // `x is not null`, so both planners use them), and leaving those rows out keeps each key's entries together.
  for (const [name, col] of [
    ['audit_events_org_seq_idx', 'org_id'],
    ['audit_events_actor_idx', 'actor_id'],
    ['audit_events_target_idx', 'target_id'],
  ] as const) {
    await db.schema.createIndex(name).on('audit_events').columns([col, 'seq']).where(sql.ref(col), 'is not', null).execute();
  }
  await db.schema.createIndex('audit_events_at_idx').on('audit_events').columns(['at']).execute();

  // The append-only triggers (dropped with the old table), as 0040 made them.
  if (isPg) {
    await sql`create trigger audit_events_append_only before update or delete on audit_events for each row execute function mailward_audit_append_only()`.execute(
      db,
    );
    await sql`create trigger audit_events_no_truncate before truncate on audit_events for each statement execute function mailward_audit_append_only()`.execute(
      db,
    );
  } else {
    await sql`create trigger audit_events_no_update before update on audit_events begin select raise(abort, 'mailward: audit_events is append-only (UPDATE)'); end`.execute(
      db,
    );
    await sql`create trigger audit_events_no_delete before delete on audit_events when old.seq > coalesce((select max(through_seq) from audit_purges), 0) begin select raise(abort, 'mailward: audit_events is append-only (DELETE)'); end`.execute(
      db,
    );
  }
};
