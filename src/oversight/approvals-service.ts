import type { MetricsSink } from '../kernel/metrics.js';
import type { AuditService } from '../audit/audit-service.js';
import type { Guard } from '../identity/guard.js';
import type { IdentityRepo } from '../identity/identity-repo.js';
import { approvalById, approvalInOrg, approvalsPage, decidePendingApproval, dueApprovals, nextApprovalExpiry } from './approvals-repo.js';
import { actorOf, hasRole, type RequestContext, requireAnyRole, systemActor } from '../identity/principal.js';
import type { Clock } from '../kernel/clock.js';
import { decodeCursor, encodeCursor } from '../kernel/cursor.js';
import { seal } from '../kernel/crypto/envelope.js';
import { sha256Hex } from '../kernel/crypto/hash.js';
import type { KeyRing } from '../kernel/crypto/keyring.js';
import { AppError, conflict, forbidden, isAppError, notFound, unprocessable } from '../kernel/errors.js';
import { approvalAad, approvalView, type EditDiff } from './approval-views.js';
import type { DecisionInput, HeldContent, HeldMail } from './held-mail.js';
import { canonicalJson } from '../audit/canonical.js';
import { consentCategoryError, noConsentError } from '../phi/consent-service.js';
import { noPart2ConsentError, part2Coverage } from '../phi/part2-consents.js';
import { type OutboundScreen, storedFindings } from '../phi/outbound-screen.js';
import type { Db, Executor, Tx } from '../store/db.js';
import type { ApprovalRecord, MessageRecord } from '../store/records.js';
import type { ApprovalsTable, MessagesTable } from '../store/schema.js';

type Deps = {
  db: Db;
  ring: KeyRing;
  guard: Guard;
  audit: Pick<AuditService, 'record' | 'recordAlone'>;
  repo: IdentityRepo;
  clock: Clock;
  /** Mail's side of a decision: transitions, sealing, the outbox (wired by the container). */
  held: HeldMail;
  /** PHI re-scan of edited content and the consent check at approval. */
  screen: OutboundScreen;
  onQueued?: () => void;
  metrics?: Pick<MetricsSink, 'approvalDecided'>;
  /** 21 CFR 11.200: a decision made through a session needs a second factor within this many seconds (default 300). */
  stepUpSeconds?: number;
};

/** 21 CFR 11.50(a)(3): the meaning of a signature, in words. */
export type SignatureMeaning = 'approved for sending' | 'rejected' | 'released to agent';

const EDITABLE = ['subject', 'text', 'html', 'to', 'cc'] as const;

/** GET /v1/approvals: which approvals, and one page of them (cursor: next_cursor of the previous page). */
export type ApprovalListQuery = { status: ApprovalsTable['status']; cursor?: string; limit: number };

/** The opaque cursor names the last approval id of the previous page. */
const decodeApprovalCursor = (cursor: string) => decodeCursor(cursor, /^apr_[0-9a-f]{32}$/) as string;

/** Edits to these change what the PHI scan sees. */
const SCANNED = new Set<string>(['subject', 'text', 'html']);

/** Hash of one field's value: the audit log keeps which fields changed and these hashes, never the text. */
const fieldHash = (v: unknown) => sha256Hex(JSON.stringify(v ?? null));

