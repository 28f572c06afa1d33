import { type Kysely, PostgresAdapter, sql } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and must not depend on today's schema types
type AnyDb = Kysely<any>;

/** Every sealed column as of this migration (src/app/sealed-columns.ts lists them for key rotation). */
const SEALED = [
  ['signing_keys', 'private_key_sealed'],
  ['vault_secret_versions', 'sealed'],
  ['breach_individuals', 'address_sealed'],
  ['messages', 'content_sealed'],
  ['messages', 'original_sealed'],
  ['messages', 'raw_sealed'],
  ['approvals', 'comment_sealed'],
  ['outbox', 'envelope_sealed'],
  ['human_credentials', 'totp_sealed'],
  ['sso_configs', 'client_secret_sealed'],
  ['webhook_endpoints', 'url_sealed'],
  ['webhook_secrets', 'secret_sealed'],
] as const;

/**
 * Sealed values are stored as bytes (the v2 binary envelope of src/kernel/crypto/envelope.ts) instead of
 * base64-in-JSON text, which was 4/3 of the ciphertext plus about 200 bytes of field names.
 * - PostgreSQL: every sealed column becomes `bytea`; a value already stored keeps its bytes (the UTF-8 of its
 *   v1 JSON text), which the envelope still opens and key rotation rewrites in the v2 form.
 * - SQLite: nothing to change. A column declared TEXT has TEXT affinity, which converts numbers but stores a
 *   BLOB as it is (sqlite.org/datatype3.html 3.0), so new values are BLOBs beside the old TEXT ones.
 *   Rebuilding the tables only to rename the declared type would copy every message for no gain.
 * Values are not re-encoded here: that needs no key but would read and rewrite every message inside a migration;
 * `mailward keys rotate` does it in bounded batches.
 */
export const up = async (db: AnyDb): Promise<void> => {
  if (!(db.getExecutor().adapter instanceof PostgresAdapter)) return;
  const byTable = new Map<string, string[]>();
  for (const [t, c] of SEALED) byTable.set(t, [...(byTable.get(t) ?? []), c]);
  for (const [t, cols] of byTable) {
    // One ALTER TABLE per table: PostgreSQL rewrites the table once for all its columns.
    const changes = cols.map((c) => sql`alter column ${sql.ref(c)} type bytea using convert_to(${sql.ref(c)}, 'UTF8')`);
    await sql`alter table ${sql.table(t)} ${sql.join(changes)}`.execute(db);
  }
};
