import { type Kysely, PostgresAdapter, sql } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and must not depend on today's schema types
type AnyDb = Kysely<any>;

/**
 * The blind search index (src/mail/search-index.ts):
 * - `search_index`: one row per message and distinct search entry (a word of the body, or a word prefix of the
 *   sender or subject), holding the first 8 bytes of HMAC-SHA-256 of mailbox id, field and word under the
 *   organisation's content-index key (the recipient index's keys, 0025, through HKDF) whose version the message row
 *   records. The message is referenced by the 16 bytes of its UUIDv7, so rows sort newest first by message. The
 *   primary key is the only index (SQLite keeps the table WITHOUT ROWID: the key is the table); a message's rows are
 *   deleted by recomputing their MACs, so no second index by message is kept.
 * - `messages.search_key_version`: the key the message's entries were computed under; null until it is indexed
 *   (messages stored before this migration are indexed by `mailward serve` in the background, and searched by
 *   decrypting them until then; a partial index finds them).
 */
export const up = async (db: AnyDb): Promise<void> => {
  const isPg = db.getExecutor().adapter instanceof PostgresAdapter;
  const bin = isPg ? 'bytea' : 'blob';
  await sql`create table search_index (
    mac ${sql.raw(bin)} not null,
    message_ref ${sql.raw(bin)} not null,
    constraint search_index_pk primary key (mac, message_ref)
  )${sql.raw(isPg ? '' : ' without rowid')}`.execute(db);
  await db.schema.alterTable('messages').addColumn('search_key_version', 'integer').execute();
  await db.schema
    .createIndex('messages_search_pending_idx')
    .on('messages')
    .columns(['mailbox_id'])
    .where(sql.ref('search_key_version'), 'is', null)
    .execute();
};
