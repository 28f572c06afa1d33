import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { createTwoFilesPatch } from 'diff';
import type { SessionState } from '../accounts/accounts-service.js';
import type { AuditReader } from '../compliance/audit-reader.js';
import type { EventFeed } from '../events/event-feed.js';
import { hasRole, type RequestContext } from '../identity/principal.js';
import type { Clock } from '../kernel/clock.js';
import { AppError, isAppError, notFound } from '../kernel/errors.js';
import type { createMailboxService } from '../mail/mailbox-service.js';
import type { createReadService } from '../mail/read-service.js';
import { QUEUE_REASONS, type ApprovalQueue } from '../oversight/approval-queue.js';
import type { ApprovalsService } from '../oversight/approvals-service.js';
import type { ReviewNotifications } from '../oversight/review-notifications.js';
import type { createConsentService } from '../phi/consent-service.js';
import { type OutboundScreen, storedFindings } from '../phi/outbound-screen.js';
import { layout, type Viewer } from './console-views.js';
import { auditEventPage, auditPage, queueParts, queuePage, type ReviewData, reviewPage } from './review-views.js';

/** What the review pages call: the same services as REST (STYLE.md: every adapter calls one service function). */
export type ReviewDeps = {
  approvals: ApprovalsService;
  queue: ApprovalQueue;
  reader: ReturnType<typeof createReadService>;
  mailboxes: ReturnType<typeof createMailboxService>;
  consent: ReturnType<typeof createConsentService>;
  screen: Pick<OutboundScreen, 'scan'>;
  auditReader: AuditReader;
  events: Pick<EventFeed, 'subscribe'>;
  notifications: Pick<ReviewNotifications, 'preference' | 'setPreference'>;
  clock: Clock;
  stepUpSeconds: number;
};

/** The console's helpers the review pages share with the sign-in pages (console-routes.ts). */
export type ConsoleKit = {
  session: (req: FastifyRequest) => Promise<SessionState | null>;
  home: (s: SessionState | null) => string;
  viewer: (s: SessionState) => NonNullable<Viewer>;
  checkCsrf: (req: FastifyRequest, s: SessionState | null, presented: string | undefined) => void;
  html: (reply: FastifyReply, body: string, status?: number) => FastifyReply;
  ctxOf: (req: FastifyRequest, s: SessionState) => RequestContext;
};

const ID = /^[a-z]{3}_[0-9a-f]{32}$/;
const emailParams = z.object({ id: z.string().regex(/^msg_[0-9a-f]{32}$/) });
const seqParams = z.object({ seq: z.coerce.number().int().min(1).max(Number.MAX_SAFE_INTEGER) });
const queueQuery = z.object({
  reason: z.enum(QUEUE_REASONS).optional().catch(undefined),
  mailbox: z.string().regex(ID).optional().catch(undefined),
  direction: z.enum(['inbound', 'outbound']).optional().catch(undefined),
  sort: z.enum(['oldest', 'newest', 'expiring']).catch('oldest'),
  cursor: z.string().max(200).optional(),
  part: z.literal('rows').optional(),
});
const auditQuery = z.object({
  actor: z
    .string()
    .regex(ID)
    .optional()
    .or(z.literal('').transform(() => undefined)),
  action: z
    .string()
    .regex(/^[a-z0-9_.]{1,80}$/)
    .optional()
    .or(z.literal('').transform(() => undefined)),
  target: z
    .string()
    .regex(/^[A-Za-z0-9_.:-]{1,100}$/)
    .optional()
    .or(z.literal('').transform(() => undefined)),
  since: z.iso
    .datetime()
    .optional()
    .or(z.literal('').transform(() => undefined)),
  until: z.iso
    .datetime()
    .optional()
    .or(z.literal('').transform(() => undefined)),
  cursor: z.string().max(200).optional(),
});
const decisionForm = z.object({
  csrf: z.string().max(200),
  approval_id: z.string().regex(/^apr_[0-9a-f]{32}$/),
  comment: z.string().trim().max(2000).optional(),
});
const editForm = decisionForm.extend({
  edited: z.literal('1').optional(),
  subject: z.string().max(998).optional(),
  text: z.string().max(1_000_000).optional(),
  html: z.string().max(2_000_000).optional(),
  to: z.string().max(10_000).optional(),
  cc: z.string().max(10_000).optional(),
});