export const createApprovalsService = ({
  db,
  ring,
  guard,
  audit,
  repo,
  clock,
  held,
  screen,
  onQueued,
  metrics,
  stepUpSeconds = 300,
}: Deps) => {
  const now = () => clock.now().toISOString();

  /**
   * The signature manifestation of a decision (21 CFR 11.50: who signed, when, and what it means;
   * and how they authenticated). Through a session it needs a second-factor check within
   * `stepUpSeconds` (21 CFR 11.200(a)(1)(i): a signing after the first in a session still
   * re-authenticates), else 403 step_up_required with the step-up page's address. An API key signs
   * as `api_key` (scripts; reviewers should use sessions).
   */
  const signatureOf = (ctx: RequestContext, meaning: SignatureMeaning, at: string) => {
    const s = ctx.principal.session;
    if (s) {
      const factorAt = s.secondFactorAt ? Date.parse(s.secondFactorAt) : 0;
      if (Date.parse(at) - factorAt > stepUpSeconds * 1000) {
        throw new AppError(
          'step_up_required',
          403,
          'Signing this decision needs a second-factor check within the last minutes (21 CFR 11.200).',
          {
            extra: { step_up_url: '/console/step-up' },
          },
        );
      }
    }
    return {
      signer_id: ctx.principal.id,
      signer_name: ctx.principal.name,
      signed_at: at,
      meaning,
      auth_method: s ? (s.secondFactorMethod ?? s.authMethod) : 'api_key',
    };
  };
  const target = (id: string) => ({ type: 'approval', id });

  /** Humans with `reviewer` decide; agents never hold roles (api-keys-service), so an agent gets 404. */
  const requireReviewer = (ctx: RequestContext) => requireAnyRole(ctx, ['reviewer'], 'approval');

  const load = async (tx: Executor, ctx: RequestContext, id: string) => {
    const a = await approvalInOrg(tx, ctx.principal.orgId, id);
    if (!a) throw notFound('approval');
    if (a.status !== 'pending') throw conflict('approval_decided', `This approval is already ${a.status}.`);
    if (a.expires_at <= now()) throw conflict('approval_expired', 'This approval has expired; the message is rejected.');
    const m = await held.byId(tx, a.message_id);
    if (!m) throw new AppError('internal', 500, 'The held message of an approval is missing.');
    // Never the sender; humans cannot send today, but the rule holds whatever keys become.
    if (m.created_by_id === ctx.principal.id) throw forbidden('sender_cannot_approve', 'The sender of a message can never approve it.');
    const mailbox = await tx.selectFrom('mailboxes').selectAll().where('id', '=', a.mailbox_id).executeTakeFirstOrThrow();
    return { a, m, mailbox };
  };

  /**
   * The decision's compare-and-set (STYLE.md, state machines): the approval
   * moves from `pending` only once. It is the first write of every decision,
   * so the row lock it takes on PostgreSQL orders concurrent deciders on
   * other processes (the second waits, then matches no row); on SQLite the
   * writer lock does the same. The loser's transaction rolls back: 409.
   */
  const decideOnce = async (tx: Tx, approvalId: string, set: Parameters<typeof decidePendingApproval>[2]) => {
    if (!(await decidePendingApproval(tx, approvalId, set))) throw conflict('approval_decided', 'This approval was decided concurrently.');
  };

  /** The approval as the decision just wrote it (read back in its transaction). */
  const decided = async (tx: Executor, id: string): Promise<ApprovalRecord> => {
    const a = await approvalById(tx, id);
    if (!a) throw new AppError('internal', 500, 'A decided approval is missing.');
    return a;
  };

  /** The held message left the status the decision read (cancelled, or moved by another process). */
  const messageMoved = () => conflict('approval_decided', 'The held message was changed concurrently; this decision was not applied.');

  /**
   * One page of the organisation's approvals with `status`, oldest first
   * (keyset on the time-sortable id, so a page never skips or repeats a row
   * while others are decided). Reviewers and admins only; agents get 404.
   * Throws 400 invalid_cursor. Writes `approval.list` (status, page size,
   * count and a hash of the query; no PHI) in the transaction that reads the
   * page: the queue shows which messages carry which PHI types (45 CFR
   * 164.312(b)).
   */
  const list = (ctx: RequestContext, q: ApprovalListQuery) =>
    guard.change(
      ctx,
      'approval.list',
      null,
      async (tx) => {
        requireAnyRole(ctx, ['reviewer', 'admin'], 'approval');
        const after = q.cursor === undefined ? undefined : decodeApprovalCursor(q.cursor);
        const found = await approvalsPage(tx, { orgId: ctx.principal.orgId, status: q.status, after, limit: q.limit + 1 });
        const rows = found.slice(0, q.limit);
        // The reviewer sees each finding's type and place; the findings hold no PHI text.
        const phi = new Map<string, Pick<MessageRecord, 'phi_findings' | 'phi_sensitivity'>>();
        for (let i = 0; i < rows.length; i += 100) {
          const ids = rows.slice(i, i + 100).map((a) => a.message_id);
          for (const m of await held.phiOf(tx, ids)) phi.set(m.id, m);
        }
        const last = rows.at(-1);
        const next = found.length > q.limit && last ? encodeCursor(last.id) : null;
        await guard.recordIn(tx, ctx, 'approval.list', null, {
          status: q.status,
          limit: q.limit,
          has_cursor: q.cursor !== undefined,
          filter_hash: sha256Hex(canonicalJson({ status: q.status, cursor: q.cursor ?? null, limit: q.limit })),
          count: rows.length,
        });
        return { approvals: rows.map((a) => approvalView(ring, a, phi.get(a.message_id))), next_cursor: next };
      },
      { groupCommit: true },
    );

  /**
   * A decision that lost (409: already decided, expired, or changed meanwhile)
   * changed nothing, and its transaction rolled back: it is recorded as a
   * `denied` event on its own (45 CFR 164.312(b): every attempt is logged).
   */
  const auditLoss = async <T>(ctx: RequestContext, action: string, id: string, fn: () => Promise<T>): Promise<T> => {
    try {
      return await fn();
    } catch (e) {
      if (isAppError(e) && e.status === 409) await guard.denied(ctx, action, target(id), e);
      throw e;
    }
  };

  /**
   * Releases a held inbound message (gated_all, or quarantined for DMARC) to
   * the agent: status `received`. Received mail cannot be edited (422
   * inbound_not_editable). Audits email.released with the raw bytes' hash.
   */
  const release = async (ctx: RequestContext, id: string, body: DecisionInput) => {
    if (body.edits && Object.values(body.edits).some((v) => v !== undefined)) {
      throw unprocessable('inbound_not_editable', 'A received message cannot be edited; approving releases it to the agent as received.');
    }
    const r = await auditLoss(ctx, 'email.released', id, () =>
      guard.change(ctx, 'email.released', target(id), async (tx) => {
        requireReviewer(ctx);
        const { a, m } = await load(tx, ctx, id);
        const at = now();
        const signature = signatureOf(ctx, 'released to agent', at);
        await decideOnce(tx, a.id, {
          status: 'approved',
          decided_at: at,
          decided_by: ctx.principal.id,
          signature: JSON.stringify(signature),
          decision_reason: JSON.stringify({ code: 'released' }),
          comment_sealed: body.comment ? seal(ring, body.comment, approvalAad(a)) : null,
          edits: JSON.stringify([]),
        });
        if ((await held.move(tx, m.id, 'release', { status_reason: null, updated_at: at })) !== 1) throw messageMoved();
        await held.note(tx, m.id, at, 'released', { approval_id: a.id, by: ctx.principal.id, previous_status: m.status });
        await guard.recordIn(
          tx,
          ctx,
          'email.released',
          { type: 'email', id: m.id },
          {
            approval_id: a.id,
            previous_status: m.status,
            signature,
            has_comment: !!body.comment,
            ...(body.comment ? { comment_hash: sha256Hex(body.comment) } : {}),
          },
          m.raw_hash ?? m.content_hash,
        );
        const released = { ...m, status: 'received', status_reason: null };
        return {
          id: m.id,
          status: 'received',
          thread_id: m.thread_id,
          approval: approvalView(ring, await decided(tx, a.id), released),
          org_id: m.org_id,
          mailbox_id: m.mailbox_id,
        };
      }),
    );
    return { id: r.id, status: r.status, thread_id: r.thread_id, approval: r.approval };
  };

  /**
   * Approves a held message, optionally with edits, then signs and queues it.
   * Edited subject, text or html is scanned again and the new findings
   * replace the stored ones; every recipient's consent is checked again (it
   * may have changed while the message waited).
   * `category` (optional) reclassifies the message; the consent check uses
   * it, or else the category it was sent with.
   * Throws 404 (agents, other orgs), 403 role_required / sender_cannot_approve,
   * 409 approval_decided (another reviewer or process decided first: exactly
   * one decision wins) / approval_expired / approval_conflict, each audited as
   * a `denied` email.approved event; 422 no_consent or consent_category (a
   * recipient's consent does not cover the category; the approval stays
   * pending; a `denied` email.approved event records it). Audits
   * email.approved with the edit diff (field names and hashes only) and the
   * PHI types after the edit; writes outbox jobs.
   */
  const approve = async (ctx: RequestContext, id: string, body: DecisionInput) => {
    // Phase 1, no transaction: checks and the edited content.
    const pre = await auditLoss(ctx, 'email.approved', id, () =>
      guard.read(ctx, 'email.approved', target(id), async () => {
        requireReviewer(ctx);
        return load(db, ctx, id);
      }),
    );
    // Approving a held inbound message releases it to the agent; nothing is signed or sent.
    if (pre.a.direction === 'inbound') return release(ctx, id, body);
    const before = held.open(pre.m, pre.m.content_sealed);
    const after: HeldContent = { ...before };
    const diff: EditDiff[] = [];
    for (const f of EDITABLE) {
      const v = body.edits?.[f];
      if (v === undefined) continue;
      const next = f === 'to' || f === 'cc' ? (v as string[]).map((x) => x.toLowerCase()) : v;
      if (fieldHash(before[f]) === fieldHash(next)) continue;
      diff.push({ field: f, before_hash: fieldHash(before[f]), after_hash: fieldHash(next) });
      (after as Record<string, unknown>)[f] = next;
    }
    const org = diff.some((d) => SCANNED.has(d.field)) ? await repo.org(db, pre.m.org_id) : null;
    const rescan = diff.some((d) => SCANNED.has(d.field)) ? await screen.scan(after, org?.domain ?? '', org?.name) : null;
    let refusal: { code: 'no_consent' | 'consent_category' | 'no_part2_consent'; recipients: number; category?: string } | null = null;

    const approveIn = async (tx: Tx) => {
      requireReviewer(ctx);
      const { a, m, mailbox } = await load(tx, ctx, id);
      // The edits were computed on what phase 1 saw; a message changed meanwhile is not approved blind.
      if (m.content_hash !== pre.m.content_hash)
        throw conflict('approval_conflict', 'The message changed while it was being approved; try again.');
      const at = now();
      const signature = signatureOf(ctx, 'approved for sending', at);
      await decideOnce(tx, a.id, {
        status: 'approved',
        decided_at: at,
        decided_by: ctx.principal.id,
        signature: JSON.stringify(signature),
        decision_reason: JSON.stringify({ code: 'approved' }),
        comment_sealed: body.comment ? seal(ring, body.comment, approvalAad(a)) : null,
        edits: JSON.stringify(diff),
      });
      // The reviewer may (re)classify the message; CONTRACT.md: approve bodies carry an optional category.
      const category = body.category ?? m.category;
      // 45 CFR 164.522(b): a refusal recorded while the message waited, or a refused recipient added by the edit, stops it;
      // so does a recipient whose consent lists categories without this message's: the patient's restriction is not the reviewer's to waive.
      const check = await screen.checkConsent(tx, m.org_id, after, false, category);
      if (check.refused > 0) {
        refusal = { code: 'no_consent', recipients: check.refused };
        throw noConsentError(check.firstRefused);
      }
      if (check.categoryHeld > 0 && category) {
        refusal = { code: 'consent_category', recipients: check.categoryHeld, category };
        throw consentCategoryError(category, check.firstCategoryHeld);
      }
      // 42 CFR 2.31(a)(6): a Part 2 consent revoked while the message waited (or a recipient added by the edit that no
      // consent names) stops the disclosure.
      if (m.system_tags.includes('part2')) {
        const p2 = await part2Coverage(tx, m.org_id, screen.recipientsOf(after), at);
        if (p2.missing >= 0) {
          refusal = { code: 'no_part2_consent', recipients: 1 };
          throw noPart2ConsentError(p2.missing);
        }
      }
      let msg: MessageRecord = { ...m, category };
      const cols: Partial<MessagesTable> = category === m.category ? {} : { category };
      if (diff.length > 0) {
        const sealedNew = held.seal(m, after);
        const sealedOld = m.original_sealed ?? held.seal(m, before, 'original').sealed;
        const content = { content_sealed: sealedNew.sealed, content_hash: sealedNew.hash, original_sealed: sealedOld };
        const findings = rescan ? storedFindings(rescan.findings) : null;
        Object.assign(
          cols,
          content,
          findings && rescan ? { phi_findings: JSON.stringify(findings), phi_sensitivity: rescan.sensitivity } : {},
        );
        // The record the pipeline queues and the view shows: the edited content and its findings, typed.
        msg = { ...msg, ...content, ...(findings && rescan ? { phi_findings: findings, phi_sensitivity: rescan.sensitivity } : {}) };
      }
      // The message's own compare-and-set: it leaves pending_approval once (the pipeline then writes the outbox).
      if ((await held.move(tx, m.id, 'approve', { ...cols, updated_at: at })) !== 1) throw messageMoved();
      if (diff.length > 0) await held.reindex(tx, m, before, after);
      await held.note(tx, m.id, at, 'approved', {
        approval_id: a.id,
        by: ctx.principal.id,
        edits: diff,
        ...(category === m.category ? {} : { category }),
      });
      await guard.recordIn(
        tx,
        ctx,
        'email.approved',
        { type: 'email', id: m.id },
        {
          approval_id: a.id,
          edits: diff,
          signature,
          has_comment: !!body.comment,
          ...(body.comment ? { comment_hash: sha256Hex(body.comment) } : {}),
          ...(category ? { category } : {}),
          ...(category === m.category ? {} : { category_before: m.category }),
          ...(rescan
            ? { phi: { rescanned: true, sensitivity: rescan.sensitivity, types: [...new Set(rescan.findings.map((f) => f.type))].sort() } }
            : {}),
        },
        msg.content_hash,
      );
      // Signed by the delivery worker, with this reviewer as approved_by in X-Agent-Identity.
      await held.queue(tx, msg, after, mailbox);
      return {
        id: m.id,
        status: 'queued',
        thread_id: m.thread_id,
        approval: approvalView(ring, await decided(tx, a.id), msg),
      };
    };
    let r: Awaited<ReturnType<typeof approveIn>>;
    try {
      r = await auditLoss(ctx, 'email.approved', id, () => guard.change(ctx, 'email.approved', target(id), approveIn));
    } catch (e) {
      if (refusal) {
        const c: { code: string; recipients: number; category?: string } = refusal;
        // The approval's transaction rolled back: the refusal is recorded on its own (45 CFR 164.312(b)).
        await audit.recordAlone({
          action: 'email.approved',
          actor: actorOf(ctx),
          target: target(id),
          outcome: 'denied',
          requestId: ctx.requestId,
          clientIp: ctx.clientIp,
          details:
            c.code === 'no_consent'
              ? { code: 'no_consent', status: 422, refused_recipients: c.recipients }
              : { code: c.code, status: 422, category: c.category, held_recipients: c.recipients },
        });
      }
      throw e;
    }
    onQueued?.();
    return r;
  };

  /**
   * Rejects a held message with a required comment the agent reads on
   * GET /v1/emails/{id}. Throws like approve (409 approval_decided when
   * another reviewer or process decided first: exactly one decision wins,
   * and the loser is audited `denied`). Audits email.rejected with the
   * comment's hash only.
   */
  const reject = (ctx: RequestContext, id: string, comment: string) =>
    auditLoss(ctx, 'email.rejected', id, () =>
      guard.change(ctx, 'email.rejected', target(id), async (tx) => {
        requireReviewer(ctx);
        const { a, m } = await load(tx, ctx, id);
        const at = now();
        const reason = { code: 'rejected_by_reviewer' };
        const signature = signatureOf(ctx, 'rejected', at);
        await decideOnce(tx, a.id, {
          status: 'rejected',
          decided_at: at,
          decided_by: ctx.principal.id,
          signature: JSON.stringify(signature),
          decision_reason: JSON.stringify(reason),
          comment_sealed: seal(ring, comment, approvalAad(a)),
        });
        // A rejected inbound message stays withheld from the agent as `quarantined` (inbound has no `rejected`); never dropped.
        const transition = a.direction === 'inbound' ? 'withhold' : 'reject';
        const status = held.statusAfter(transition);
        const moved = await held.move(tx, m.id, transition, {
          status_reason: JSON.stringify({ ...reason, approval_id: a.id }),
          updated_at: at,
        });
        if (moved !== 1) throw messageMoved();
        await held.note(tx, m.id, at, 'rejected', { approval_id: a.id, by: ctx.principal.id, reason });
        await guard.recordIn(
          tx,
          ctx,
          'email.rejected',
          { type: 'email', id: m.id },
          { approval_id: a.id, reason, signature, comment_hash: sha256Hex(comment) },
        );
        return {
          id: m.id,
          status,
          thread_id: m.thread_id,
          approval: approvalView(ring, await decided(tx, a.id), m),
        };
      }),
    );

  /**
   * Rejects every pending approval past its expiry (MAILWARD_APPROVAL_TTL) with
   * reason `expired`, as the system. Each in its own transaction, guarded by
   * `status = 'pending'` so concurrent sweepers and reviewers never both win.
   * Audits email.expired. Returns how many expired.
   */
  const expireDue = async (limit = 100): Promise<number> => {
    const at = now();
    const due = await dueApprovals(db, at, limit);
    let n = 0;
    for (const a of due) {
      const done = await db.transaction().execute(async (tx) => {
        const reason = { code: 'expired' };
        if (!(await decidePendingApproval(tx, a.id, { status: 'rejected', decided_at: at, decision_reason: JSON.stringify(reason) })))
          return false;
        // An inbound message nobody released stays withheld as `quarantined`.
        await held.move(tx, a.message_id, a.direction === 'inbound' ? 'expireInbound' : 'expire', {
          status_reason: JSON.stringify({ ...reason, approval_id: a.id }),
          updated_at: at,
        });
        await held.note(tx, a.message_id, at, 'expired', { approval_id: a.id, reason });
        const mailbox = await tx.selectFrom('mailboxes').selectAll().where('id', '=', a.mailbox_id).executeTakeFirst();
        const agent = mailbox ? await repo.agent(tx, a.org_id, mailbox.agent_id) : undefined;
        const org = await repo.org(tx, a.org_id);
        const chain = agent && org ? await repo.agentChain(tx, agent, org.name) : [];
        await audit.record(tx, {
          action: 'email.expired',
          actor: { ...systemActor(a.org_id), chain },
          target: { type: 'email', id: a.message_id },
          details: { approval_id: a.id, reason },
        });
        return true;
      });
      if (done) n++;
    }
    return n;
  };

  /** Whether a human may see monitored traffic and approvals (reviewers and admins). */
  const canReview = (ctx: RequestContext) => hasRole(ctx.principal, 'reviewer') || hasRole(ctx.principal, 'admin');

  // Counted after the commit only: a decision that lost (409) or failed is not a decision.
  const countedApprove = async (ctx: RequestContext, id: string, body: DecisionInput) => {
    const r = await approve(ctx, id, body);
    metrics?.approvalDecided(r.status === 'received' ? 'released' : 'approved');
    return r;
  };
  const countedReject = async (...args: Parameters<typeof reject>) => {
    const r = await reject(...args);
    metrics?.approvalDecided('rejected');
    return r;
  };
  const countedExpire = async (limit?: number) => {
    const n = await expireDue(limit);
    for (let i = 0; i < n; i++) metrics?.approvalDecided('expired');
    return n;
  };

  /**
   * `mailward serve`, on the sweeps leader only (store/notify.ts SWEEPS_ROLE): expires approvals as they come due.
   * Between sweeps it sleeps until the next pending approval's expiry (one read), at least `minMs` (expiry needs
   * no sub-second precision: at most one sweep a second, as the delivery loop ran it before) and at most `maxMs`
   * (an approval decided or created since the read, in this process or another, may expire sooner than any
   * known). An idle store so costs one statement every `maxMs`, not one a second in every process. A late sweep
   * only records the state late: approve and reject refuse an expired approval themselves (approval_expired).
   */
  const startExpirySweeper = (
    opts: { logger?: { error: (o: object, msg: string) => void }; minMs?: number; maxMs?: number } = {},
  ): (() => void) => {
    const minMs = opts.minMs ?? 1000;
    const maxMs = opts.maxMs ?? 10_000;
    let stopped = false;
    let timer: NodeJS.Timeout | null = null;
    const tick = async () => {
      timer = null;
      let next: string | null = null;
      try {
        next = await nextApprovalExpiry(db);
        if (next !== null && next <= now()) {
          await countedExpire();
          next = await nextApprovalExpiry(db);
        }
      } catch (e) {
        opts.logger?.error({ code: isAppError(e) ? e.code : 'unexpected' }, 'expiring approvals failed');
      }
      if (stopped) return;
      const until = next === null ? maxMs : Date.parse(next) - clock.now().getTime();
      timer = setTimeout(() => void tick(), Math.min(maxMs, Math.max(minMs, until)));
      timer.unref();
    };
    timer = setTimeout(() => void tick(), 0);
    timer.unref();
    return () => {
      stopped = true;
      if (timer) clearTimeout(timer);
      timer = null;
    };
  };

  return { list, approve: countedApprove, reject: countedReject, expireDue: countedExpire, startExpirySweeper, canReview };
};

export type ApprovalsService = ReturnType<typeof createApprovalsService>;
