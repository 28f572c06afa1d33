import { decodeCursor, encodeCursor } from '../kernel/cursor.js';
import { AppError, badRequest } from '../kernel/errors.js';

/** Filters of list and search; `from`, `subject` and `q` apply to opened content (sealed at rest). */
export type ReadFilters = {
  direction?: 'inbound' | 'outbound';
  status?: string;
  /** true: unread only; false: read only. */
  unread?: boolean;
  /** ISO-8601 UTC, inclusive. */
  since?: string;
  /** ISO-8601 UTC, exclusive. */
  until?: string;
  from?: string;
  subject?: string;
  tag?: string;
  /** Keyset cursor: only ids below this one. */
  before?: string;
  limit: number;
};

/** A search: the list filters plus `q` over sender, subject and body text. */
export type SearchFilters = ReadFilters & { q?: string };

/**
 * The list or search filter as a wire shape carries it, already checked by
 * its zod schema: a REST query (`unread` as 'true' | 'false') or MCP tool
 * arguments (`unread` as a boolean); `cursor` is a next_cursor as issued.
 */
export type WireMessageFilter = {
  direction?: 'inbound' | 'outbound';
  status?: string;
  unread?: boolean | 'true' | 'false';
  since?: string;
  until?: string;
  from?: string;
  subject?: string;
  tag?: string;
  cursor?: string;
  limit: number;
  q?: string;
};

const MESSAGE_ID = /^msg_[0-9a-f]{32}$/;

/** A next_cursor of list and search: the last message id of the page, base64url. */
export const encodeMessageCursor = (id: string) => encodeCursor(id);

/** The message id a next_cursor names; 400 invalid_cursor for anything no page issued. */
export const decodeMessageCursor = (cursor: string | undefined): string | undefined => decodeCursor(cursor, MESSAGE_ID);

/** An ISO-8601 instant with any offset, as UTC (times are compared and stored as UTC strings: STYLE.md, Naming). */
export const toUtc = (iso: string) => new Date(iso).toISOString();

/**
 * The one normalisation of list and search filters for every adapter (REST
 * GET /v1/mailboxes/{id}/messages and /search, MCP check_inbox and
 * search_email), so they accept and refuse alike: cursor decoded, times in
 * UTC, `unread` a boolean. Throws 400 invalid_cursor (a cursor no page
 * issued) and 400 invalid_filter (since at or after until: an empty window
 * is a mistake to report, not a page that matches nothing). Writes nothing.
 */
export const normalizeMessageFilter = (w: WireMessageFilter): SearchFilters => {
  const before = decodeMessageCursor(w.cursor);
  const since = w.since ? toUtc(w.since) : undefined;
  const until = w.until ? toUtc(w.until) : undefined;
  if (since && until && since >= until) throw badRequest('invalid_filter', 'since must be before until.');
  return {
    direction: w.direction,
    status: w.status,
    unread: w.unread === undefined ? undefined : w.unread === true || w.unread === 'true',
    since,
    until,
    from: w.from,
    subject: w.subject,
    tag: w.tag,
    before,
    limit: w.limit,
    ...(w.q === undefined ? {} : { q: w.q }),
  };
};

/**
 * A search needs a criterion: `q` or one of from, subject, tag, since, until
 * (a bare search would decrypt a whole mailbox to answer what a list does).
 * Throws 400 invalid_filter. The read service checks it after authorisation,
 * so a mailbox that is not the caller's still answers 404 first.
 */
export const assertSearchCriterion = (f: SearchFilters) => {
  if (!f.q && !f.from && !f.subject && !f.tag && !f.since && !f.until)
    throw new AppError('invalid_filter', 400, 'Search needs q or at least one of from, subject, tag, since, until.');
};
