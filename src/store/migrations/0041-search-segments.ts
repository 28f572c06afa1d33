import { type Kysely, PostgresAdapter, sql } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and must not depend on today's schema types
type AnyDb = Kysely<any>;

/**
 * The blind search index, compact (src/mail/search-index.ts), replacing 0032's one row per message and entry:
 * - `search_pending`: one row per message not yet folded into a segment: its entries (5-byte MACs, sorted) in one
 *   value. A new message writes only this row, so writers of one mailbox never wait on each other.
 * - `search_segments`: up to 256 messages of one mailbox with no other segment of that mailbox between its first
 *   (`lo`) and last (`hi`) message: the messages' 16-byte refs in order (a message's position in the segment is its
 *   index there). `gen` changes with every rewrite, so a reader that read postings and refs of two versions notices.
 * - `search_postings`: per segment (its `lo`: a message id's bytes, so unique without the mailbox) and bucket (the
 *   MAC's first byte mod 64), the segment's entries of that bucket: each MAC and the positions of the messages that
 *   hold it (a list or a 256-bit bitmap).
 * The 0032 rows cannot be converted without their mailbox, so the table is dropped and every message is marked
 * unindexed: `mailward serve` indexes them again in the background (searched by decrypting until then).
 */
export const up = async (db: AnyDb): Promise<void> => {
  const isPg = db.getExecutor().adapter instanceof PostgresAdapter;
  const bin = sql.raw(isPg ? 'bytea' : 'blob');
  const rowid = sql.raw(isPg ? '' : ' without rowid');
  await sql`create table search_pending (
    mailbox_id text not null,
    message_ref ${bin} not null,
    macs ${bin} not null,
    constraint search_pending_pk primary key (mailbox_id, message_ref)
  )${rowid}`.execute(db);
  await sql`create table search_segments (
    mailbox_id text not null,
    lo ${bin} not null,
    hi ${bin} not null,
    n integer not null,
    gen integer not null,
    refs ${bin} not null,
    constraint search_segments_pk primary key (mailbox_id, lo)
  )${rowid}`.execute(db);
  await sql`create table search_postings (
    lo ${bin} not null,
    bucket integer not null,
    gen integer not null,
    entries ${bin} not null,
    constraint search_postings_pk primary key (lo, bucket)
  )${rowid}`.execute(db);
  await sql`drop table search_index`.execute(db);
  await sql`update messages set search_key_version = null where search_key_version is not null`.execute(db);
};
