import type { Kysely } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and must not depend on today's schema types
type AnyDb = Kysely<any>;

/**
 * The consent category of an outbound message (CONTRACT.md: optional
 * `category` on send, reply and approve), kept so the consent check at
 * approval uses the category the message was sent with. Null: sent without
 * one (and every row written before this migration).
 */
export const up = async (db: AnyDb): Promise<void> => {
  await db.schema.alterTable('messages').addColumn('category', 'text').execute();
};
