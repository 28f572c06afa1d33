import { type Kysely, sql } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and must not depend on today's schema types
type AnyDb = Kysely<any>;

const sqlIn = (col: string, values: string[]) => sql`${sql.ref(col)} in (${sql.join(values.map((v) => sql.lit(v)))})`;

/**
 * Pre-approved templates (README "Templates and bulk sends"):
 * - `templates`: one per organisation and name; `current_version` is the newest version written.
 * - `template_versions`: subject, text, html and typed slots of each version, its status
 *   (`pending` until a reviewer approves it once, `approved`, or `superseded` by a later approval or draft),
 *   the approver's signature manifestation (21 CFR 11.50: signer, meaning, method), the PHI types the version's own
 *   text carries with placeholder values (what a rendered message may carry), and its consent category.
 * - `mailboxes.allow_templates`: a gated_send mailbox lets an approved template's sends flow as monitored (0: never).
 * - `messages.template_id`, `messages.template_version`: what a templated message was rendered from.
 */
export const up = async (db: AnyDb): Promise<void> => {
  await db.schema
    .createTable('templates')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('org_id', 'text', (c) => c.notNull())
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('created_by', 'text', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'text', (c) => c.notNull())
    .addColumn('current_version', 'integer', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('templates_org_name_uq').on('templates').columns(['org_id', 'name']).unique().execute();
  await db.schema
    .createTable('template_versions')
    .addColumn('template_id', 'text', (c) => c.notNull())
    .addColumn('version', 'integer', (c) => c.notNull())
    .addColumn('org_id', 'text', (c) => c.notNull())
    .addColumn('subject', 'text', (c) => c.notNull())
    .addColumn('text', 'text', (c) => c.notNull())
    .addColumn('html', 'text')
    .addColumn('slots', 'text', (c) => c.notNull())
    .addColumn('category', 'text')
    .addColumn('allowed_phi_types', 'text', (c) => c.notNull())
    .addColumn('content_hash', 'text', (c) => c.notNull())
    .addColumn('created_by', 'text', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('status', 'text', (c) => c.notNull().check(sqlIn('status', ['pending', 'approved', 'superseded'])))
    .addColumn('approved_by', 'text')
    .addColumn('approved_at', 'text')
    .addColumn('signature', 'text')
    .addPrimaryKeyConstraint('template_versions_pk', ['template_id', 'version'])
    .execute();
  await db.schema
    .alterTable('mailboxes')
    .addColumn('allow_templates', 'integer', (c) => c.notNull().defaultTo(0))
    .execute();
  await db.schema.alterTable('messages').addColumn('template_id', 'text').execute();
  await db.schema.alterTable('messages').addColumn('template_version', 'integer').execute();
};
