import { appendEvent } from '../events/events-log.js';
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
  /** The approval of the rejected message this one revises. */
  revisionOf?: string | null;
};

/**
 * Opens a pending approval in the caller's transaction (the message's hold and its audit event commit
 * with it). Outbound sends and inbound receipt both open approvals here, so a pending row always has
 * the same shape.
 */
export const insertPendingApproval = async (db: Executor, a: NewApproval) => {
  await db
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
      revision_of: a.revisionOf ?? null,
    })
    .execute();
  await appendEvent(db, {
    orgId: a.orgId,
    type: 'approval.opened',
    at: a.createdAt,
    mailboxId: a.mailboxId,
    emailId: a.messageId,
    approvalId: a.id,
    data: { direction: a.direction, reasons: reasonCodes(a.reasons), expires_at: a.expiresAt },
  });
};

/** The codes of a hold's reasons (`phi`, `oversight_mode`, ...) with their non-PHI facts: types, never text. */
const reasonCodes = (reasons: unknown[]) =>
  reasons.map((r) => {
    const x = r as { code?: unknown; types?: unknown; mode?: unknown; category?: unknown; recipients?: unknown };
    return {
      code: String(x.code ?? 'unknown'),
      ...(Array.isArray(x.types) ? { types: x.types.map(String) } : {}),
      ...(typeof x.mode === 'string' ? { mode: x.mode } : {}),
      ...(typeof x.category === 'string' ? { category: x.category } : {}),
      ...(typeof x.recipients === 'number' ? { recipients: x.recipients } : {}),
    };
  });

/** The outcome an `approval.decided` event names, from the decision's reason code. */
const OUTCOMES: Record<string, string> = { rejected_by_reviewer: 'rejected' };

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
  const decided = await db
    .updateTable('approvals')
    .set(set)
    .where('id', '=', id)
    .where('status', '=', 'pending')
    .returning(['org_id', 'mailbox_id', 'message_id', 'direction'])
    .executeTakeFirst();
  if (!decided) return false;
  const code = set.decision_reason ? String((JSON.parse(set.decision_reason) as { code?: unknown }).code ?? set.status) : set.status;
  await appendEvent(db, {
    orgId: decided.org_id,
    type: 'approval.decided',
    at: set.decided_at ?? new Date().toISOString(),
    mailboxId: decided.mailbox_id,
    emailId: decided.message_id,
    approvalId: id,
    data: { direction: decided.direction, status: set.status, outcome: OUTCOMES[code] ?? code, decided_by: set.decided_by ?? null },
  });
  return true;
};
