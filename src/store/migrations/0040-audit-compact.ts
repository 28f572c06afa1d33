import { type Kysely, PostgresAdapter, sql } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and must not depend on today's schema types
type AnyDb = Kysely<any>;

/**
 * Compact audit events: six years of them are kept (45 CFR 164.316(b)(2)(i)). The chained content and its
 * canonical form (RFC 8785) do not change, so every event keeps its hash; only the way a row is stored does:
 * - the delegation chain is stored once per distinct chain in `audit_chains` (append-only) and events refer to
 *   it by a small integer `chain_id` (an agent's chain is the same on all its events);
 * - `hash` and `prev_hash` are 32 raw bytes (BLOB / bytea) instead of 64 hex characters, and `content_hash`
 *   (a SHA-256 in hex from every caller) 0x01 + its 32 bytes, or 0x00 + the UTF-8 of any other text;
 * - on SQLite `seq` becomes the rowid (INTEGER PRIMARY KEY), which drops the separate primary-key index.
 * The table is rebuilt (create, copy, drop, rename) on both dialects, its indexes and append-only triggers
 * recreated as 0001/0002 made them. A stored hash that is not 64 lowercase hex characters (a tampered row) is
 * kept as its UTF-8 bytes (never 32 bytes long, so it reads back as a value that never verifies, each one distinct).
 */
export const up = async (db: AnyDb): Promise<void> => {
  const isPg = db.getExecutor().adapter instanceof PostgresAdapter;

  await db.schema
    .createTable('audit_chains')
    .addColumn('id', 'integer', (c) => c.primaryKey())
    .addColumn('chain', 'text', (c) => c.notNull().unique())
    .execute();
  await sql`insert into audit_chains (id, chain)
    select row_number() over (order by min(seq)), delegation_chain from audit_events group by delegation_chain`.execute(db);

  await db.schema
    .createTable('audit_events_new')
    .addColumn('seq', isPg ? 'bigint' : 'integer', (c) => c.primaryKey())
    .addColumn('id', 'text', (c) => c.notNull().unique())
    .addColumn('at', 'text', (c) => c.notNull())
    .addColumn('org_id', 'text')
    .addColumn('action', 'text', (c) => c.notNull())
    .addColumn('actor_type', 'text', (c) => c.notNull())
    .addColumn('actor_id', 'text')
    .addColumn('chain_id', 'integer', (c) => c.notNull())
    .addColumn('target_type', 'text')
    .addColumn('target_id', 'text')
    .addColumn('outcome', 'text', (c) => c.notNull().check(sql`outcome in ('success', 'denied', 'error')`))
    .addColumn('request_id', 'text')
    .addColumn('client_ip', 'text')
    .addColumn('content_hash', isPg ? 'bytea' : 'blob')
    .addColumn('details', 'text', (c) => c.notNull())
    .addColumn('prev_hash', isPg ? 'bytea' : 'blob', (c) => c.notNull())
    .addColumn('hash', isPg ? 'bytea' : 'blob', (c) => c.notNull())
    .execute();
  const bin = (col: string) =>
    isPg
      ? sql`case when ${sql.ref(col)} ~ '^[0-9a-f]{64}$' then decode(${sql.ref(col)}, 'hex') else convert_to(${sql.ref(col)}, 'UTF8') end`
      : sql`case when length(${sql.ref(col)}) = 64 and ${sql.ref(col)} = lower(${sql.ref(col)}) and unhex(${sql.ref(col)}) is not null then unhex(${sql.ref(col)}) else cast(${sql.ref(col)} as blob) end`;
  // content_hash: 0x01 + the 32 bytes of a lowercase hex SHA-256, else 0x00 + the text's UTF-8 (src/audit/audit-columns.ts).
  const tagged = (col: string) =>
    isPg
      ? sql`case when ${sql.ref(col)} is null then null when ${sql.ref(col)} ~ '^[0-9a-f]{64}$' then '\\x01'::bytea || decode(${sql.ref(col)}, 'hex') else '\\x00'::bytea || convert_to(${sql.ref(col)}, 'UTF8') end`
      : sql`case when ${sql.ref(col)} is null then null when length(${sql.ref(col)}) = 64 and ${sql.ref(col)} = lower(${sql.ref(col)}) and unhex(${sql.ref(col)}) is not null then unhex('01' || ${sql.ref(col)}) else unhex('00' || hex(${sql.ref(col)})) end`;
  await sql`insert into audit_events_new
    (seq, id, at, org_id, action, actor_type, actor_id, chain_id, target_type, target_id, outcome, request_id, client_ip, content_hash, details, prev_hash, hash)
    select e.seq, e.id, e.at, e.org_id, e.action, e.actor_type, e.actor_id, c.id, e.target_type, e.target_id, e.outcome, e.request_id,
      e.client_ip, ${tagged('content_hash')}, e.details, ${bin('prev_hash')}, ${bin('hash')}
    from audit_events e join audit_chains c on c.chain = e.delegation_chain order by e.seq`.execute(db);
  await db.schema.dropTable('audit_events').execute();
  await sql`alter table audit_events_new rename to audit_events`.execute(db);
  if (isPg) {
    await sql`alter table audit_events rename constraint audit_events_new_pkey to audit_events_pkey`.execute(db);
    await sql`alter table audit_events rename constraint audit_events_new_id_key to audit_events_id_key`.execute(db);
  }
  await db.schema.createIndex('audit_events_org_seq_idx').on('audit_events').columns(['org_id', 'seq']).execute();
  await db.schema.createIndex('audit_events_actor_idx').on('audit_events').columns(['actor_id', 'seq']).execute();
  await db.schema.createIndex('audit_events_target_idx').on('audit_events').columns(['target_id', 'seq']).execute();
  await db.schema.createIndex('audit_events_at_idx').on('audit_events').columns(['at']).execute();

  // The append-only triggers of 0002 (dropped with the old table), and the same for the chains.
  if (isPg) {
    for (const t of ['audit_events', 'audit_chains']) {
      await sql`create trigger ${sql.raw(`${t}_append_only`)} before update or delete on ${sql.table(t)} for each row execute function mailward_audit_append_only()`.execute(
        db,
      );
      await sql`create trigger ${sql.raw(`${t}_no_truncate`)} before truncate on ${sql.table(t)} for each statement execute function mailward_audit_append_only()`.execute(
        db,
      );
    }
  } else {
    for (const t of ['audit_events', 'audit_chains']) {
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
