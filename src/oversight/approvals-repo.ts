import { sql } from 'kysely';
import { appendEvent } from '../events/events-log.js';
import type { Executor } from '../store/db.js';
import { isObject, mapColumns, objectList, objectOrNull } from '../store/json-column.js';
import type { ApprovalJson, ApprovalRecord, AsApprovalRecord, ReasonRecord, StoredPhiFinding } from '../store/records.js';
import type { ApprovalsTable } from '../store/schema.js';

/*
 * The approvals table's repo: every read and write of `approvals`. Reads answer `ApprovalRecord`s, JSON
 * columns parsed and checked by `toApprovalRecord`. The reviewer queue's page joins the held message's PHI
 * columns (`messages.phi_findings`, `phi_sensitivity`) in the same statement, mapped the same way as the
 * messages repo maps them: oversight sees mail only through its port, and a join cannot cross one.
 */

const hasCode = (x: Record<string, unknown>) => typeof x.code === 'string';

/** The one mapping of the approvals table's JSON columns to typed values. */
const APPROVAL_JSON: { [K in keyof ApprovalJson]: (s: string | null) => ApprovalJson[K] } = {
  reasons: (s) => objectList<ReasonRecord>(s, 'approvals.reasons', hasCode),
  decision_reason: (s) => objectOrNull<ReasonRecord>(s, 'approvals.decision_reason', hasCode),
  edits: (s) => objectList(s, 'approvals.edits', (d) => typeof d.field === 'string'),
  signature: (s) => objectOrNull(s, 'approvals.signature', (g) => typeof g.signer_id === 'string'),
};

/** An approvals row, or a projection of one, with the JSON columns it has parsed; 500 `internal` when one is malformed. */
export const toApprovalRecord = <R extends object>(row: R): AsApprovalRecord<R> => mapColumns(row, APPROVAL_JSON) as AsApprovalRecord<R>;

export type { ApprovalRecord } from '../store/records.js';

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

// ---- Readers ----

/** An approval by id (callers that got the id from a row they may see: its message). */
export const approvalById = async (ex: Executor, id: string): Promise<ApprovalRecord | undefined> => {
  const r = await ex.selectFrom('approvals').selectAll().where('id', '=', id).executeTakeFirst();
  return r && (toApprovalRecord(r) as ApprovalRecord);
};

/** An approval of the organisation (tenant isolation: another organisation's id reads as missing). */
export const approvalInOrg = async (ex: Executor, orgId: string, id: string): Promise<ApprovalRecord | undefined> => {
  const r = await ex.selectFrom('approvals').selectAll().where('id', '=', id).where('org_id', '=', orgId).executeTakeFirst();
  return r && (toApprovalRecord(r) as ApprovalRecord);
};

/** One keyset page (by the time-sortable id, after `after`) of the organisation's approvals with `status`, oldest first. */
export const approvalsPage = async (
  ex: Executor,
  q: { orgId: string; status: ApprovalsTable['status']; after: string | undefined; limit: number },
): Promise<ApprovalRecord[]> => {
  let s = ex.selectFrom('approvals').selectAll().where('org_id', '=', q.orgId).where('status', '=', q.status).orderBy('id').limit(q.limit);
  if (q.after) s = s.where('id', '>', q.after);
  return (await s.execute()).map((r) => toApprovalRecord(r) as ApprovalRecord);
};

/** Pending approvals past their expiry at `at`, soonest first. */
export const dueApprovals = async (ex: Executor, at: string, limit: number): Promise<ApprovalRecord[]> =>
  (
    await ex
      .selectFrom('approvals')
      .selectAll()
      .where('status', '=', 'pending')
      .where('expires_at', '<=', at)
      .orderBy('expires_at')
      .limit(limit)
      .execute()
  ).map((r) => toApprovalRecord(r) as ApprovalRecord);

/** When the next pending approval expires (approvals_expiry_idx), or null when none is pending: the expiry sweeper's sleep. */
export const nextApprovalExpiry = async (ex: Executor): Promise<string | null> =>
  (
    await ex
      .selectFrom('approvals')
      .select((eb) => eb.fn.min('expires_at').as('at'))
      .where('status', '=', 'pending')
      .executeTakeFirst()
  )?.at ?? null;

/** How the reviewer console's queue is filtered and sorted; `after` is the decoded cursor (expires_at|id, or an id). */
export type QueuePageQuery = {
  orgId: string;
  reason?: string;
  mailboxId?: string;
  direction?: 'inbound' | 'outbound';
  sort: 'oldest' | 'newest' | 'expiring';
  after: string | undefined;
  limit: number;
};

/**
 * One page of pending approvals for the reviewer console, with mailbox, agent, department and the held
 * message's PHI columns (phi_findings parsed like the messages repo's records).
 */
