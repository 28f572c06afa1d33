import type { Kysely } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and must not depend on today's schema types
type AnyDb = Kysely<any>;

/**
 * The recipient index (accounting of disclosures, 45 CFR 164.528; breach scoping, 164.404):
 * - `recipient_index_keys`: per organisation, numbered HMAC keys, each wrapped under the key ring (JSON WrappedKey);
 *   a key whose rows were all recomputed under a newer one is retired.
 * - `recipient_index`: one row per message and address role (`from`, `to`, `cc`, `bcc`) holding HMAC-SHA-256 of the
 *   normalised address under key `key_version`: exact lookups without any address stored in plaintext.
 */
export const up = async (db: AnyDb): Promise<void> => {
  await db.schema
    .createTable('recipient_index_keys')
    .addColumn('org_id', 'text', (c) => c.notNull())
    .addColumn('version', 'integer', (c) => c.notNull())
    .addColumn('key_wrapped', 'text', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('retired_at', 'text')
    .addPrimaryKeyConstraint('recipient_index_keys_pk', ['org_id', 'version'])
    .execute();
  await db.schema
    .createTable('recipient_index')
    .addColumn('org_id', 'text', (c) => c.notNull())
    .addColumn('message_id', 'text', (c) => c.notNull())
    .addColumn('role', 'text', (c) => c.notNull())
    .addColumn('address_mac', 'text', (c) => c.notNull())
    .addColumn('key_version', 'integer', (c) => c.notNull())
    .addColumn('direction', 'text', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('recipient_index_pk', ['message_id', 'role', 'address_mac'])
    .execute();
  await db.schema.createIndex('recipient_index_lookup_idx').on('recipient_index').columns(['org_id', 'address_mac']).execute();
};
