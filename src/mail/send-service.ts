import type { MailConfig } from './mail-config.js';
import type { AuditService } from '../audit/audit-service.js';
import { canonicalJson } from '../audit/canonical.js';
import type { Guard } from '../identity/guard.js';
import type { IdentityRepo } from '../identity/identity-repo.js';
import { actorOf, hasScope, type RequestContext, requireAnyRole } from '../identity/principal.js';
import type { Clock } from '../kernel/clock.js';
import { sha256Hex } from '../kernel/crypto/hash.js';
import type { KeyRing } from '../kernel/crypto/keyring.js';
import { AppError, conflict, forbidden, notFound, unprocessable } from '../kernel/errors.js';
import { newId } from '../kernel/ids.js';
import { decideHold } from '../oversight/hold-policy.js';
import { noConsentError } from '../phi/consent-service.js';
import { type ConsentCheck, type OutboundScreen, parsePhiPolicy, storedFindings } from '../phi/outbound-screen.js';
import type { Assessment } from '../phi/phi-context.js';
import type { Finding } from '../phi/phi-types.js';
import type { Db, Executor, Tx } from '../store/db.js';
import { isUniqueViolation } from '../store/errors.js';
import { noPart2ConsentError, part2Coverage } from '../phi/part2-consents.js';
import { liveGrant } from '../identity/grants-service.js';
import type { MessageRecord } from '../store/records.js';
import type { MailboxesTable, MessagesTable } from '../store/schema.js';
import { safeFilename } from './header-text.js';
import type { ReplyInput, SendInput } from './mail-schemas.js';
import { visibleMailbox } from './mailbox-service.js';
import { moveMessage } from './message-lifecycle.js';
import { openContent, sealContent } from './message-store.js';
import {
  addMessageEvent,
  holdMessage,
  insertMessage,
  messageByMessageId,
  messageInMailbox,
  messageRow,
  messageState,
  revisionOfMessage,
} from './messages-repo.js';
import type { MessageContent } from './mime.js';
import type { OutboundPipeline } from './outbound-pipeline.js';
import { emailTarget, isContentHidden, messageHeld, visibleMessage } from './read-service.js';
import { decidePendingApproval, insertPendingApproval } from '../oversight/approvals-repo.js';
import { cancelPendingJobs, wasHandedOver } from '../queue/outbox-repo.js';
import type { PreparedTemplate, TemplatesService } from '../templates/templates-service.js';

type Deps = {
  db: Db;
  ring: KeyRing;
  guard: Guard;
  repo: IdentityRepo;
  clock: Clock;
  pipeline: OutboundPipeline;
  /** PHI scan and consent checks. */
  screen: OutboundScreen;
  /** For the one event a refused send leaves: its transaction rolled back. */
  audit: Pick<AuditService, 'recordAlone'>;
  config: Pick<MailConfig, 'smtp' | 'approvalTtlSeconds'>;
  /** Called after a commit that queued mail: wakes the delivery worker. */
  onQueued?: () => void;
  /** Template sends (`template_id` + `slots`): rendering and the template's hold facts. */
  templates?: Pick<TemplatesService, 'prepare'>;
};

/** A send body with its content known (a template send, once rendered). */
type Drafted = SendInput & { subject: string };

const IDEMPOTENCY_TTL_MS = 24 * 3600 * 1000;

// RFC 5322 3.6.4: msg-id = "<" id-left "@" id-right ">".
const MSG_ID_RE = /^<[^<>\s@]+@[^<>\s@]+>$/;

const requireSender = (ctx: RequestContext) => {
  const p = ctx.principal;
  if (p.type !== 'agent') throw forbidden('agent_required', 'Only an agent key with mail:send can send; humans review.');
  if (!hasScope(p, 'mail:send')) throw forbidden('scope_required', 'This key lacks the mail:send scope.');
};

/** Rough size of the MIME message before composing (base64 grows by 4/3), to refuse early. */
const estimateSize = (c: MessageContent) =>
  8192 +
  Buffer.byteLength(c.subject) +
  Buffer.byteLength(c.text ?? '') * 1.1 +
  Buffer.byteLength(c.html ?? '') * 1.1 +
  c.attachments.reduce((n, a) => n + a.content_base64.length * 1.03, 0);

