import type { Executor } from '../store/db.js';
import type { ReviewerNotificationPrefsTable } from '../store/schema.js';

/** The only writer of reviewer_notification_prefs and approval_escalations (STYLE.md: one repo per table). */
export const prefsOf = (ex: Executor, humanId: string) =>
  ex.selectFrom('reviewer_notification_prefs').selectAll().where('human_id', '=', humanId).executeTakeFirst();

export const putPrefs = async (ex: Executor, row: ReviewerNotificationPrefsTable) => {
  await ex
    .insertInto('reviewer_notification_prefs')
    .values(row)
    .onConflict((oc) =>
      oc.column('human_id').doUpdateSet({ enabled: row.enabled, batch_minutes: row.batch_minutes, updated_at: row.updated_at }),
    )
    .execute();
};

export const markDigest = async (ex: Executor, humanId: string, orgId: string, at: string, defaults: { batchMinutes: number }) => {
  await ex
    .insertInto('reviewer_notification_prefs')
    .values({ human_id: humanId, org_id: orgId, enabled: 1, batch_minutes: defaults.batchMinutes, last_digest_at: at, updated_at: at })
    .onConflict((oc) => oc.column('human_id').doUpdateSet({ last_digest_at: at }))
    .execute();
};

/** Marks approvals escalated; returns those this call marked (a concurrent sweeper marks the rest). */
export const markEscalated = async (ex: Executor, orgId: string, ids: string[], at: string) => {
  if (ids.length === 0) return [];
  const out = await ex
    .insertInto('approval_escalations')
    .values(ids.map((approval_id) => ({ approval_id, org_id: orgId, escalated_at: at })))
    .onConflict((oc) => oc.column('approval_id').doNothing())
    .returning('approval_id')
    .execute();
  return out.map((r) => r.approval_id);
};
