import type { Kysely } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and must not depend on today's schema types
type AnyDb = Kysely<any>;

/**
 * PHI holds: a per-mailbox PHI policy (JSON, null = the default
 * policy) and, per message, the PHI findings of its content (JSON: type,
 * field, offsets, confidence; never the matched text, 45 CFR 164.502(b)) with
 * the message's sensitivity level. Nullable: rows written before this
 * migration were never scanned.
 */
export const up = async (db: AnyDb): Promise<void> => {
  // SQLite adds one column per ALTER TABLE.
  await db.schema.alterTable('mailboxes').addColumn('phi_policy', 'text').execute();
  await db.schema.alterTable('messages').addColumn('phi_findings', 'text').execute();
  await db.schema.alterTable('messages').addColumn('phi_sensitivity', 'text').execute();
};
