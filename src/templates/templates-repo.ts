import type { Executor } from '../store/db.js';
import type { TemplatesTable, TemplateVersionsTable } from '../store/schema.js';
import type { SlotDef } from './templates-schemas.js';

/**
 * The writer of `templates` and `template_versions` (STYLE.md: one repo per table), with the JSON columns
 * mapped here. A version moves `pending -> approved` once, by a compare-and-set, so two reviewers cannot both
 * approve it; approving one supersedes every earlier version.
 */

export type TemplateVersion = Omit<TemplateVersionsTable, 'slots' | 'allowed_phi_types' | 'signature'> & {
  slots: SlotDef[];
  allowed_phi_types: string[];
  signature: Record<string, unknown> | null;
};

const toVersion = (r: TemplateVersionsTable): TemplateVersion => ({
  ...r,
  slots: JSON.parse(r.slots) as SlotDef[],
  allowed_phi_types: JSON.parse(r.allowed_phi_types) as string[],
  signature: r.signature ? (JSON.parse(r.signature) as Record<string, unknown>) : null,
});

export type NewVersion = Omit<TemplateVersion, 'status' | 'approved_by' | 'approved_at' | 'signature'>;

export const createTemplatesRepo = () => {
  const insertTemplate = (tx: Executor, row: TemplatesTable) => tx.insertInto('templates').values(row).execute();

  /** A new pending version; earlier pending versions can no longer be approved (they are superseded). */
  const insertVersion = async (tx: Executor, v: NewVersion) => {
    await tx
      .updateTable('template_versions')
      .set({ status: 'superseded' })
      .where('template_id', '=', v.template_id)
      .where('status', '=', 'pending')
      .execute();
    await tx
      .insertInto('template_versions')
      .values({
        ...v,
        slots: JSON.stringify(v.slots),
        allowed_phi_types: JSON.stringify(v.allowed_phi_types),
        status: 'pending',
        approved_by: null,
        approved_at: null,
        signature: null,
      })
      .execute();
    await tx
      .updateTable('templates')
      .set({ current_version: v.version, updated_at: v.created_at })
      .where('id', '=', v.template_id)
      .execute();
  };

  /** The organisation's template, or undefined (another tenant's answers as missing). */
  const template = (ex: Executor, orgId: string, id: string) =>
    ex.selectFrom('templates').selectAll().where('id', '=', id).where('org_id', '=', orgId).executeTakeFirst();

  const list = (ex: Executor, orgId: string) => ex.selectFrom('templates').selectAll().where('org_id', '=', orgId).orderBy('id').execute();

  const versions = async (ex: Executor, templateId: string) =>
    (await ex.selectFrom('template_versions').selectAll().where('template_id', '=', templateId).orderBy('version').execute()).map(
      toVersion,
    );

  const version = async (ex: Executor, templateId: string, n: number) => {
    const r = await ex
      .selectFrom('template_versions')
      .selectAll()
      .where('template_id', '=', templateId)
      .where('version', '=', n)
      .executeTakeFirst();
    return r ? toVersion(r) : undefined;
  };

  /** The version sends use: the one approved (at most one is, approving supersedes the rest). */
  const approvedVersion = async (ex: Executor, templateId: string) => {
    const r = await ex
      .selectFrom('template_versions')
      .selectAll()
      .where('template_id', '=', templateId)
      .where('status', '=', 'approved')
      .orderBy('version', 'desc')
      .executeTakeFirst();
    return r ? toVersion(r) : undefined;
  };

  /** pending -> approved with the signature; false when another decision won. Earlier versions become superseded. */
  const approve = async (
    tx: Executor,
    templateId: string,
    n: number,
    by: { id: string; at: string; signature: Record<string, unknown> },
  ): Promise<boolean> => {
    const u = await tx
      .updateTable('template_versions')
      .set({ status: 'approved', approved_by: by.id, approved_at: by.at, signature: JSON.stringify(by.signature) })
      .where('template_id', '=', templateId)
      .where('version', '=', n)
      .where('status', '=', 'pending')
      .executeTakeFirst();
    if (Number(u.numUpdatedRows) !== 1) return false;
    await tx
      .updateTable('template_versions')
      .set({ status: 'superseded' })
      .where('template_id', '=', templateId)
      .where('version', '<', n)
      .where('status', 'in', ['approved', 'pending'])
      .execute();
    return true;
  };

  return { insertTemplate, insertVersion, template, list, versions, version, approvedVersion, approve };
};

export type TemplatesRepo = ReturnType<typeof createTemplatesRepo>;
