import { canonicalJson } from '../audit/canonical.js';
import type { Guard } from '../identity/guard.js';
import { type RequestContext, requireAnyRole } from '../identity/principal.js';
import type { Clock } from '../kernel/clock.js';
import { decodeCursor, encodeCursor } from '../kernel/cursor.js';
import { sha256Hex } from '../kernel/crypto/hash.js';
import type { Db } from '../store/db.js';
import { pendingGroups, queuePage } from './approvals-repo.js';
import type { HeldMail } from './held-mail.js';

/** The reasons a queue can be filtered by (the `code` of a hold reason, CONTRACT.md "Oversight"). */
export const QUEUE_REASONS = [
  'oversight_mode',
  'phi',
  'part2',
  'consent_unknown',
  'no_consent',
  'dmarc_fail',
  'org_domain_unauthenticated',
  'agent_deactivated',
  'revision',
] as const;

export type QueueSort = 'oldest' | 'newest' | 'expiring';

/** One page of the reviewer console's queue: filters, a sort and a keyset cursor (tens of thousands of rows). */
export type QueueQuery = {
  reason?: string;
  mailboxId?: string;
  direction?: 'inbound' | 'outbound';
  sort: QueueSort;
  cursor?: string;
  limit: number;
};

type Deps = { db: Db; guard: Guard; held: Pick<HeldMail, 'open' | 'byIds'>; clock: Clock };

// The cursor of a page: the sort key of its last row (expires_at|id, or the id alone: ids are time-sortable).
const CURSOR_KEY = /^(\d{4}-\d\d-\d\dT[0-9:.]+Z\|)?apr_[0-9a-f]{32}$/;

/**
 * The reviewer console's queue of pending approvals, with what a reviewer needs to triage: mailbox,
 * agent, department, recipients, subject, reasons, age and time left. The same rules as
 * `GET /v1/approvals` (reviewers and admins of the organisation; agents 404) and the same audit
 * action, `approval.list`, in the transaction that reads the page: the subject and recipients shown
 * are PHI (45 CFR 164.312(b)).
 */
export const createApprovalQueue = ({ db, guard, held, clock }: Deps) => {
  /**
   * One page of pending approvals. Throws 404 (agents), 403 role_required, 400 invalid_cursor.
   * Audits approval.list with the filters' hash and the page size (never the subject or recipients).
   */
  const page = (ctx: RequestContext, q: QueueQuery) =>
    guard.change(
      ctx,
      'approval.list',
      null,
      async (tx) => {
        requireAnyRole(ctx, ['reviewer', 'admin'], 'approval');
        const after = decodeCursor(q.cursor, CURSOR_KEY);
        const found = await queuePage(tx, {
          orgId: ctx.principal.orgId,
          reason: q.reason,
          mailboxId: q.mailboxId,
          direction: q.direction,
          sort: q.sort,
          after,
          limit: q.limit + 1,
        });
        const rows = found.slice(0, q.limit);
        const sealed = new Map<string, Parameters<HeldMail['open']>[0]>();
        if (rows.length > 0)
          for (const m of await held.byIds(
            tx,
            rows.map((r) => r.message_id),
          ))
            sealed.set(m.id, m);
        const now = clock.now().getTime();
        const items = rows.map((r) => {
          const m = sealed.get(r.message_id)!;
          const c = held.open(m, m.content_sealed);
          return {
            id: r.id,
            email_id: r.message_id,
            mailbox_id: r.mailbox_id,
            mailbox_address: r.mailbox_address,
            agent_id: r.agent_id,
            agent_name: r.agent_name,
            department_name: r.department_name ?? null,
            direction: r.direction,
            from: c.from.address,
            recipients: [...c.to, ...c.cc],
            subject: c.subject,
            reasons: r.reasons,
            phi_types: [...new Set(r.phi_findings.map((f) => f.type))].sort(),
            phi_sensitivity: r.phi_sensitivity,
            is_revision: r.revision_of !== null,
            created_at: r.created_at,
            expires_at: r.expires_at,
            age_seconds: Math.max(0, Math.floor((now - Date.parse(r.created_at)) / 1000)),
            seconds_left: Math.floor((Date.parse(r.expires_at) - now) / 1000),
          };
        });
        const last = rows.at(-1);
        const next =
          found.length > q.limit && last ? encodeCursor(q.sort === 'expiring' ? `${last.expires_at}|${last.id}` : last.id) : null;
        const filter = { reason: q.reason ?? null, mailbox_id: q.mailboxId ?? null, direction: q.direction ?? null, sort: q.sort };
        await guard.recordIn(tx, ctx, 'approval.list', null, {
          status: 'pending',
          limit: q.limit,
          has_cursor: q.cursor !== undefined,
          filter_hash: sha256Hex(canonicalJson({ ...filter, cursor: q.cursor ?? null, limit: q.limit })),
          count: items.length,
          view: 'console',
        });
        return { approvals: items, next_cursor: next };
      },
      { groupCommit: true },
    );

  /**
   * How many approvals wait, per reason code, per direction and in all, and the oldest one's time: counts
   * and codes only, no PHI. The grouping is on the stored reasons' text, so the work grows with the
   * number of distinct reason sets, not of approvals. Reviewers and admins only (404 for agents).
   */
  const counts = async (ctx: RequestContext) => {
    requireAnyRole(ctx, ['reviewer', 'admin'], 'approval');
    const groups = await pendingGroups(db, ctx.principal.orgId);
    const byReason: Record<string, number> = {};
    const byDirection: Record<string, number> = {};
    let total = 0;
    let oldest: string | null = null;
    for (const g of groups) {
      const n = Number(g.n);
      total += n;
      byDirection[g.direction] = (byDirection[g.direction] ?? 0) + n;
      for (const code of new Set(g.reasons.map((r) => r.code))) byReason[code] = (byReason[code] ?? 0) + n;
      if (Number(g.revisions) > 0) byReason.revision = (byReason.revision ?? 0) + Number(g.revisions);
      if (oldest === null || g.oldest < oldest) oldest = g.oldest;
    }
    return { total, by_reason: byReason, by_direction: byDirection, oldest_created_at: oldest };
  };

  return { page, counts };
};

export type ApprovalQueue = ReturnType<typeof createApprovalQueue>;