const addresses = (s: string | undefined) =>
  (s ?? '')
    .split(',')
    .map((x) => x.trim())
    .filter((x) => x !== '');

const TEXT_PREVIEW = /^(text\/|application\/(json|xml|csv))/;
const PREVIEW_BYTES = 64 * 1024;

/**
 * The reviewer console's work pages: the queue (with a live stream of wake-ups), the review page and
 * its decisions, and the audit trail. Another organisation's message, approval or event is 404 on
 * every URL here (CONTRACT.md: never 403), because the services answer 404.
 */
export const reviewRoutes = async (app: FastifyInstance, kit: ConsoleKit, d: ReviewDeps) => {
  const { session, home, viewer, checkCsrf, html, ctxOf } = kit;

  /** The signed-in session, or a redirect to where the visitor stands in sign-in. */
  const full = async (req: FastifyRequest, reply: FastifyReply) => {
    const s = await session(req);
    if (s?.session.stage !== 'full') {
      await reply.redirect(home(s), 303);
      return null;
    }
    return s;
  };
  /** A page for roles the caller lacks answers 404, as the REST services do. */
  const pageError = (reply: FastifyReply, s: SessionState, e: unknown) => {
    if (isAppError(e) && (e.status === 404 || e.code === 'role_required')) return html(reply, auditlessNotFound(s), 404);
    throw e;
  };
  // The same answer for what does not exist and for what is not the caller's (CONTRACT.md: never 403).
  const auditlessNotFound = (s: SessionState) =>
    layout(
      'Not found',
      '<section><p>There is no such page, or it is not yours to see.</p><p><a href="/console">Back to the console</a></p></section>',
      viewer(s),
    );

  // ---- the queue ----
  const queueData = async (ctx: RequestContext, q: z.infer<typeof queueQuery>) => {
    const [page, counts, mailboxes, notify] = await Promise.all([
      d.queue.page(ctx, {
        reason: q.reason,
        mailboxId: q.mailbox,
        direction: q.direction,
        sort: q.sort,
        cursor: q.cursor,
        limit: 50,
      }),
      d.queue.counts(ctx),
      d.mailboxes.list(ctx),
      hasRole(ctx.principal, 'reviewer') ? d.notifications.preference(ctx) : Promise.resolve(null),
    ]);
    return {
      rows: page.approvals,
      next: page.next_cursor,
      counts,
      filters: { reason: q.reason, mailbox: q.mailbox, direction: q.direction, sort: q.sort },
      mailboxes: mailboxes.map((m) => ({ id: m.id, address: m.address })),
      reasons: QUEUE_REASONS,
      firstPage: q.cursor === undefined,
      notify,
    };
  };

  app.get('/console/queue', async (req, reply) => {
    const s = await full(req, reply);
    if (!s) return reply;
    const q = queueQuery.safeParse(req.query);
    if (!q.success) throw new AppError('validation_failed', 400, 'Bad queue filter.');
    try {
      const data = await queueData(ctxOf(req, s), q.data);
      if (q.data.part === 'rows') {
        const parts = queueParts(data);
        return reply.type('application/json').send({ counts: parts.counts, table: parts.table });
      }
      return html(reply, queuePage(viewer(s), data));
    } catch (e) {
      return pageError(reply, s, e);
    }
  });

  /**
   * Server-sent wake-ups of the queue: `changed` when an approval of this organisation opens or closes
   * (the domain-event log's approval.opened / approval.decided, heard after their commit). The event
   * carries nothing but its name: the page then fetches the rows with its own, audited read.
   */
  app.get('/console/queue/stream', async (req, reply) => {
    const s = await session(req);
    if (s?.session.stage !== 'full') throw new AppError('unauthorized', 401, 'Sign in first.');
    const ctx = ctxOf(req, s);
    if (!d.approvals.canReview(ctx)) throw notFound('page');
    const orgId = s.human.org_id;
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      'x-accel-buffering': 'no',
      'content-security-policy': "default-src 'none'; frame-ancestors 'none'",
    });
    res.write('retry: 5000\n\n');
    let pending: NodeJS.Timeout | null = null;
    // Wake-ups are merged: a burst of 50 holds is one `changed`.
    const changed = () => {
      if (pending) return;
      pending = setTimeout(() => {
        pending = null;
        res.write('event: changed\ndata: {}\n\n');
      }, 250);
    };
    const off = d.events.subscribe((w) => {
      if (w === '*' || (w.orgId === orgId && (w.type === 'approval.opened' || w.type === 'approval.decided'))) changed();
    });
    const ping = setInterval(() => res.write(': ping\n\n'), 25_000);
    req.raw.on('close', () => {
      off();
      clearInterval(ping);
      if (pending) clearTimeout(pending);
    });
  });

  const notifyForm = z.object({
    csrf: z.string().max(200),
    enabled: z.literal('on').optional(),
    batch_minutes: z.coerce.number().int().min(1).max(1440),
  });
  app.post('/console/notifications', async (req, reply) => {
    const s = await full(req, reply);
    if (!s) return reply;
    const f = notifyForm.safeParse(req.body ?? {});
    checkCsrf(req, s, f.success ? f.data.csrf : (req.body as { csrf?: string } | undefined)?.csrf);
    if (!f.success) throw new AppError('validation_failed', 400, 'Minutes between notices: a whole number from 1 to 1440.');
    try {
      await d.notifications.setPreference(ctxOf(req, s), { enabled: f.data.enabled === 'on', batch_minutes: f.data.batch_minutes });
    } catch (e) {
      return pageError(reply, s, e);
    }
    return reply.redirect('/console/queue#notifications', 303);
  });

  // ---- the review page ----
  const reviewData = async (ctx: RequestContext, id: string): Promise<ReviewData> => {
    const email = (await d.reader.get(ctx, id)) as unknown as ReviewData['email'] & {
      content_hidden: boolean;
      thread_id: string | null;
    };
    if (email.content_hidden) throw notFound('email');
    const previews = new Map<number, string>();
    for (const a of email.attachments) {
      if (!TEXT_PREVIEW.test(a.content_type) || a.size > PREVIEW_BYTES) continue;
      const file = await d.reader.attachment(ctx, id, a.index);
      previews.set(a.index, file.bytes.toString('utf8'));
    }
    const recipients = email.direction === 'outbound' ? [...email.to, ...email.cc] : [];
    const consents = [];
    for (const address of recipients.slice(0, 50)) {
      const c = await d.consent.get(ctx, address);
      consents.push({ address, status: c.status, categories: c.categories ?? [] });
    }
    let thread: ReviewData['thread'] = [];
    if (email.thread_id) {
      const t = await d.reader.thread(ctx, email.thread_id);
      thread = t.messages.map((m) => ({
        id: m.id,
        subject: m.subject,
        from: m.from,
        created_at: m.created_at,
        status: m.status,
        current: m.id === id,
      }));
    }
    const fa = ctx.principal.session?.secondFactorAt;
    const needsStepUp = !fa || d.clock.now().getTime() - Date.parse(fa) > d.stepUpSeconds * 1000;
    return { email, previews, consents, thread, canDecide: hasRole(ctx.principal, 'reviewer'), needsStepUp };
  };

  const showReview = async (
    req: FastifyRequest,
    reply: FastifyReply,
    s: SessionState,
    id: string,
    extra: Partial<ReviewData> = {},
    status = 200,
  ) => {
    try {
      const data = await reviewData(ctxOf(req, s), id);
      return html(reply, reviewPage(viewer(s), { ...data, ...extra }), status);
    } catch (e) {
      return pageError(reply, s, e);
    }
  };

  app.get('/console/review/:id', async (req, reply) => {
    const s = await full(req, reply);
    if (!s) return reply;
    const p = emailParams.safeParse(req.params);
    if (!p.success) return html(reply, auditlessNotFound(s), 404);
    const done = (req.query as { done?: string }).done;
    const DONE: Record<string, string> = {
      approved: 'Approved and signed; the message is queued for delivery.',
      rejected: 'Rejected and signed; the agent can read your comment.',
      released: 'Released to the agent and signed.',
    };
    return showReview(req, reply, s, p.data.id, done && DONE[done] ? { done: DONE[done] } : {});
  });

  /** A decision's failure shown on the review page; a missing step-up goes to the step-up page and back here. */
  const decisionFailed = async (req: FastifyRequest, reply: FastifyReply, s: SessionState, id: string, e: unknown) => {
    if (isAppError(e) && e.code === 'step_up_required')
      return reply.redirect(`/console/step-up?return_to=${encodeURIComponent(`/console/review/${id}`)}`, 303);
    if (isAppError(e) && e.status < 500 && e.status !== 404) return showReview(req, reply, s, id, { error: e.detail }, e.status);
    if (isAppError(e) && e.status === 404) return html(reply, auditlessNotFound(s), 404);
    throw e;
  };

  const decisionRoute = (
    path: string,
    run: (ctx: RequestContext, f: z.infer<typeof editForm>, id: string, s: SessionState) => Promise<string | undefined>,
  ) =>
    app.post(`/console/review/:id/${path}`, async (req, reply) => {
      const s = await full(req, reply);
      if (!s) return reply;
      const p = emailParams.safeParse(req.params);
      if (!p.success) return html(reply, auditlessNotFound(s), 404);
      const f = editForm.safeParse(req.body ?? {});
      checkCsrf(req, s, f.success ? f.data.csrf : undefined);
      if (!f.success) return showReview(req, reply, s, p.data.id, { error: 'The form was incomplete; try again.' }, 400);
      try {
        const done = await run(ctxOf(req, s), f.data, p.data.id, s);
        if (done === undefined) return reply;
        return reply.redirect(`/console/review/${p.data.id}?done=${done}`, 303);
      } catch (e) {
        return decisionFailed(req, reply, s, p.data.id, e);
      }
    });

  const editsOf = (f: z.infer<typeof editForm>) => ({
    subject: f.subject,
    text: f.text,
    html: f.html === undefined || f.html === '' ? undefined : f.html,
    to: f.to === undefined ? undefined : addresses(f.to),
    cc: f.cc === undefined ? undefined : addresses(f.cc),
  });

  decisionRoute('approve', async (ctx, f) => {
    const r = await d.approvals.approve(ctx, f.approval_id, {
      comment: f.comment || undefined,
      edits: f.edited === '1' ? editsOf(f) : undefined,
    });
    return r.status === 'received' ? 'released' : 'approved';
  });
  decisionRoute('reject', async (ctx, f) => {
    if (!f.comment) throw new AppError('comment_required', 422, 'A rejection needs a comment: the agent reads it.');
    await d.approvals.reject(ctx, f.approval_id, f.comment);
    return 'rejected';
  });
  decisionRoute('release', async (ctx, f) => {
    await d.approvals.approve(ctx, f.approval_id, { comment: f.comment || undefined });
    return 'released';
  });

  /**
   * The edited message before signing: the diff against what the agent wrote and a new PHI scan of the
   * edited subject, text and HTML with the same scan function the send path uses. Nothing is stored:
   * the approval itself scans again when it is signed (approvals-service.ts).
   */
  app.post('/console/review/:id/preview', async (req, reply) => {
    const s = await full(req, reply);
    if (!s) return reply;
    const p = emailParams.safeParse(req.params);
    if (!p.success) return html(reply, auditlessNotFound(s), 404);
    const f = editForm.safeParse(req.body ?? {});
    checkCsrf(req, s, f.success ? f.data.csrf : undefined);
    if (!f.success) return showReview(req, reply, s, p.data.id, { error: 'The form was incomplete; try again.' }, 400);
    try {
      const ctx = ctxOf(req, s);
      const data = await reviewData(ctx, p.data.id);
      const e = data.email;
      const fields = {
        subject: f.data.subject ?? e.subject,
        text: f.data.text ?? e.text ?? '',
        html: f.data.html ?? e.html ?? '',
        to: f.data.to ?? e.to.join(', '),
        cc: f.data.cc ?? e.cc.join(', '),
      };
      const scanned = await d.screen.scan(
        {
          to: addresses(fields.to),
          cc: addresses(fields.cc),
          bcc: [],
          subject: fields.subject,
          text: fields.text,
          html: fields.html === '' ? undefined : fields.html,
          attachments: [],
        } as never,
        ctx.principal.org.domain,
        ctx.principal.org.name,
      );
      const before = `Subject: ${e.subject}\nTo: ${e.to.join(', ')}\nCc: ${e.cc.join(', ')}\n\n${e.text ?? ''}\n${e.html ? `\n--- html ---\n${e.html}\n` : ''}`;
      const after = `Subject: ${fields.subject}\nTo: ${fields.to}\nCc: ${fields.cc}\n\n${fields.text}\n${fields.html ? `\n--- html ---\n${fields.html}\n` : ''}`;
      const diff = before === after ? '' : createTwoFilesPatch('as written', 'as edited', before, after, '', '', { context: 2 });
      return html(reply, reviewPage(viewer(s), { ...data, edit: { fields, findings: storedFindings(scanned.findings), diff } }));
    } catch (e) {
      return decisionFailed(req, reply, s, p.data.id, e);
    }
  });

  // ---- the audit trail ----
  app.get('/console/audit', async (req, reply) => {
    const s = await full(req, reply);
    if (!s) return reply;
    const q = auditQuery.safeParse(req.query);
    if (!q.success) throw new AppError('validation_failed', 400, 'Bad audit filter: ids, an action name and ISO times.');
    try {
      const r = await d.auditReader.listEvents(ctxOf(req, s), {
        actor_id: q.data.actor,
        action: q.data.action,
        target_id: q.data.target,
        since: q.data.since,
        until: q.data.until,
        cursor: q.data.cursor,
        limit: 100,
      });
      const { cursor: _c, ...filters } = q.data;
      return html(reply, auditPage(viewer(s), { events: r.events, next: r.next_cursor, filters }));
    } catch (e) {
      return pageError(reply, s, e);
    }
  });

  app.get('/console/audit/:seq', async (req, reply) => {
    const s = await full(req, reply);
    if (!s) return reply;
    const p = seqParams.safeParse(req.params);
    if (!p.success) return html(reply, auditlessNotFound(s), 404);
    try {
      const proof = await d.auditReader.proof(ctxOf(req, s), p.data.seq);
      return html(reply, auditEventPage(viewer(s), proof.event as never));
    } catch (e) {
      return pageError(reply, s, e);
    }
  });

  /** The event, its inclusion proof and the signed checkpoint, for the browser's own check (audit-verify.js). */
  app.get('/console/audit/:seq/proof', async (req, reply) => {
    const s = await session(req);
    if (s?.session.stage !== 'full') throw new AppError('unauthorized', 401, 'Sign in first.');
    const p = seqParams.safeParse(req.params);
    if (!p.success) throw notFound('audit event');
    const proof = await d.auditReader.proof(ctxOf(req, s), p.data.seq);
    return reply.type('application/json').send(proof);
  });
};
