import { type Kysely, sql } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and must not depend on today's schema types
type AnyDb = Kysely<any>;

const KINDS = ['password', 'api_key', 'token', 'note', 'totp'];

/**
 * The agent vault. `vault_secrets` is one row per (agent, name) pointing at its
 * current version; `vault_secret_versions` keeps every version, sealed, with
 * the owner columns copied in so the associated data of each ciphertext can be
 * recomputed from its own row (key rotation re-wraps rows one by one).
 */
export const up = async (db: AnyDb): Promise<void> => {
  await db.schema
    .createTable('vault_secrets')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('org_id', 'text', (c) => c.notNull().references('organizations.id'))
    .addColumn('agent_id', 'text', (c) => c.notNull().references('agents.id'))
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('kind', 'text', (c) => c.notNull().check(sqlIn('kind', KINDS)))
    .addColumn('current_version', 'integer', (c) => c.notNull())
    .addColumn('metadata', 'text', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'text', (c) => c.notNull())
    .addColumn('deleted_at', 'text')
    .execute();
  await db.schema.createIndex('vault_secrets_agent_name_uq').on('vault_secrets').columns(['agent_id', 'name']).unique().execute();

  await db.schema
    .createTable('vault_secret_versions')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('secret_id', 'text', (c) => c.notNull().references('vault_secrets.id'))
    .addColumn('org_id', 'text', (c) => c.notNull())
    .addColumn('agent_id', 'text', (c) => c.notNull())
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('version', 'integer', (c) => c.notNull())
    .addColumn('kind', 'text', (c) => c.notNull().check(sqlIn('kind', KINDS)))
    .addColumn('metadata', 'text', (c) => c.notNull())
    .addColumn('sealed', 'text', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('created_by', 'text')
    .addColumn('deleted_at', 'text')
    .execute();
  await db.schema
    .createIndex('vault_secret_versions_secret_version_uq')
    .on('vault_secret_versions')
    .columns(['secret_id', 'version'])
    .unique()
    .execute();
};

const sqlIn = (col: string, values: string[]) => sql`${sql.ref(col)} in (${sql.join(values.map((v) => sql.lit(v)))})`;
