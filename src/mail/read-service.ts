import { canonicalJson } from '../audit/canonical.js';
import type { AuditService } from '../audit/audit-service.js';
import type { Guard } from '../identity/guard.js';
import { hasRole, hasScope, type RequestContext } from '../identity/principal.js';
import type { Clock } from '../kernel/clock.js';
import { sha256Hex } from '../kernel/crypto/hash.js';
import type { KeyRing } from '../kernel/crypto/keyring.js';
import { forbidden, notFound } from '../kernel/errors.js';
import type { Db, Dialect, Executor } from '../store/db.js';
import { safeFilename } from './header-text.js';
import { assertSearchCriterion, type ReadFilters, type SearchFilters } from './mail-filters.js';
import { createMailScan, type Unreadable } from './mail-scan.js';
import { visibleMailbox } from './mailbox-service.js';
import { markRead, messageInOrg, setAgentTags, threadScanPage } from './messages-repo.js';
import { attachmentFromRaw } from './mime.js';
import { messageAad, openContent, openRaw } from './message-store.js';
import { open } from '../kernel/crypto/envelope.js';
import { emailTarget, fullView, heldView, isContentHidden, type Summary, summaryOf, tagFields } from './message-views.js';

type Deps = { db: Db; dialect: Dialect; ring: KeyRing; guard: Guard; clock: Clock; audit: Pick<AuditService, 'record'> };

/** Agents read with mail:read or mail:send (their own mail's status); humans with admin or reviewer. */
export const requireReader = (ctx: RequestContext) => {
  const p = ctx.principal;
  if (p.type === 'agent' && !hasScope(p, 'mail:read') && !hasScope(p, 'mail:send'))
    throw forbidden('scope_required', 'This key lacks the mail:read scope.');
};

/** A message of a mailbox the caller may see, with that mailbox; 404 otherwise (CONTRACT.md: never 403). */
export const visibleMessage = async (ex: Executor, ctx: RequestContext, id: string) => {
  const m = await messageInOrg(ex, ctx.principal.orgId, id);
  if (!m) throw notFound('email');
  const mailbox = await visibleMailbox(ex, ctx, m.mailbox_id).catch(() => {
    throw notFound('email');
  });
  return { m, mailbox };
};

/** The message held from the agent: 403 `message_held` (audited as denied), whatever the attachment index, so the count does not leak. */
export const messageHeld = () =>
  forbidden('message_held', 'This inbound message is held for review; a reviewer must release it before its content can be read.');

// The names the rest of the code reads from here (STYLE.md, Module shape: one service, its parts by role).
export type { ReadFilters } from './mail-filters.js';
export { SCAN_BUDGET, SCAN_BYTES, SCAN_CHUNK } from './mail-scan.js';
export { emailTarget, isContentHidden, tagFields } from './message-views.js';