export const queuePage = async (ex: Executor, q: QueuePageQuery) => {
  let query = ex
    .selectFrom('approvals as a')
    .innerJoin('messages as m', 'm.id', 'a.message_id')
    .innerJoin('mailboxes as b', 'b.id', 'a.mailbox_id')
    .innerJoin('agents as g', 'g.id', 'b.agent_id')
    .leftJoin('departments as d', 'd.id', 'g.department_id')
    .select([
      'a.id',
      'a.message_id',
      'a.mailbox_id',
      'a.direction',
      'a.reasons',
      'a.created_at',
      'a.expires_at',
      'a.revision_of',
      'b.address as mailbox_address',
      'g.id as agent_id',
      'g.name as agent_name',
      'd.name as department_name',
      'm.phi_findings',
      'm.phi_sensitivity',
    ])
    .where('a.org_id', '=', q.orgId)
    .where('a.status', '=', 'pending');
  if (q.mailboxId) query = query.where('a.mailbox_id', '=', q.mailboxId);
  if (q.direction) query = query.where('a.direction', '=', q.direction);
  if (q.reason === 'revision') query = query.where('a.revision_of', 'is not', null);
  // Reasons are stored as compact JSON ({"code":"phi",...}): the code's exact text is the filter.
  else if (q.reason) query = query.where('a.reasons', 'like', `%"code":${JSON.stringify(q.reason)}%`);
  const after = q.after;
  if (q.sort === 'expiring') {
    if (after) {
      const [exp, id] = after.split('|') as [string, string];
      query = query.where((eb) => eb.or([eb('a.expires_at', '>', exp), eb.and([eb('a.expires_at', '=', exp), eb('a.id', '>', id)])]));
    }
    query = query.orderBy('a.expires_at').orderBy('a.id');
  } else if (q.sort === 'newest') {
    if (after) query = query.where('a.id', '<', after);
    query = query.orderBy('a.id', 'desc');
  } else {
    if (after) query = query.where('a.id', '>', after);
    query = query.orderBy('a.id');
  }
  return (await query.limit(q.limit).execute()).map((r) => ({
    ...toApprovalRecord(r),
    phi_findings: objectList<StoredPhiFinding>(r.phi_findings, 'messages.phi_findings', (f) => typeof f.type === 'string'),
  }));
};

/**
 * The organisation's pending approvals grouped by their stored reasons and direction: how many, how many are
 * revisions, and the oldest's time. The grouping is on the reasons' text, so the work grows with the number of
 * distinct reason sets, not of approvals.
 */
export const pendingGroups = async (ex: Executor, orgId: string) =>
  (
    await ex
      .selectFrom('approvals')
      .select(['reasons', 'direction', sql<number>`count(*)`.as('n'), sql<string>`min(created_at)`.as('oldest')])
      .select(sql<number>`sum(case when revision_of is null then 0 else 1 end)`.as('revisions'))
      .where('org_id', '=', orgId)
      .where('status', '=', 'pending')
      .groupBy(['reasons', 'direction'])
      .execute()
  ).map((g) => toApprovalRecord(g));

/** How many of the organisation's approvals are pending (created after `since`, when given), and the oldest's time. */
export const pendingCount = async (ex: Executor, orgId: string, since: string | null) => {
  let q = ex
    .selectFrom('approvals')
    .select([sql<number>`count(*)`.as('n'), sql<string | null>`min(created_at)`.as('oldest')])
    .where('org_id', '=', orgId)
    .where('status', '=', 'pending');
  if (since) q = q.where('created_at', '>', since);
  const r = await q.executeTakeFirstOrThrow();
  return { n: Number(r.n), oldest: r.oldest };
};

/** The organisation's pending approvals expiring by `before` that were not escalated yet, soonest first. */
export const unescalatedExpiring = (ex: Executor, orgId: string, before: string, limit: number) =>
  ex
    .selectFrom('approvals as a')
    .leftJoin('approval_escalations as e', 'e.approval_id', 'a.id')
    .select(['a.id', 'a.expires_at'])
    .where('a.org_id', '=', orgId)
    .where('a.status', '=', 'pending')
    .where('a.expires_at', '<=', before)
    .where('e.approval_id', 'is', null)
    .orderBy('a.expires_at')
    .limit(limit)
    .execute();

/**
 * Every pending approval's reason codes and creation time, for the operations gauges. Read leniently on
 * purpose: a reasons value that does not parse counts as `other` rather than failing a metrics scrape.
 */
export const pendingReasonCodes = async (ex: Executor): Promise<{ codes: string[]; created_at: string }[]> =>
  (await ex.selectFrom('approvals').select(['reasons', 'created_at']).where('status', '=', 'pending').execute()).map((a) => {
    let codes: string[];
    try {
      const v: unknown = JSON.parse(a.reasons);
      codes = Array.isArray(v) ? v.map((r) => (isObject(r) && typeof r.code === 'string' ? r.code : 'other')) : ['other'];
    } catch {
      codes = ['other'];
    }
    return { codes, created_at: a.created_at };
  });