/** The message holds 42 CFR Part 2 information: the judgement says so, or a span is of type part2. */
const isPart2 = (d: { findings: Finding[]; assessment: Assessment }) => d.assessment.part2 || d.findings.some((f) => f.type === 'part2');

/** 422 no_consent with the category: the organisation refuses what a recipient's consent does not cover (names no address). */
const categoryRefusedError = (category: string, recipientIndex: number) =>
  new AppError('no_consent', 422, `A recipient's consent does not cover the category ${category}; nothing was sent.`, {
    extra: { category, recipient_index: recipientIndex },
  });

export const createSendService = ({ db, ring, guard, repo, clock, pipeline, screen, audit, config, onQueued, templates }: Deps) => {
  const now = () => clock.now().toISOString();

  const threadingFor = async (tx: Executor, mailbox: MailboxesTable, inReplyTo: string | undefined) => {
    if (!inReplyTo) return { threadId: newId('thread'), inReplyTo: null, references: [] as string[] };
    let parent: MessageRecord | undefined;
    if (/^msg_[0-9a-f]{32}$/.test(inReplyTo)) {
      parent = await messageInMailbox(tx, mailbox.id, inReplyTo);
      if (!parent) throw notFound('email');
    } else {
      if (!MSG_ID_RE.test(inReplyTo))
        throw new AppError('invalid_in_reply_to', 400, 'in_reply_to must be an email id (msg_...) or a Message-ID like <id@domain>.');
      parent = await messageByMessageId(tx, mailbox, inReplyTo);
      if (!parent) return { threadId: newId('thread'), inReplyTo, references: [inReplyTo] };
    }
    // RFC 5322 3.6.4: References = parent's References (or In-Reply-To) + parent's Message-ID.
    const refs = [...parent.references_ids, parent.message_id].slice(-20);
    return { threadId: parent.thread_id, inReplyTo: parent.message_id, references: refs };
  };

  /**
   * The rejected outbound message a revision replaces: the caller's mailbox, status `rejected`, not revised yet.
   * Throws 404 email, 409 not_revisable (any other status or direction) / already_revised.
   */
  const revisable = async (ex: Executor, mailbox: MailboxesTable, id: string) => {
    const m = await messageInMailbox(ex, mailbox.id, id);
    if (!m) throw notFound('email');
    if (m.direction !== 'outbound' || m.status !== 'rejected')
      throw conflict(
        'not_revisable',
        `Only a rejected outbound message can be revised; this one is ${m.direction === 'outbound' ? m.status : 'inbound'}.`,
      );
    const later = await revisionOfMessage(ex, m.id);
    if (later) throw conflict('already_revised', `This message was revised already by ${later}; revise that one.`);
    return m;
  };

  /** Threading of a revision: the rejected message's thread and parent (or an explicit in_reply_to), never the rejected message. */
  const revisionThreading = async (ex: Executor, mailbox: MailboxesTable, rejected: MessageRecord, inReplyTo: string | undefined) => {
    const parent = inReplyTo ?? rejected.in_reply_to ?? undefined;
    if (parent === rejected.id || parent === rejected.message_id)
      throw unprocessable(
        'revision_replies_to_rejected',
        'A revision cannot reply to the rejected message it replaces: that message was never sent.',
      );
    const t = parent
      ? await threadingFor(ex, mailbox, parent)
      : { threadId: rejected.thread_id, inReplyTo: null, references: [] as string[] };
    return { ...t, threadId: rejected.thread_id, references: t.references.filter((r) => r !== rejected.message_id) };
  };

  /** Everything about a new message that needs no transaction: id, content, threading, the row to insert. */
  const draft = async (ex: Executor, ctx: RequestContext, mailbox: MailboxesTable, body: Drafted, tpl: PreparedTemplate | null) => {
    const at = now();
    const id = newId('message');
    const org = await repo.org(ex, mailbox.org_id);
    if (!org) throw notFound('organization');
    const content: MessageContent = {
      from: { name: mailbox.display_name, address: mailbox.address },
      to: body.to.map((a) => a.toLowerCase()),
      cc: (body.cc ?? []).map((a) => a.toLowerCase()),
      bcc: (body.bcc ?? []).map((a) => a.toLowerCase()),
      subject: body.subject,
      text: body.text ?? null,
      html: body.html ?? null,
      // Stored as they are sent: without a path or anything the name rules forbid, like inbound names when served.
      attachments: (body.attachments ?? []).map((a) => ({ ...a, filename: safeFilename(a.filename) })),
    };
    if (estimateSize(content) > config.smtp.maxMessageBytes) {
      throw new AppError('message_too_large', 413, `The message would be larger than ${config.smtp.maxMessageBytes} bytes.`);
    }
    if (body.on_behalf_of && !body.category)
      throw unprocessable('category_required', 'A message sent on behalf of a clinician names its category (the grant covers categories).');
    const revised = body.revision_of ? await revisable(ex, mailbox, body.revision_of) : null;
    // A revision stays in the rejected message's thread and answers what it answered; the rejected message itself
    // was never sent, so no header of the revision names it (In-Reply-To, References).
    const t = revised ? await revisionThreading(ex, mailbox, revised, body.in_reply_to) : await threadingFor(ex, mailbox, body.in_reply_to);
    // Subject, bodies and text attachments are scanned before anything is stored.
    const scan = await screen.scan(content, org.domain, org.name);
    const sealed = sealContent(ring, { org_id: mailbox.org_id, mailbox_id: mailbox.id, id }, content);
    const row = messageRow({
      id,
      orgId: mailbox.org_id,
      mailboxId: mailbox.id,
      direction: 'outbound',
      status: 'pending_approval',
      threadId: t.threadId,
      messageId: `<${id}@${org.domain}>`,
      inReplyTo: t.inReplyTo,
      references: t.references,
      createdBy: { type: ctx.principal.type, id: ctx.principal.id },
      contentSealed: sealed.sealed,
      contentHash: sealed.hash,
      tags: body.tags ?? [],
      oversightMode: mailbox.oversight_mode,
      isRead: true,
      at,
      phiFindings: storedFindings(scan.findings),
      phiSensitivity: scan.sensitivity,
      category: body.category ?? null,
      revisionOf: revised?.id ?? null,
      // Part 2 content is marked as the system's, so approval re-checks its consents and delivery adds the 2.32 notice.
      systemTags: scan.part2 || scan.findings.some((f) => f.type === 'part2') ? ['part2'] : [],
      template: tpl ? { id: tpl.template.id, version: tpl.template.version } : null,
    });
    return {
      row,
      content,
      findings: scan.findings,
      assessment: scan,
      revised,
      onBehalfOf: body.on_behalf_of ?? null,
      template: tpl?.template ?? null,
    };
  };

  /** Writes a drafted message inside the transaction: row, idempotency key, events, audit; then holds or queues it. */
  const persist = async (
    tx: Tx,
    ctx: RequestContext,
    mailbox: MailboxesTable,
    d: {
      row: MessagesTable;
      content: MessageContent;
      findings: Finding[];
      assessment: Assessment;
      revised: MessageRecord | null;
      onBehalfOf: string | null;
      template: PreparedTemplate['template'] | null;
    },
    idem: { key: string; hash: string } | null,
    onRefused: (check: ConsentCheck, code?: string) => void,
  ) => {
    if (mailbox.oversight_mode === 'read_only') throw forbidden('mailbox_read_only', 'This mailbox is read-only: it cannot send.');
    const { row, content } = d;
    // 45 CFR 164.522(b): a recipient who refused email gets none; read in this transaction so a refusal recorded before the commit counts.
    const check = await screen.checkConsent(tx, mailbox.org_id, content, d.findings.length > 0, row.category);
    if (check.refused > 0) {
      onRefused(check);
      throw noConsentError(check.firstRefused);
    }
    const org = await repo.org(tx, mailbox.org_id);
    // The organisation chose to refuse, not hold, a message whose category a recipient's consent does not cover.
    if (check.categoryHeld > 0 && check.category && org?.consent_category_mismatch === 'refuse') {
      onRefused(check, 'no_consent_category');
      throw categoryRefusedError(check.category, check.firstCategoryHeld);
    }
    // 42 CFR 2.31: Part 2 content goes only to recipients a live Part 2 consent names (address or organisation).
    const part2 = isPart2(d);
    const p2 = part2 ? await part2Coverage(tx, mailbox.org_id, screen.recipientsOf(content), row.created_at) : null;
    if (p2 && p2.missing >= 0) {
      onRefused(check, 'no_part2_consent');
      throw noPart2ConsentError(p2.missing);
    }
    // PHI policy and unknown consent can hold a message in any mode but read_only (CONTRACT.md, oversight modes).
    const phi = screen.holdReasons(d.assessment, mailbox.oversight_mode, parsePhiPolicy(mailbox.phi_policy), check);
    const decision = decideHold({
      direction: 'outbound',
      mode: mailbox.oversight_mode,
      screenReasons: phi.reasons,
      ...(d.template
        ? { template: { approved: d.template.approved, allowedByMailbox: mailbox.allow_templates === 1, reasons: d.template.reasons } }
        : {}),
    });
    if (decision.kind === 'refuse') throw forbidden('mailbox_read_only', 'This mailbox is read-only: it cannot send.');
    const reasons = decision.kind === 'hold' ? decision.reasons : [];
    const id = row.id;
    const at = row.created_at;
    // Read again in this transaction: another revision may have been stored since the draft (the unique index on
    // revision_of settles a race on PostgreSQL: the loser's insert fails and it answers 409 already_revised).
    const revised = d.revised ? await revisable(tx, mailbox, d.revised.id) : null;
    // Acting for a clinician needs their live grant for this category, read in this transaction (a revocation
    // committed before it counts: 403 no_grant). The clinician and NPI go into the row, the audit event and the header.
    let onBehalf: { id: string; name: string; npi: string | null; category: string; grant_id: string } | null = null;
    if (d.onBehalfOf) {
      const g = await liveGrant(tx, mailbox.org_id, mailbox.agent_id, d.onBehalfOf, row.category ?? '', row.created_at);
      if (!g) throw forbidden('no_grant', 'No live grant lets this agent send for that clinician in this category.');
      onBehalf = {
        id: g.clinician.id,
        name: g.clinician.name,
        npi: g.clinician.npi ?? null,
        category: row.category!,
        grant_id: g.grant.id,
      };
      row.on_behalf_of = JSON.stringify(onBehalf);
    }
    // Sent through an OAuth token: the human who granted it goes into the identity header's chain (outbound-pipeline.ts).
    const granted = ctx.principal.oauth;
    if (granted) {
      row.granted_by = JSON.stringify({
        id: granted.human.id,
        name: granted.human.name,
        client_id: granted.clientId,
        grant_id: granted.grantId,
      });
    }
    // Recorded first so the message row keeps the event's id: its delivery receipt names the event by id
    // (receipt-event.ts) instead of looking it up by target in both audit tables. Same transaction, same outcome.
    const submitted = await guard.recordIn(
      tx,
      ctx,
      'email.submitted',
      emailTarget(id),
      {
        mailbox_id: mailbox.id,
        oversight_mode: mailbox.oversight_mode,
        recipients: content.to.length + content.cc.length + content.bcc.length,
        attachments: content.attachments.length,
        thread_id: row.thread_id,
        ...(row.category ? { category: row.category } : {}),
        // The chain of revisions is in the log: each submission names the rejected message it replaces.
        ...(revised ? { revision_of: revised.id, revision_of_approval: revised.approval_id } : {}),
        // 42 CFR 2.32 / accounting of disclosures: which Part 2 consents authorise this disclosure (ids, no addresses).
        ...(p2 ? { part2: { consents: p2.consents } } : {}),
        ...(onBehalf
          ? { on_behalf_of: { id: onBehalf.id, npi: onBehalf.npi, category: onBehalf.category, grant_id: onBehalf.grant_id } }
          : {}),
        ...(d.template ? { template: { id: d.template.id, version: d.template.version } } : {}),
        ...(granted ? { oauth: { client_id: granted.clientId, grant_id: granted.grantId } } : {}),
        phi: { sensitivity: phi.sensitivity, types: [...new Set(d.findings.map((f) => f.type))].sort(), findings: d.findings.length },
      },
      row.content_hash,
    );
    row.submission_event_id = submitted.id;
    await insertMessage(
      tx,
      row,
      { ring, content },
      { oversight_mode: mailbox.oversight_mode, ...(revised ? { revision_of: revised.id } : {}) },
    );
    if (idem) {
      // The primary key (scope, key) makes a concurrent duplicate fail here; the caller answers with the winner.
      await tx
        .insertInto('idempotency_keys')
        .values({
          scope: mailbox.id,
          key: idem.key,
          request_hash: idem.hash,
          message_id: id,
          created_at: at,
          expires_at: new Date(clock.now().getTime() + IDEMPOTENCY_TTL_MS).toISOString(),
        })
        .execute();
    }
    await addMessageEvent(tx, id, at, 'submitted', { oversight_mode: mailbox.oversight_mode });

    if (reasons.length > 0) {
      const approvalId = newId('approval');
      const expires = new Date(clock.now().getTime() + config.approvalTtlSeconds * 1000).toISOString();
      await insertPendingApproval(tx, {
        id: approvalId,
        orgId: mailbox.org_id,
        messageId: id,
        mailboxId: mailbox.id,
        direction: 'outbound',
        reasons,
        createdAt: at,
        expiresAt: expires,
        revisionOf: revised?.approval_id ?? null,
      });
      await holdMessage(tx, row, { approvalId, reasons, at, expiresAt: expires, statusReason: { code: 'held', reasons } });
      await addMessageEvent(tx, id, at, 'held', { approval_id: approvalId, reasons, expires_at: expires });
      await guard.recordIn(tx, ctx, 'email.held', emailTarget(id), { approval_id: approvalId, reasons, expires_at: expires });
      return { id, status: 'pending_approval', thread_id: row.thread_id, queued: false };
    }
    // Signing happens in the delivery worker: accepting stays cheap (p99 accept latency).
    await pipeline.write(tx, row, await pipeline.plan(tx, row, content, mailbox, org ? { org } : {}));
    return { id, status: 'queued', thread_id: row.thread_id, queued: true };
  };

  const prepareTemplate = (ctx: RequestContext, templateId: string, slots: Record<string, string>) => {
    if (!templates) throw new AppError('templates_unavailable', 501, 'Template sends are not wired in this process.');
    return templates.prepare(db, ctx, templateId, slots);
  };

  const replayOf = async (mailboxId: string, key: string, hash: string) => {
    const hit = await db
      .selectFrom('idempotency_keys')
      .selectAll()
      .where('scope', '=', mailboxId)
      .where('key', '=', key)
      .executeTakeFirst();
    if (!hit || hit.expires_at <= now()) return null;
    if (hit.request_hash !== hash)
      throw conflict('idempotency_key_reused', 'This Idempotency-Key was used with a different request in the last 24 hours.');
    const m = await messageState(db, hit.message_id);
    if (!m) throw new AppError('internal', 500, 'The message of an idempotency key is missing.');
    return { id: m.id, status: m.status, thread_id: m.thread_id };
  };

  /**
   * Submits an outbound message from the caller's own mailbox. Throws 403
   * agent_required / scope_required / mailbox_read_only, 404 mailbox (not the
   * caller's), 409 idempotency_key_reused, 413 message_too_large, 422
   * no_consent (a recipient refused email: nothing is stored but a `denied`
   * `email.submitted` event with counts, never addresses). Writes the sealed
   * message with its PHI findings, `email.submitted` (content_hash, PHI
   * types), then either an approval and `email.held` (oversight mode, PHI
   * policy or unknown consent plus PHI), or outbox jobs.
   */
  const send = async (ctx: RequestContext, mailboxId: string, body: SendInput, idempotencyKey?: string) => {
    const hash = idempotencyKey ? sha256Hex(canonicalJson({ op: 'send', mailboxId, body })) : '';
    const target = { type: 'mailbox', id: mailboxId };
    let refusal: ConsentCheck | null = null;
    let refusalCode = 'no_consent';
    const attempt = async () => {
      if (idempotencyKey) {
        const mb = await db.selectFrom('mailboxes').select(['id', 'agent_id']).where('id', '=', mailboxId).executeTakeFirst();
        if (mb && ctx.principal.type === 'agent' && mb.agent_id === ctx.principal.id) {
          const replay = await replayOf(mailboxId, idempotencyKey, hash);
          if (replay) return { ...replay, queued: false };
        }
      }
      // Draft (seal, thread) before the transaction, so the store's writer is held only for the writes.
      const mailbox = await guard.read(ctx, 'email.submitted', target, async () => {
        requireSender(ctx);
        const m = await visibleMailbox(db, ctx, mailboxId);
        if (m.oversight_mode === 'read_only') throw forbidden('mailbox_read_only', 'This mailbox is read-only: it cannot send.');
        return m;
      });
      // A template send is rendered from its approved version first (README "Templates and bulk sends").
      const templateId = body.template_id;
      const tpl = templateId
        ? await guard.read(ctx, 'email.submitted', target, () => prepareTemplate(ctx, templateId, body.slots ?? {}))
        : null;
      const drafted: Drafted = tpl
        ? {
            ...body,
            subject: tpl.content.subject,
            text: tpl.content.text,
            ...(tpl.content.html === null ? {} : { html: tpl.content.html }),
            category: body.category ?? (tpl.category as SendInput['category']) ?? undefined,
          }
        : { ...body, subject: body.subject ?? '' };
      const d = await draft(db, ctx, mailbox, drafted, tpl);
      return guard.change(
        ctx,
        'email.submitted',
        target,
        async (tx) => {
          // Decide under the mailbox as it is now (its mode may have changed since the draft).
          const fresh = await visibleMailbox(tx, ctx, mailboxId);
          if (idempotencyKey)
            await tx
              .deleteFrom('idempotency_keys')
              .where('scope', '=', mailboxId)
              .where('key', '=', idempotencyKey)
              .where('expires_at', '<=', now())
              .execute();
          return persist(
            tx,
            ctx,
            fresh,
            { ...d, row: { ...d.row, oversight_mode: fresh.oversight_mode } },
            idempotencyKey ? { key: idempotencyKey, hash } : null,
            (c, code) => {
              refusal = c;
              refusalCode = code ?? 'no_consent';
            },
          );
          // Sends arriving together share one commit (each in its own savepoint, answered after the shared COMMIT):
          // the transaction awaits only queries on `tx`, and on a deadlock between two processes' groups each send is
          // retried alone (store/db.ts createGroupCommit).
        },
        { groupCommit: true },
      );
    };
    let r: { id: string; status: string; thread_id: string; queued: boolean };
    try {
      r = await attempt();
    } catch (e) {
      if (refusal) {
        const c: ConsentCheck = refusal;
        // The send's transaction rolled back: the refusal is recorded on its own (45 CFR 164.312(b)).
        await audit.recordAlone({
          action: 'email.submitted',
          actor: actorOf(ctx),
          target,
          outcome: 'denied',
          requestId: ctx.requestId,
          clientIp: ctx.clientIp,
          details: { code: refusalCode, status: 422, refused_recipients: c.refused },
        });
        throw e;
      }
      if (body.revision_of && isUniqueViolation(e) && !idempotencyKey)
        throw conflict('already_revised', 'This message was revised already by another request; revise that one.');
      if (!(idempotencyKey && isUniqueViolation(e))) throw e;
      // A concurrent twin won the key: answer with its message (or 409 if the bodies differ).
      const replay = await replayOf(mailboxId, idempotencyKey, hash);
      if (!replay) throw e;
      r = { ...replay, queued: false };
    }
    if (r.queued) onQueued?.();
    return { id: r.id, status: r.status, thread_id: r.thread_id };
  };

  /**
   * Replies to a message of the caller's mailbox: to its sender (inbound) or
   * its recipients (outbound); `reply_all` keeps cc. Same errors and writes as send.
   */
  const reply = async (ctx: RequestContext, emailId: string, body: ReplyInput, idempotencyKey?: string) => {
    const { m, mailbox } = await guard.read(ctx, 'email.submitted', emailTarget(emailId), async () => {
      requireSender(ctx);
      const found = await visibleMessage(db, ctx, emailId);
      // A reply would copy the held message's subject and sender into the agent's own mail.
      if (isContentHidden(ctx.principal, found.m)) throw messageHeld();
      return found;
    });
    const c = openContent(ring, m, m.content_sealed);
    const own = mailbox.address.toLowerCase();
    const to = m.direction === 'inbound' ? [c.from.address] : c.to;
    const cc = body.reply_all
      ? [...(m.direction === 'inbound' ? c.to : []), ...c.cc].filter((a) => a.toLowerCase() !== own && !to.includes(a))
      : [];
    const subject = /^re:/i.test(c.subject) ? c.subject : `Re: ${c.subject}`.slice(0, 998);
    const content = body.template_id
      ? { template_id: body.template_id, slots: body.slots ?? {} }
      : { subject, text: body.text, html: body.html };
    return send(
      ctx,
      mailbox.id,
      {
        to,
        cc: cc.length > 0 ? cc : undefined,
        ...content,
        in_reply_to: m.id,
        category: body.category,
        revision_of: body.revision_of,
        on_behalf_of: body.on_behalf_of,
      },
      idempotencyKey,
    );
  };

  /**
   * Cancels an outbound message not yet handed to SMTP (`pending_approval`,
   * `queued`, `deferred`): the sending agent (mail:send) or an admin. Throws
   * 403 scope_required / role_required, 404 email (not the caller's), 409
   * not_cancellable (inbound, being sent, partly or fully delivered, or final).
   * Writes status `cancelled`, its pending outbox jobs `failed` (last_code
   * `cancelled`), a pending approval closed as rejected (reason `cancelled`), a
   * `cancelled` event and `email.cancelled`, in one transaction. The approval
   * is closed first (a reviewer's decision locks it first too), then the outbox
   * rows are written: on PostgreSQL a worker's claim (SKIP LOCKED) then
   * skips them, and a job already claimed makes the cancel answer 409.
   */
  const cancel = (ctx: RequestContext, emailId: string) =>
    guard.change(ctx, 'email.cancelled', emailTarget(emailId), async (tx) => {
      const p = ctx.principal;
      if (p.type === 'agent') requireSender(ctx);
      else requireAnyRole(ctx, ['admin'], 'email');
      const { m } = await visibleMessage(tx, ctx, emailId);
      const notCancellable = () =>
        conflict(
          'not_cancellable',
          `A message that is ${m.direction === 'inbound' ? 'inbound' : m.status} cannot be cancelled; only pending_approval, queued and deferred outbound messages can.`,
        );
      if (m.direction !== 'outbound' || !['pending_approval', 'queued', 'deferred'].includes(m.status)) throw notCancellable();
      const at = now();
      // The approval first, in the order reviewers' decisions lock (approval, then message): on PostgreSQL a
      // cancel racing an approval waits for it instead of deadlocking, then sees the outbox rows it wrote.
      let approvalId: string | null = null;
      if (m.approval_id) {
        const closed = await decidePendingApproval(tx, m.approval_id, {
          status: 'rejected',
          decided_at: at,
          decided_by: p.id,
          decision_reason: JSON.stringify({ code: 'cancelled' }),
        });
        if (closed) approvalId = m.approval_id;
      }
      const jobsCancelled = await cancelPendingJobs(tx, m.id, at);
      // Any job in SMTP now or done means (part of) the message was handed over: too late.
      if (await wasHandedOver(tx, m.id)) throw notCancellable();
      const moved = await moveMessage(tx, m.id, 'cancel', {
        status_reason: JSON.stringify({ code: 'cancelled', by: p.id }),
        updated_at: at,
      });
      if (moved === 0) throw notCancellable();
      const details = { previous_status: m.status, outbox_jobs_cancelled: jobsCancelled, approval_closed: approvalId };
      await addMessageEvent(tx, m.id, at, 'cancelled', { by: p.id, ...details });
      await guard.recordIn(tx, ctx, 'email.cancelled', emailTarget(m.id), details, m.content_hash);
      return { id: m.id, status: 'cancelled', thread_id: m.thread_id };
    });

  return { send, reply, cancel };
};

export type SendService = ReturnType<typeof createSendService>;
