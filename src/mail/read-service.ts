import { sql } from 'kysely';
import { canonicalJson } from '../audit/canonical.js';
import type { AuditService } from '../audit/audit-service.js';
import type { Guard } from '../identity/guard.js';
import { actorOf, hasRole, hasScope, type Principal, type RequestContext } from '../identity/principal.js';
import { parseAuthResults } from '../inbound/auth-results.js';
import type { Clock } from '../kernel/clock.js';
import { sha256Hex } from '../kernel/crypto/hash.js';
import type { KeyRing } from '../kernel/crypto/keyring.js';
import { forbidden, isAppError, notFound } from '../kernel/errors.js';
import { parseFindings } from '../phi/outbound-screen.js';
import type { Db, Dialect, Executor, Tx } from '../store/db.js';
import type { MessagesTable } from '../store/schema.js';
import { safeFilename } from './header-text.js';
import { assertSearchCriterion, type ReadFilters, type SearchFilters } from './mail-filters.js';
import { visibleMailbox } from './mailbox-service.js';
import { approvalView, openContent } from './message-store.js';
import type { MessageContent } from './mime.js';

type Deps = { db: Db; dialect: Dialect; ring: KeyRing; guard: Guard; clock: Clock; audit: Pick<AuditService, 'record'> };

export const emailTarget = (id: string) => ({ type: 'email', id });

/** Agents read with mail:read or mail:send (their own mail's status); humans with admin or reviewer. */
export const requireReader = (ctx: RequestContext) => {
  const p = ctx.principal;
  if (p.type === 'agent' && !hasScope(p, 'mail:read') && !hasScope(p, 'mail:send'))
    throw forbidden('scope_required', 'This key lacks the mail:read scope.');
};

/** A message of a mailbox the caller may see, with that mailbox; 404 otherwise (CONTRACT.md: never 403). */
export const visibleMessage = async (ex: Executor, ctx: RequestContext, id: string) => {
  const m = await ex.selectFrom('messages').selectAll().where('id', '=', id).where('org_id', '=', ctx.principal.orgId).executeTakeFirst();
  if (!m) throw notFound('email');
  const mailbox = await visibleMailbox(ex, ctx, m.mailbox_id).catch(() => {
    throw notFound('email');
  });
  return { m, mailbox };
};

/**
 * Issue 7 part 6 (`gated_all`): an inbound message a reviewer has not released
 * shows an agent only that it exists (sender, time, status and its reason),
 * never its subject, body or attachments. Only `received` is released: held
 * (`pending_approval`), `quarantined` (a failed DMARC check waiting for a
 * reviewer) and any status added later stay hidden, failing closed.
 * Reviewers and admins see everything.
 */
export const isContentHidden = (p: Principal, m: Pick<MessagesTable, 'direction' | 'status'>) =>
  p.type === 'agent' && m.direction === 'inbound' && m.status !== 'received';

/**
 * The tags a reader may see: the agent's own always; the system's (derived
 * from content: phi, part2, categories) only where the content itself is
 * visible, so a held or quarantined message tells an agent nothing of what
 * it says (45 CFR 164.502(b) minimum necessary). `tags` is the union.
 */
export const tagFields = (m: Pick<MessagesTable, 'tags' | 'system_tags'>, contentVisible: boolean) => {
  const agent = JSON.parse(m.tags) as string[];
  const system = contentVisible ? (JSON.parse(m.system_tags) as string[]) : [];
  return { tags: [...new Set([...system, ...agent])], system_tags: system, agent_tags: agent };
};

/** The message held from the agent: 403 `message_held` (audited as denied), whatever the attachment index, so the count does not leak. */
export const messageHeld = () =>
  forbidden('message_held', 'This inbound message is held for review; a reviewer must release it before its content can be read.');

export type { ReadFilters } from './mail-filters.js';

/**
 * Bounds of one list or search request whose filters need the sealed content
 * (issue 7: content is encrypted at rest, so matching decrypts): rows read per
 * chunk, messages and sealed bytes examined per request. Sealed documents are
 * fetched in batches of at most SCAN_BATCH_BYTES, so a mailbox of large
 * attachments cannot exhaust memory.
 */
export const SCAN_CHUNK = 200;
export const SCAN_BUDGET = 2000;
export const SCAN_BYTES = 64 * 1024 * 1024;
const SCAN_BATCH_BYTES = 8 * 1024 * 1024;

