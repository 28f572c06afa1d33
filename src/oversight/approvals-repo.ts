import type { Executor } from '../store/db.js';
import type { ApprovalsTable } from '../store/schema.js';

/** What opening an approval needs: the held message and why it is held (reasons as data, no PHI). */
export type NewApproval = {
  id: string;
  orgId: string;
  messageId: string;
  mailboxId: string;
  direction: ApprovalsTable['direction'];
  reasons: unknown[];
  createdAt: string;
  expiresAt: string;
};

/**
 * Opens a pending approval in the caller's transaction (the message's hold and its audit event commit
 * with it). Outbound sends and inbound receipt both open approvals here, so a pending row always has
 * the same shape.
 */
export const insertPendingApproval = (db: Executor, a: NewApproval) =>
  db
    .insertInto('approvals')
    .values({
      id: a.id,
      org_id: a.orgId,
      message_id: a.messageId,
      mailbox_id: a.mailboxId,
      direction: a.direction,
      status: 'pending',
      reasons: JSON.stringify(a.reasons),
      created_at: a.createdAt,
      expires_at: a.expiresAt,
      decided_at: null,
      decided_by: null,
      decision_reason: null,
      comment_sealed: null,
      edits: null,
    })
    .execute();

/**
 * The decision's compare-and-set (STYLE.md, state machines): a pending approval is decided (approved,
 * rejected, expired, closed by a cancel) once. Returns false when it was no longer pending: another
 * reviewer, process, cancel or expiry decided it first. The only code that writes `approvals.status`
 * after the row is opened.
 */
export const decidePendingApproval = async (
  db: Executor,
  id: string,
  set: Partial<Omit<ApprovalsTable, 'id' | 'status'>> & { status: 'approved' | 'rejected' },
): Promise<boolean> => {
  const u = await db.updateTable('approvals').set(set).where('id', '=', id).where('status', '=', 'pending').executeTakeFirst();
  return Number(u.numUpdatedRows) === 1;
};
