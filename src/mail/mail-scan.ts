import type { SealedValue } from '../kernel/crypto/envelope.js';
import type { AuditService } from '../audit/audit-service.js';
import { actorOf, type Principal, type RequestContext } from '../identity/principal.js';
import type { KeyRing } from '../kernel/crypto/keyring.js';
import { isAppError } from '../kernel/errors.js';
import type { Dialect, Executor, Tx } from '../store/db.js';
import type { ReadFilters } from './mail-filters.js';
import { openContent } from './message-store.js';
import { mailboxScanPage, sealedContentOf } from './messages-repo.js';
import { emailTarget, isContentHidden, type Meta, type MetaRow, type Summary, summaryOf, tagFields } from './message-views.js';
import type { MessageContent } from './mime.js';
import { indexKeys } from './recipient-index.js';
import {
  foldText as fold,
  hasUnindexed,
  lookupGroups,
  occursAtWords,
  searchCandidates,
  searchFields,
  searchKeyOf,
} from './search-index.js';

// The keyset scan over sealed content behind list, search and thread: bounds, batched fetches, matching, unreadable messages.

/**
 * Bounds of one list or search request whose filters need the sealed content
 * (content is encrypted at rest, so matching decrypts): rows read per
 * chunk, messages and sealed bytes examined per request. Sealed documents are
 * fetched in batches of at most SCAN_BATCH_BYTES, so a mailbox of large
 * attachments cannot exhaust memory.
 */
export const SCAN_CHUNK = 200;
export const SCAN_BUDGET = 2000;
export const SCAN_BYTES = 64 * 1024 * 1024;
const SCAN_BATCH_BYTES = 8 * 1024 * 1024;

export type Field = 'from' | 'subject' | 'body';
export type Match = { summary: Summary; matched_in?: Field[] };
export type Unreadable = { id: string; code: string; mailboxId: string };

type Deps = { dialect: Dialect; ring: KeyRing; audit: Pick<AuditService, 'record'> };

export const createMailScan = ({ dialect, ring, audit }: Deps) => {
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
      const sealed = await sealedContentOf(ex, ids);
      for (const r of rows.slice(i, j)) yield { row: r, sealed: sealed.get(r.id) ?? null };
      i = j;
    }
  }

  /**
   * Opens a row's sealed content, or notes it in `skipped` and returns null
   * when it cannot be opened (tampered, corrupt, or wrapped under a key the
   * ring lacks): one bad message must not make its whole mailbox unreadable.
   */
  const openOrSkip = (row: Meta, sealed: SealedValue, skipped: Unreadable[]): MessageContent | null => {
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
    f: ReadFilters & { q?: string },
    postFilter: boolean,
    accept: (m: Meta, c: MessageContent) => Match | null,
    orgId?: string,
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
    // The blind index narrows q, from and subject to the messages holding every word (search-index.ts), unless
    // the mailbox still holds messages the back-fill has not indexed: then every message is opened, as before.
    const groups =
      postFilter && orgId && (f.q || f.from || f.subject)
        ? lookupGroups(mailboxId, f, (await indexKeys(ex, ring, orgId)).map(searchKeyOf))
        : [];
    const indexed = groups.length > 0 && !(await hasUnindexed(ex, mailboxId));
    for (;;) {
      // Indexed candidates nearly all match, so the first chunk asks for one page (and one more), then grows.
      const n = postFilter
        ? Math.min(SCAN_CHUNK, SCAN_BUDGET - examined, indexed ? Math.max(f.limit + 1, examined) : SCAN_CHUNK)
        : f.limit + 1;
      const candidates = indexed ? await searchCandidates(ex, mailboxId, groups, cursor, n) : null;
      if (candidates?.length === 0) return done({ items: out, next: null, partial: false, examined });
      // The tag narrows in SQL; the exact check (tagOk) decides. With candidates, only they are read.
      const rows = await mailboxScanPage(ex, dialect, mailboxId, f, cursor, n, candidates ?? undefined);
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
      if (candidates) {
        // The next chunk's candidates start below this chunk's, whatever the SQL filters kept of them.
        cursor = candidates.at(-1);
        if (candidates.length < n) return done({ items: out, next: null, partial: false, examined });
      } else if (rows.length < n) return done({ items: out, next: null, partial: false, examined });
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

  /**
   * The content filters on an opened message (search-index.ts has the rule: the sender and subject from the start
   * of a word, the body by whole words); a held one matches only on its sender for an agent.
   */
  const matchContent = (p: Principal, m: Meta, c: MessageContent, f: Needles): Match | null => {
    const hidden = isContentHidden(p, m);
    // A held message matches an agent's tag filter on the agent's own tags only (its system tags are not shown).
    if (f.tag && !tagFields(m, !hidden).tags.includes(f.tag)) return null;
    const t = searchFields(c);
    if (f.from && !occursAtWords(t.from, f.from, false)) return null;
    if (f.subject && (hidden || !occursAtWords(t.subject, f.subject, false))) return null;
    let matched: Field[] | undefined;
    if (f.q) {
      const needle = f.q;
      matched = [];
      if (occursAtWords(t.from, needle, false)) matched.push('from');
      if (!hidden) {
        if (occursAtWords(t.subject, needle, false)) matched.push('subject');
        if (occursAtWords(t.body, needle, true)) matched.push('body');
      }
      if (matched.length === 0) return null;
    }
    return { summary: summaryOf(p, m, c), ...(matched ? { matched_in: matched } : {}) };
  };

  return { withContent, openOrSkip, recordUnreadable, scan, needsContent, needlesOf, matchContent };
};

export type MailScan = ReturnType<typeof createMailScan>;