/** The columns a list needs, without the sealed blobs (fetched separately, in bounded batches). */
const META = [
  'id',
  'org_id',
  'mailbox_id',
  'direction',
  'status',
  'status_reason',
  'thread_id',
  'message_id',
  'tags',
  'system_tags',
  'is_read',
  'created_at',
  'auth_results',
] as const;
type Meta = Pick<MessagesTable, (typeof META)[number]>;
type MetaRow = Meta & { sealed_len: number };

/** Matching is case-insensitive and blind to runs of whitespace (wrapped lines, HTML layout). */
const fold = (s: string) => s.normalize('NFKC').toLowerCase().replace(/\s+/g, ' ');

/** Visible text of an HTML body for matching: tags, scripts and styles dropped, a few entities decoded. */
const htmlText = (html: string) =>
  html
    .replace(/<(script|style)[^>]*>[\s\S]*?<\/\1\s*>/gi, ' ')
    .replace(/<[^>]*>/g, ' ')
    .replace(/&nbsp;/gi, ' ')
    .replace(/&lt;/gi, '<')
    .replace(/&gt;/gi, '>')
    .replace(/&quot;/gi, '"')
    .replace(/&#39;|&apos;/gi, "'")
    .replace(/&amp;/gi, '&');

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
  /**
   * Size of a row's sealed content without reading it where the store allows:
   * PostgreSQL's pg_column_size reads the TOAST header only (length() would
   * detoast every document twice); SQLite reads it from the page cache.
   */
  const sealedSize = (col: 'content_sealed' | 'messages.content_sealed') =>
    (dialect === 'postgres' ? sql<number>`pg_column_size(${sql.ref(col)})` : sql<number>`length(${sql.ref(col)})`).as('sealed_len');
  const now = () => clock.now().toISOString();

  const eventsOf = async (ex: Executor, id: string) =>
    (await ex.selectFrom('message_events').selectAll().where('message_id', '=', id).orderBy('id').execute()).map((e) => ({
      at: e.at,
      type: e.type,
      details: JSON.parse(e.details) as Record<string, unknown>,
    }));

  const attachmentsOf = (c: MessageContent) =>
    c.attachments.map((a, index) => ({
      index,
      filename: a.filename,
      content_type: a.content_type,
      size: Buffer.from(a.content_base64, 'base64').length,
    }));

  const readState = (m: Pick<MessagesTable, 'is_read'>) => ({ is_read: m.is_read !== 0, unread: m.is_read === 0 });

  /** What every view of a message starts with: identity, place and status with its reason. */
  const headOf = (m: Pick<MessagesTable, 'id' | 'mailbox_id' | 'direction' | 'status' | 'status_reason'>) => ({
    id: m.id,
    mailbox_id: m.mailbox_id,
    direction: m.direction,
    status: m.status,
    status_reason: m.status_reason ? (JSON.parse(m.status_reason) as Record<string, unknown>) : null,
  });

  const fullView = async (ex: Executor, m: MessagesTable) => {
    const c = openContent(ring, m, m.content_sealed);
    const approval = m.approval_id
      ? await ex.selectFrom('approvals').selectAll().where('id', '=', m.approval_id).executeTakeFirst()
      : undefined;
    let original: Record<string, unknown> | null = null;
    if (m.original_sealed) {
      // The agent sees what a reviewer changed: its own fields before the edit.
      const o = openContent(ring, m, m.original_sealed, 'original');
      const a = approval ? approvalView(ring, approval) : null;
      original = Object.fromEntries((a?.edits ?? []).map((d) => [d.field, (o as unknown as Record<string, unknown>)[d.field]]));
    }
    return {
      ...headOf(m),
      content_hidden: false as const,
      from: c.from.address,
      from_name: c.from.name || null,
      to: c.to,
      cc: c.cc,
      bcc: c.bcc,
      subject: c.subject,
      text: c.text,
      html: c.html,
      attachments: attachmentsOf(c),
      ...tagFields(m, true),
      phi_findings: parseFindings(m.phi_findings),
      phi_sensitivity: m.phi_sensitivity,
      auth_results: parseAuthResults(m.auth_results),
      ...readState(m),
      thread_id: m.thread_id,
      message_id: m.message_id,
      in_reply_to: m.in_reply_to,
      references: JSON.parse(m.references_ids) as string[],
      oversight_mode: m.oversight_mode,
      created_at: m.created_at,
      delivered_at: m.delivered_at,
      approval: approval ? approvalView(ring, approval, m) : null,
      original,
      events: await eventsOf(ex, m.id),
    };
  };

  /** What an agent sees of a held inbound message: that it exists, its sender and time, and where its review stands. */
  const heldView = async (ex: Executor, m: MessagesTable, c: MessageContent) => {
    const a = m.approval_id
      ? await ex
          .selectFrom('approvals')
          .select(['id', 'status', 'created_at', 'expires_at'])
          .where('id', '=', m.approval_id)
          .executeTakeFirst()
      : undefined;
    return {
      ...headOf(m),
      content_hidden: true as const,
      from: c.from.address,
      ...tagFields(m, false),
      auth_results: parseAuthResults(m.auth_results),
      ...readState(m),
      thread_id: m.thread_id,
      created_at: m.created_at,
      approval: a ? { id: a.id, status: a.status, created_at: a.created_at, expires_at: a.expires_at } : null,
    };
  };

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
      const markRead = !hidden && ctx.principal.type === 'agent' && m.direction === 'inbound' && m.is_read === 0;
      if (markRead) {
        await tx.updateTable('messages').set({ is_read: 1, updated_at: now() }).where('id', '=', m.id).execute();
        m.is_read = 1;
      }
      const view = hidden ? await heldView(tx, m, openContent(ring, m, m.content_sealed)) : await fullView(tx, m);
      await guard.recordIn(
        tx,
        ctx,
        'email.read',
        emailTarget(id),
        { mailbox_id: m.mailbox_id, direction: m.direction, content_hidden: hidden, marked_read: markRead },
        hidden ? undefined : m.content_hash,
      );
      return view;
    });

  /** One row of a list, thread or search: the content an agent may see, or for a held inbound message its sender and time only. */
  const summaryOf = (p: Principal, m: Meta, c: MessageContent) => {
    const hidden = isContentHidden(p, m);
    const auth = parseAuthResults(m.auth_results);
    return {
      ...headOf(m),
      content_hidden: hidden,
      from: c.from.address,
      to: hidden ? [] : c.to,
      subject: hidden ? null : c.subject,
      attachment_count: hidden ? null : c.attachments.length,
      auth_flags: auth ? auth.flags : null,
      ...readState(m),
      thread_id: m.thread_id,
      message_id: hidden ? null : m.message_id,
      ...tagFields(m, !hidden),
      created_at: m.created_at,
    };
  };

  type Summary = ReturnType<typeof summaryOf>;
  type Field = 'from' | 'subject' | 'body';
  type Match = { summary: Summary; matched_in?: Field[] };

  /**
   * Yields `rows` in order with their sealed content (null when `needs` says
   * it is not needed, or the row is gone), fetched by id in batches of at
   * most SCAN_BATCH_BYTES.
   */
  async function* withContent(ex: Executor, rows: MetaRow[], needs: (r: MetaRow) => boolean) {
    let i = 0;
    while (i < rows.length) {
      let j = i;
      let bytes = 0;
      const ids: string[] = [];
      while (j < rows.length && (ids.length === 0 || bytes + rows[j]!.sealed_len <= SCAN_BATCH_BYTES)) {
        const r = rows[j]!;
        if (needs(r)) {
          ids.push(r.id);
          bytes += Number(r.sealed_len);
        }
        j++;
      }
      const sealed = new Map(
        ids.length > 0
          ? (await ex.selectFrom('messages').select(['id', 'content_sealed']).where('id', 'in', ids).execute()).map((x) => [
              x.id,
              x.content_sealed,
            ])
          : [],
      );
      for (const r of rows.slice(i, j)) yield { row: r, sealed: sealed.get(r.id) ?? null };
      i = j;
    }
  }

  type Unreadable = { id: string; code: string; mailboxId: string };

  /**
   * Opens a row's sealed content, or notes it in `skipped` and returns null
   * when it cannot be opened (tampered, corrupt, or wrapped under a key the
   * ring lacks): one bad message must not make its whole mailbox unreadable.
   */
  const openOrSkip = (row: Meta, sealed: string, skipped: Unreadable[]): MessageContent | null => {
    try {
      return openContent(ring, row, sealed);
    } catch (e) {
      skipped.push({ id: row.id, code: isAppError(e) ? e.code : 'content_invalid', mailboxId: row.mailbox_id });
      return null;
    }
  };

  /**
   * 45 CFR 164.312(b) and (c)(1): a message whose sealed content failed to
   * open is an integrity event, recorded as `email.unreadable` (outcome
   * error) in the same transaction as the read that skipped it; the code
   * only, never content.
   */
  const recordUnreadable = async (
    tx: Tx,
    ctx: RequestContext,
    mailboxId: string | null,
    during: 'list' | 'search' | 'thread',
    skipped: Unreadable[],
  ) => {
    for (const u of skipped) {
      await audit.record(tx, {
        action: 'email.unreadable',
        actor: actorOf(ctx),
        target: emailTarget(u.id),
        outcome: 'error',
        requestId: ctx.requestId,
        clientIp: ctx.clientIp,
        details: { mailbox_id: mailboxId ?? u.mailboxId, code: u.code, during },
      });
    }
  };

  /**
   * Keyset scan, newest first, of a mailbox's rows passing the SQL filters;
   * `accept` matches each opened row. Reads chunks until the page has `limit`
   * matches and one more proves there is a next page, the mailbox ends, or
   * the budget (SCAN_BUDGET messages, SCAN_BYTES sealed bytes) is spent; then
   * `next` is the last row examined, so the next page resumes exactly after it
   * (`partial`: the budget ended the page, follow next_cursor for more).
   * A message whose content cannot be opened is skipped, listed in
   * `unreadable`, and makes the answer `partial`.
   * Without content filters one SQL page answers and no budget applies.
   */
  const scan = async (
    ex: Executor,
    mailboxId: string,
    f: ReadFilters,
    postFilter: boolean,
    accept: (m: Meta, c: MessageContent) => Match | null,
  ) => {
    const out: Match[] = [];
    const unreadable: Unreadable[] = [];
    // A skipped message makes the answer incomplete whatever else ended the page.
    const done = (r: { items: Match[]; next: string | null; partial: boolean; examined: number }) => ({
      ...r,
      partial: r.partial || unreadable.length > 0,
      unreadable,
    });
    let cursor = f.before;
    let examined = 0;
    let bytes = 0;
    let lastReturned: string | null = null;
    // Any tag of the row, so its content is fetched; matchContent decides what this reader may match on.
    const tagOk = (r: MetaRow) => !f.tag || tagFields(r, true).tags.includes(f.tag);
    for (;;) {
      const n = postFilter ? Math.min(SCAN_CHUNK, SCAN_BUDGET - examined) : f.limit + 1;
      let q = ex
        .selectFrom('messages')
        .select([...META, sealedSize('content_sealed')])
        .where('mailbox_id', '=', mailboxId)
        .orderBy('id', 'desc')
        .limit(n);
      if (f.direction) q = q.where('direction', '=', f.direction);
      if (f.status) q = q.where('status', '=', f.status);
      if (f.unread !== undefined) q = q.where('is_read', '=', f.unread ? 0 : 1);
      if (f.since) q = q.where('created_at', '>=', f.since);
      if (f.until) q = q.where('created_at', '<', f.until);
      // Tags are a JSON array of [A-Za-z0-9:_.-]; LIKE narrows (escaping _), the exact check (tagOk) decides.
      if (f.tag) {
        const like = `%"${f.tag.replace(/[\\%_]/g, (ch) => `\\${ch}`)}"%`;
        q = q.where((eb) =>
          eb.or([
            sql<boolean>`${sql.ref('tags')} like ${like} escape '\\'`,
            sql<boolean>`${sql.ref('system_tags')} like ${like} escape '\\'`,
          ]),
        );
      }
      if (cursor) q = q.where('id', '<', cursor);
      const rows = (await q.execute()) as MetaRow[];
      // Without content filters only the page itself is opened; the extra row just proves a next page.
      const page = postFilter ? rows : rows.slice(0, f.limit);
      for await (const { row, sealed } of withContent(ex, page, tagOk)) {
        const c = sealed !== null && tagOk(row) ? openOrSkip(row, sealed, unreadable) : null;
        const r = c ? accept(row, c) : null;
        if (r && out.length === f.limit) return done({ items: out, next: lastReturned, partial: false, examined });
        examined++;
        bytes += Number(row.sealed_len);
        cursor = row.id;
        if (r) {
          out.push(r);
          lastReturned = row.id;
        }
        if (postFilter && bytes >= SCAN_BYTES) return done({ items: out, next: row.id, partial: out.length < f.limit, examined });
      }
      if (!postFilter) return done({ items: out, next: rows.length > f.limit ? lastReturned : null, partial: false, examined });
      if (rows.length < n) return done({ items: out, next: null, partial: false, examined });
      if (examined >= SCAN_BUDGET) return done({ items: out, next: cursor ?? null, partial: out.length < f.limit, examined });
    }
  };

  const needsContent = (f: { from?: string; subject?: string; q?: string; tag?: string }) => Boolean(f.from || f.subject || f.q || f.tag);

  /** The content filters of a request, folded once. */
  type Needles = { from?: string; subject?: string; q?: string; tag?: string };
  const needlesOf = (f: { from?: string; subject?: string; q?: string; tag?: string }): Needles => ({
    from: f.from && fold(f.from),
    subject: f.subject && fold(f.subject),
    q: f.q && fold(f.q),
    tag: f.tag,
  });

  /** The content filters on an opened message; a held one matches only on its sender for an agent. */
  const matchContent = (p: Principal, m: Meta, c: MessageContent, f: Needles): Match | null => {
    const hidden = isContentHidden(p, m);
    // A held message matches an agent's tag filter on the agent's own tags only (its system tags are not shown).
    if (f.tag && !tagFields(m, !hidden).tags.includes(f.tag)) return null;
    const sender = fold(`${c.from.name ?? ''} <${c.from.address}>`);
    if (f.from && !sender.includes(f.from)) return null;
    if (f.subject && (hidden || !fold(c.subject).includes(f.subject))) return null;
    let matched: Field[] | undefined;
    if (f.q) {
      const needle = f.q;
      matched = [];
      if (sender.includes(needle)) matched.push('from');
      if (!hidden) {
        if (fold(c.subject).includes(needle)) matched.push('subject');
        if (fold(c.text ?? '').includes(needle) || (c.html && fold(htmlText(c.html)).includes(needle))) matched.push('body');
      }
      if (matched.length === 0) return null;
    }
    return { summary: summaryOf(p, m, c), ...(matched ? { matched_in: matched } : {}) };
  };

  /**
   * Lists a mailbox's messages, newest first, keyset-paginated by id, with
   * filters (issue 7 part 5). Held, rejected and quarantined messages are
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
      return scan(db, mailboxId, f, needsContent(f), (m, c) => matchContent(ctx.principal, m, c, needles));
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
   * Searches a mailbox (issue 7 part 5): `q` is a case-insensitive substring of
   * the sender, subject or body text (HTML without tags), combined with the
   * list filters. Content is sealed at rest, so this decrypts the mailbox's
   * messages newest first, within the scan budget per request, and pages by
   * next_cursor. An agent finds a held inbound message by its sender only.
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
      return scan(db, mailboxId, f, true, (m, c) => matchContent(ctx.principal, m, c, needles));
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
      let q = db
        .selectFrom('messages')
        .innerJoin('mailboxes', 'mailboxes.id', 'messages.mailbox_id')
        .select([...META.map((c) => `messages.${c}` as const), sealedSize('messages.content_sealed')])
        .where('messages.thread_id', '=', threadId)
        .where('messages.org_id', '=', p.orgId)
        .orderBy('messages.id')
        .limit(500);
      if (p.type === 'agent') q = q.where('mailboxes.agent_id', '=', p.id);
      else if (!hasRole(p, 'admin') && !hasRole(p, 'reviewer')) throw notFound('thread');
      const rows = (await q.execute()) as MetaRow[];
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
      await tx
        .updateTable('messages')
        .set({ tags: JSON.stringify(agentTags), updated_at: now() })
        .where('id', '=', m.id)
        .execute();
      await guard.recordIn(tx, ctx, 'email.tagged', emailTarget(id), { tags: agentTags, before: JSON.parse(m.tags) as string[] });
      return { id: m.id, ...tagFields({ ...m, tags: JSON.stringify(agentTags) }, visible) };
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
      const bytes = Buffer.from(a.content_base64, 'base64');
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

  return { get, list, thread, setTags, search, attachment };
};

export type ReadService = ReturnType<typeof createReadService>;
export type EmailView = Awaited<ReturnType<ReadService['get']>>;
