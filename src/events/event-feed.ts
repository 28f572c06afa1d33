import type { Store } from '../store/db.js';
import { type EventQuery, headSeq, parseWake, readEvents, type Wake } from './events-log.js';

/**
 * Readers' side of the domain-event log (wait_for_email, the delivery worker, the events API and stream).
 * `subscribe` hears every commit that appended events, in this process or another sharing the store, after
 * it committed: which organisation, type and mailbox may have new events (or `*`: anything may). The reader
 * then reads the log from its own cursor, so a lost or merged wake-up never loses an event, and nothing is
 * read while nothing happens.
 */
export const createEventFeed = (store: Pick<Store, 'listen' | 'db'>) => ({
  subscribe: (fn: (w: Wake) => void): (() => void) =>
    store.listen((payload) => {
      const w = parseWake(payload);
      if (w) fn(w);
    }),
  /** The last committed sequence number of an organisation (a cursor that sees only what comes next). */
  head: (orgId: string) => headSeq(store.db, orgId),
  read: (q: EventQuery) => readEvents(store.db, q),
});

export type EventFeed = ReturnType<typeof createEventFeed>;
