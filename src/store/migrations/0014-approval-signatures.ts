import type { Kysely } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and must not depend on today's schema types
type AnyDb = Kysely<any>;

/**
 * 21 CFR 11.50 signature manifestation of a decision: JSON {signer_id, signer_name, signed_at,
 * meaning, auth_method}. Null for pending approvals, expiries and every row decided before this migration.
 */
export const up = async (db: AnyDb): Promise<void> => {
  await db.schema.alterTable('approvals').addColumn('signature', 'text').execute();
};
