import { type Kysely, PostgresAdapter, sql } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and must not depend on today's schema types
type AnyDb = Kysely<any>;

/**
 * Compact audit events a third time (six years of them are kept, 45 CFR 164.316(b)(2)(i)). As with 0040 and 0042,
 * the chained content and its canonical form (RFC 8785) do not change, so every event keeps its hash; only the
 * stored row and its indexes do:
 * - `at` is the milliseconds since the epoch (an integer: 6-8 bytes instead of 24 of text, and so is its index),
 *   with `at_text` beside it: '' when the text is exactly the ISO-8601 form of those milliseconds (what every writer
 *   stores), else `=` and the text, so each reads back exactly (src/audit/audit-columns.ts storedOfAt);
 * - the indexes on `id`, `org_id`, `actor_id` and `target_id` hold a 7-byte key of the value, not its 19 bytes:
 *   `substr(col, 13, 7)` (for a Mailward id, the random end of its UUIDv7) for the organisation, actor and target,
 *   `substr(id, 4, 7)` (the event id's UUIDv7 timestamp and the byte after it, so that index grows at its right
 *   edge) for the event id; lookups match the key and then the whole value. So the index on `id` is no longer unique: an event is integrated once because its batch and the deletion
 *   of its pending row commit together under the chain head's lock (src/audit/integrator.ts), not by this index.
 *   On SQLite every index entry ends with the rowid, which is `seq`, so a key's entries are in seq order; on
 *   PostgreSQL the single-column keys are deduplicated (an organisation's or an actor's entries share one key);
 * - `audit_events_at_idx` stays (time ranges: export `--since/--until`, the retention cutoff, the events API's
 *   `since/until`), now on the integer.
 * The table is rebuilt (create, copy, drop, rename) on both dialects, its indexes and the append-only triggers
 * (0002, with the retention purge rule of 0040) recreated. The time conversion is computed here, in batches, by the
 * same rule the writers use, so the database's date functions never decide whether a text is canonical.
 */
export const up = async (db: AnyDb): Promise<void> => {
  const isPg = db.getExecutor().adapter instanceof PostgresAdapter;
  const bytes = isPg ? 'bytea' : 'blob';
  const big = isPg ? 'bigint' : 'integer';

  // Fixed-width columns first: PostgreSQL aligns them, and after the variable ones each could cost padding.
  await db.schema
    .createTable('audit_events_new')
    .addColumn('seq', big, (c) => c.primaryKey())
    .addColumn('at', big, (c) => c.notNull())
    .addColumn('chain_id', 'integer', (c) => c.notNull())
    .addColumn('id', bytes, (c) => c.notNull())
    .addColumn('org_id', bytes)
    .addColumn('action', 'text', (c) => c.notNull())
    .addColumn('actor_type', 'text', (c) => c.notNull())
    .addColumn('actor_id', bytes)
    .addColumn('target_type', 'text')
    .addColumn('target_id', bytes)
    .addColumn('outcome', 'text', (c) => c.notNull().check(sql`outcome in ('success', 'denied', 'error')`))
    .addColumn('request_id', bytes)
    .addColumn('client_ip', 'text')
    .addColumn('content_hash', bytes)
    .addColumn('details', 'text', (c) => c.notNull())
    .addColumn('hash', bytes, (c) => c.notNull())
    .addColumn('at_text', 'text', (c) => c.notNull().defaultTo(''))
    .execute();

  // PostgreSQL: the indexes whose keys grow with time (seq, the time, the event id's timestamp) are filled at their
  // right edge only, as the log is append-only: their pages can be full (the default keeps 10% free for updates).
  const ff = isPg ? sql` with (fillfactor = 100)` : sql``;
  if (isPg) await sql`alter index audit_events_new_pkey set (fillfactor = 100)`.execute(db);

  const BATCH = 1000;
  let after: number | null = null;
  for (;;) {
    const batch: { seq: number | string; at: string }[] = (
      await (after === null
        ? sql<{ seq: number | string; at: string }>`select seq, at from audit_events order by seq limit ${BATCH}`
        : sql<{ seq: number | string; at: string }>`select seq, at from audit_events where seq > ${after} order by seq limit ${BATCH}`
      ).execute(db)
    ).rows;
    if (batch.length === 0) break;
    const values = sql.join(
      batch.map((r) => {
        const s = storedOfAt(r.at);
        return sql`(cast(${Number(r.seq)} as ${sql.raw(big)}), cast(${s.at} as ${sql.raw(big)}), ${s.at_text})`;
      }),
    );
    await sql`insert into audit_events_new
      (seq, at, chain_id, id, org_id, action, actor_type, actor_id, target_type, target_id, outcome, request_id, client_ip, content_hash, details, hash, at_text)
      select o.seq, v.column2, o.chain_id, o.id, o.org_id, o.action, o.actor_type, o.actor_id, o.target_type, o.target_id, o.outcome,
        o.request_id, o.client_ip, o.content_hash, o.details, o.hash, v.column3
      from audit_events o join (values ${values}) v on v.column1 = o.seq`.execute(db);
    after = Number(batch.at(-1)!.seq);
  }
  await db.schema.dropTable('audit_events').execute();
  await sql`alter table audit_events_new rename to audit_events`.execute(db);
  if (isPg) await sql`alter table audit_events rename constraint audit_events_new_pkey to audit_events_pkey`.execute(db);

  // The key expression is written exactly as the queries write it (src/audit/audit-columns.ts ID_KEY_SQL): both
  // planners match an expression index by the expression. Partial as in 0042: `col = ?` implies `col is not null`.
  await sql`create index audit_events_id_key_idx on audit_events (substr(id, 4, 7))${ff}`.execute(db);
  for (const [name, col] of [
    ['audit_events_org_key_idx', 'org_id'],
    ['audit_events_actor_key_idx', 'actor_id'],
    ['audit_events_target_key_idx', 'target_id'],
  ] as const) {
    await sql`create index ${sql.raw(name)} on audit_events (substr(${sql.raw(col)}, 13, 7)) where ${sql.raw(col)} is not null`.execute(db);
  }
  await sql`create index audit_events_at_idx on audit_events (at)${ff}`.execute(db);

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

/**
 * storedOfAt as this migration applies it (src/audit/audit-columns.ts; copied, since a migration is frozen in time):
 * '' beside the milliseconds when the text is exactly their ISO-8601 form, else `=` and the text (ordered by
 * Date.parse of it, or 0).
 */
const storedOfAt = (text: string): { at: number; at_text: string } => {
  const ms = Date.parse(text);
  if (Number.isFinite(ms) && new Date(ms).toISOString() === text) return { at: ms, at_text: '' };
  return { at: Number.isFinite(ms) ? ms : 0, at_text: `=${text}` };
};