// RFC 5987 3.2.1 attr-char: everything else is percent-encoded in filename*.
const rfc5987 = (s: string) => encodeURIComponent(s).replace(/['()*]/g, (ch) => `%${ch.charCodeAt(0).toString(16).toUpperCase()}`);

// One sanitiser for inbound names when served and outbound names when stored and sent.
export { safeFilename };

/** RFC 6266: `attachment` always (never rendered inline), an ASCII fallback and the exact name in filename* (RFC 8187). */
export const contentDisposition = (name: string) => {
  const safe = safeFilename(name);
  const ascii = safe.replace(/[^\x20-\x7e]/g, '_').replace(/["\\;%]/g, '_');
  return `attachment; filename="${ascii}"; filename*=UTF-8''${rfc5987(safe)}`;
};

const MIME_RE = /^[a-z0-9][a-z0-9!#$&^_.+-]*\/[a-z0-9][a-z0-9!#$&^_.+-]*$/i;

/** The stored content type when it is a plain MIME type (inbound ones come from the sender), else application/octet-stream. */
export const safeContentType = (t: string) => (MIME_RE.test(t) && t.length <= 127 ? t.toLowerCase() : 'application/octet-stream');

/**
 * SHA-256 of the search criteria for the audit log: the query itself may hold
 * PHI (a patient's name) and is never stored (45 CFR 164.312(b) logs the
 * access; 164.502(b) minimum necessary). A short query can be confirmed by
 * guessing, so the hash is for correlation, not secrecy.
 */
export const queryHash = (mailboxId: string, q: { q?: string; from?: string; subject?: string }) =>
  sha256Hex(`mailward/search-query/v1|${mailboxId}|${canonicalJson({ q: q.q ?? null, from: q.from ?? null, subject: q.subject ?? null })}`);

export const createReadService = ({ db, dialect, ring, guard, clock, audit }: Deps) => {
  const { withContent, openOrSkip, recordUnreadable, scan, needsContent, needlesOf, matchContent } = createMailScan({
    dialect,
    ring,
    audit,
  });
  const now = () => clock.now().toISOString();

  /**
   * Reads one message. Agents: an inbound message not yet released (gated_all)
   * answers only its existence (`content_hidden: true`); opening a released
   * inbound message marks it read. Reviewers' reads never change the agent's
   * unread state. Throws 403 scope_required, 404. Audits `email.read` with the
   * content_hash of what was shown (45 CFR 164.312(b)).
   */
  const get = (ctx: RequestContext, id: string) =>
    guard.change(ctx, 'email.read', emailTarget(id), async (tx) => {
      requireReader(ctx);
      const { m } = await visibleMessage(tx, ctx, id);
      const hidden = isContentHidden(ctx.principal, m);
      const opening = !hidden && ctx.principal.type === 'agent' && m.direction === 'inbound' && m.is_read === 0;
      if (opening) {
        await markRead(tx, m.id, now());
        m.is_read = 1;
      }
      const view = hidden ? await heldView(tx, m, openContent(ring, m, m.content_sealed)) : await fullView(tx, ring, m);
      await guard.recordIn(
        tx,
        ctx,
        'email.read',
        emailTarget(id),
        { mailbox_id: m.mailbox_id, direction: m.direction, content_hidden: hidden, marked_read: opening },
        hidden ? undefined : m.content_hash,
      );
      return view;
    });

  /**
   * Lists a mailbox's messages, newest first, keyset-paginated by id, with
   * filters. Held, rejected and quarantined messages are
   * listed like any other (nothing held is invisible). `from` and `subject`
   * match opened content, so such a page may stop at the scan budget
   * (`partial`). The scan runs outside a transaction (on SQLite a long one
   * would stall every other request); nothing is returned unless its
   * `email.read` event (the ids returned, never the filter values: they may
   * hold PHI) has committed. Throws 403 scope_required, 404.
   */
  const list = async (ctx: RequestContext, mailboxId: string, f: ReadFilters) => {
    const target = { type: 'mailbox', id: mailboxId };
    const r = await guard.read(ctx, 'email.read', target, async () => {
      requireReader(ctx);
      await visibleMailbox(db, ctx, mailboxId);
      const needles = needlesOf(f);
      return scan(db, mailboxId, f, needsContent(f), (m, c) => matchContent(ctx.principal, m, c, needles), ctx.principal.org.id);
    });
    const ids = r.items.map((x) => x.summary.id);
    await guard.change(ctx, 'email.read', target, async (tx) => {
      await guard.recordIn(tx, ctx, 'email.read', target, {
        message_ids: ids,
        ...(r.unreadable.length ? { unreadable: r.unreadable.length } : {}),
      });
      await recordUnreadable(tx, ctx, mailboxId, 'list', r.unreadable);
    });
    return { messages: r.items.map((x) => x.summary), next: r.next, partial: r.partial, unreadable: r.unreadable.length };
  };

  /**
   * Searches a mailbox: `q` matches the sender or subject from the start of
   * a word and the body text (HTML without tags) by whole words, combined
   * with the list filters (search-index.ts has the rule). The blind index
   * narrows the request to candidates, which are opened to confirm; a query
   * with no indexed word decrypts the mailbox's messages newest first, within
   * the scan budget per request, and pages by next_cursor. An agent finds a
   * held inbound message by its sender only.
   * Throws 400 invalid_filter (no criterion), 403, 404. Audits `email.searched`
   * with the ids returned and a hash of the criteria, never their text.
   */
  const search = async (ctx: RequestContext, mailboxId: string, f: SearchFilters) => {
    const target = { type: 'mailbox', id: mailboxId };
    const r = await guard.read(ctx, 'email.searched', target, async () => {
      requireReader(ctx);
      await visibleMailbox(db, ctx, mailboxId);
      assertSearchCriterion(f);
      const needles = needlesOf(f);
      return scan(db, mailboxId, f, true, (m, c) => matchContent(ctx.principal, m, c, needles), ctx.principal.org.id);
    });
    const ids = r.items.map((x) => x.summary.id);
    await guard.change(ctx, 'email.searched', target, async (tx) => {
      await guard.recordIn(tx, ctx, 'email.searched', target, {
        message_ids: ids,
        query_hash: queryHash(mailboxId, f),
        criteria: {
          q: Boolean(f.q),
          from: Boolean(f.from),
          subject: Boolean(f.subject),
          tag: f.tag ?? null,
          since: f.since ?? null,
          until: f.until ?? null,
        },
        examined: r.examined,
        partial: r.partial,
        unreadable: r.unreadable.length,
      });
      await recordUnreadable(tx, ctx, mailboxId, 'search', r.unreadable);
    });
    return {
      messages: r.items.map((x) => ({ ...x.summary, matched_in: x.matched_in ?? [] })),
      next: r.next,
      partial: r.partial,
      unreadable: r.unreadable.length,
    };
  };

  /**
   * A thread's messages the caller may see, oldest first (held inbound ones as sender and time only); at most 500.
   * Throws 404 when none. Audits email.read; a message whose content cannot be opened is left out, the answer
   * is `partial` with the count, and each is audited as email.unreadable (like list and search).
   */
  const thread = async (ctx: RequestContext, threadId: string) => {
    const target = { type: 'thread', id: threadId };
    const unreadable: Unreadable[] = [];
    const messages = await guard.read(ctx, 'email.read', target, async () => {
      requireReader(ctx);
      const p = ctx.principal;
      if (p.type !== 'agent' && !hasRole(p, 'admin') && !hasRole(p, 'reviewer')) throw notFound('thread');
      const rows = await threadScanPage(db, dialect, { orgId: p.orgId, threadId, agentId: p.type === 'agent' ? p.id : null });
      if (rows.length === 0) throw notFound('thread');
      const out: Summary[] = [];
      for await (const { row, sealed } of withContent(db, rows, () => true))
        if (sealed !== null) {
          const c = openOrSkip(row, sealed, unreadable);
          if (c) out.push(summaryOf(p, row, c));
        }
      return out;
    });
    await guard.change(ctx, 'email.read', target, async (tx) => {
      await guard.recordIn(tx, ctx, 'email.read', target, {
        message_ids: messages.map((m) => m.id),
        ...(unreadable.length ? { unreadable: unreadable.length } : {}),
      });
      await recordUnreadable(tx, ctx, null, 'thread', unreadable);
    });
    return { id: threadId, messages, partial: unreadable.length > 0, unreadable: unreadable.length };
  };

  /**
   * Replaces the agent tags of a message (PUT /v1/emails/{id}/tags, MCP
   * tag_email). System tags (derived from content) are kept apart and never
   * changed here; a name in `tags` that is already a system tag the caller
   * can see is not stored again (a client writing back the `tags` it read).
   * Returns the tags as the caller may see them. Throws 404. Audits
   * email.tagged with the agent tags before and after (labels, never content).
   */
  const setTags = (ctx: RequestContext, id: string, tags: string[]) =>
    guard.change(ctx, 'email.tagged', emailTarget(id), async (tx) => {
      requireReader(ctx);
      const { m } = await visibleMessage(tx, ctx, id);
      const visible = !isContentHidden(ctx.principal, m);
      const system = tagFields(m, visible).system_tags;
      const agentTags = [...new Set(tags)].filter((t) => !system.includes(t));
      await setAgentTags(tx, m.id, agentTags, now());
      await guard.recordIn(tx, ctx, 'email.tagged', emailTarget(id), { tags: agentTags, before: m.tags });
      return { id: m.id, ...tagFields({ ...m, tags: agentTags }, visible) };
    });

  /**
   * One attachment's bytes (index from GET /v1/emails/{id}), with a safe
   * content type and Content-Disposition. Throws 403 message_held (an agent
   * and a held inbound message, whatever the index), 404 (not the caller's,
   * or past the end). Audits `email.attachment.read` with the index, size and
   * the SHA-256 of the bytes, never the filename (it may name a patient).
   */
  const attachment = (ctx: RequestContext, id: string, index: number) =>
    guard.change(ctx, 'email.attachment.read', emailTarget(id), async (tx) => {
      requireReader(ctx);
      const { m } = await visibleMessage(tx, ctx, id);
      if (isContentHidden(ctx.principal, m)) throw messageHeld();
      const a = openContent(ring, m, m.content_sealed).attachments[index];
      if (!a) throw notFound('attachment');
      // Received mail keeps attachments only in its raw bytes (src/mail/mime.ts withoutAttachmentBodies).
      const fromRaw = a.raw_part !== undefined && m.raw_sealed ? await attachmentFromRaw(openRaw(ring, m, m.raw_sealed), a.raw_part) : null;
      if (a.raw_part !== undefined && !fromRaw) throw notFound('attachment');
      const bytes = fromRaw ?? Buffer.from(a.content_base64, 'base64');
      const hash = sha256Hex(bytes);
      await guard.recordIn(
        tx,
        ctx,
        'email.attachment.read',
        emailTarget(id),
        { mailbox_id: m.mailbox_id, index, size: bytes.length },
        hash,
      );
      return { bytes, contentType: safeContentType(a.content_type), contentDisposition: contentDisposition(a.filename), sha256: hash };
    });

  /**
   * The stored RFC 5322 bytes of a message (as received, or as signed and
   * sent), for verification. Throws 403 message_held (an agent and a held
   * inbound message), 404 (not the caller's, or no bytes stored). Audits
   * `email.raw.read` with the SHA-256 of the bytes (45 CFR 164.312(b)).
   */
  const raw = (ctx: RequestContext, id: string) =>
    guard.change(ctx, 'email.raw.read', emailTarget(id), async (tx) => {
      requireReader(ctx);
      const { m } = await visibleMessage(tx, ctx, id);
      if (isContentHidden(ctx.principal, m)) throw messageHeld();
      if (!m.raw_sealed) throw notFound('message bytes');
      const bytes = open(ring, m.raw_sealed, messageAad(m, 'raw'));
      await guard.recordIn(tx, ctx, 'email.raw.read', emailTarget(id), { mailbox_id: m.mailbox_id, size: bytes.length }, sha256Hex(bytes));
      return bytes;
    });

  /**
   * The RFC 5322 Message-ID of a message the caller may see (for its
   * transparency receipt, which holds only hashes). Throws 403 scope_required, 404.
   */
  const messageIdOf = (ctx: RequestContext, id: string) =>
    guard.read(ctx, 'email.receipt_read', emailTarget(id), async () => {
      requireReader(ctx);
      const { m } = await visibleMessage(db, ctx, id);
      return { message_id: m.message_id, direction: m.direction, status: m.status };
    });

  return { get, list, thread, setTags, search, attachment, raw, messageIdOf };
};

export type ReadService = ReturnType<typeof createReadService>;
export type EmailView = Awaited<ReturnType<ReadService['get']>>;
