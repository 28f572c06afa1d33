import type { Kysely } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and must not depend on today's schema types
type AnyDb = Kysely<any>;

/**
 * What each configured witness (c2sp.org/tlog-witness) answered for each
 * checkpoint: its cosignature line (c2sp.org/tlog-cosignature v1) when it
 * cosigned, else why not (HTTP status, the size it knows on 409), so a refused
 * checkpoint (inconsistent history, a forked log) is reported, not forgotten.
 */
export const up = async (db: AnyDb) => {
  await db.schema
    .createTable('audit_cosignatures')
    .addColumn('tree_size', 'bigint', (c) => c.notNull())
    .addColumn('witness', 'text', (c) => c.notNull())
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('http_status', 'integer')
    .addColumn('known_size', 'bigint')
    .addColumn('signature_line', 'text')
    .addColumn('cosigned_at', 'bigint')
    .addColumn('at', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('audit_cosignatures_pk', ['tree_size', 'witness'])
    .execute();
};

export const down = async (db: AnyDb) => {
  await db.schema.dropTable('audit_cosignatures').execute();
};
