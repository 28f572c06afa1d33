import { type RequestContext, hasRole, hasScope } from '../identity/principal.js';
import { type DomainEvent, headSeq, pageEvents } from '../events/events-log.js';
import { decodeIntCursor, encodeCursor } from '../kernel/cursor.js';
import { forbidden, notFound } from '../kernel/errors.js';
import type { Db } from '../store/db.js';
import { webhooksRepo as repo } from './webhooks-repo.js';
import type { ListEventsQuery } from './webhooks-schemas.js';

type Deps = { db: Db };

/** Whose events a caller sees: an organisation, and for agents only the mailboxes they own. */
export type EventScope = {
  orgId: string;
  /** undefined: every event of the organisation; an array: only these mailboxes' (empty: none at all). */
  mailboxIds: string[] | undefined;
  types: string[] | undefined;
};

/** Humans with these roles see every event of their organisation (read-only; events hold no PHI). */
const READERS = ['admin', 'auditor', 'privacy_officer'] as const;

/**
 * The events API over the domain-event log: admins (and auditors, privacy officers) see their
 * organisation's events; an agent key with mail:read sees only events of its own mailboxes, and a
 * mailbox id that is not its own answers 404. Events carry ids, statuses, reason codes and counts only,
 * so listing them is not an audited PHI read; content is fetched with the consumer's own key (audited).
 */
export const createEventsService = ({ db }: Deps) => {
  /** Throws 403 role_required / scope_required, 404 for another's mailbox. */
  const scopeOf = async (ctx: RequestContext, q: { types?: string[]; mailbox_ids?: string[] }): Promise<EventScope> => {
    const p = ctx.principal;
    const types = q.types?.length ? [...new Set(q.types)] : undefined;
    if (p.type === 'agent') {
      if (!hasScope(p, 'mail:read')) throw forbidden('scope_required', 'Reading events needs an agent key with the mail:read scope.');
      const own = await repo.mailboxesOf(db, p.orgId, p.id);
      if (q.mailbox_ids?.length) {
        if (q.mailbox_ids.some((m) => !own.includes(m))) throw notFound('mailbox');
        return { orgId: p.orgId, mailboxIds: [...new Set(q.mailbox_ids)], types };
      }
      return { orgId: p.orgId, mailboxIds: own, types };
    }
    if (!READERS.some((r) => hasRole(p, r))) throw forbidden('role_required', `This needs one of the roles: ${READERS.join(', ')}.`);
    if (q.mailbox_ids?.length) {
      const found = await repo.mailboxesIn(db, p.orgId, [...new Set(q.mailbox_ids)]);
      if (found.length !== new Set(q.mailbox_ids).size) throw notFound('mailbox');
      return { orgId: p.orgId, mailboxIds: found, types };
    }
    return { orgId: p.orgId, mailboxIds: undefined, types };
  };

  /** Events after `after` (ascending) within a scope: the stream's read. */
  const readAfter = async (s: EventScope, after: number, limit: number): Promise<DomainEvent[]> => {
    if (s.mailboxIds && s.mailboxIds.length === 0) return [];
    return pageEvents(db, { orgId: s.orgId, order: 'asc', cursor: after, limit, types: s.types, mailboxIds: s.mailboxIds });
  };

  /**
   * A page of events, oldest first by default: `next_cursor` is always set ascending (the last seq seen,
   * so polling with it never skips or repeats an event), and null descending after the oldest page.
   * Throws 400 invalid_cursor, 403, 404.
   */
  const list = async (ctx: RequestContext, q: ListEventsQuery) => {
    const s = await scopeOf(ctx, q);
    const cursor = decodeIntCursor(q.cursor);
    const events =
      s.mailboxIds && s.mailboxIds.length === 0
        ? []
        : await pageEvents(db, {
            orgId: s.orgId,
            order: q.order,
            cursor,
            since: q.since,
            limit: q.limit,
            types: s.types,
            mailboxIds: s.mailboxIds,
          });
    const last = events.at(-1)?.seq;
    const next =
      q.order === 'asc' ? encodeCursor(last ?? cursor ?? 0) : events.length === q.limit && last !== undefined ? encodeCursor(last) : null;
    return { events, next_cursor: next };
  };

  return { scopeOf, readAfter, list, head: (orgId: string) => headSeq(db, orgId) };
};

export type EventsService = ReturnType<typeof createEventsService>;
