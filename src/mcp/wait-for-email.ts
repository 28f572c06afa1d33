import type { z } from 'zod';
import type { RequestContext } from '../identity/principal.js';
import type { EventFeed } from '../events/event-feed.js';
import type { Wake } from '../events/events-log.js';
import type { messageSummaryOut } from '../mail/mail-schemas.js';
import type { ReadService } from '../mail/read-service.js';
import { isStoreBusy } from '../store/db.js';

export type Summary = z.infer<typeof messageSummaryOut>;

export type WaitFilter = {
  mailboxId: string;
  /** Matched from the start of a word of the sender (address or name), case-insensitively, as the read service matches it. */
  from?: string;
  /** Matched from the start of a word of the subject. */
  subject?: string;
  /** Only mail stored strictly after this instant (ISO 8601). */
  since: string;
};

/** What a wait listens to: an AbortSignal, or the cheaper flag below. */
export type Abortable = {
  readonly aborted: boolean;
  addEventListener: (type: 'abort', fn: () => void) => void;
  removeEventListener: (type: 'abort', fn: () => void) => void;
};

/** A one-shot abort flag; per HTTP request it is cheaper than an AbortController (measured on Node 20). */
export const createAbortable = () => {
  const fns = new Set<() => void>();
  const state = {
    aborted: false,
    addEventListener: (_t: 'abort', fn: () => void) => {
      fns.add(fn);
    },
    removeEventListener: (_t: 'abort', fn: () => void) => {
      fns.delete(fn);
    },
  };
  const abort = () => {
    if (state.aborted) return;
    state.aborted = true;
    for (const fn of [...fns]) fn();
  };
  return { signal: state as Abortable, abort };
};

type Deps = {
  reader: Pick<ReadService, 'list'>;
  events: Pick<EventFeed, 'subscribe' | 'head' | 'read'>;
};

/** The domain events that make an inbound message visible in its mailbox's list. */
const ARRIVALS = ['email.received', 'email.released'];

export type WaitOptions = {
  timeoutMs: number;
  /** Any of these aborting ends the wait with no message. */
  signals?: Abortable[];
  /** Called every `progressMs` while waiting (MCP progress notifications keep clients from timing out). */
  onProgress?: (elapsedMs: number) => void;
  progressMs?: number;
};

const PAGE = 50;
/** Pages read per check: with more than PAGE * MAX_PAGES matches since `since`, the oldest of those read is returned. */
const MAX_PAGES = 10;

/**
 * Waits for the first inbound message of a mailbox matching `filter`, or
 * until the timeout. Woken by the domain-event log's feed after a commit of
 * any process sharing the store (`mailward serve` receiving SMTP while this
 * is `mailward mcp`, or another server on the same PostgreSQL): it reads the
 * mailbox's arrivals after its cursor, and only when there are some re-reads
 * through the read service (so every look is authorised and audited exactly
 * like REST's message list). Nothing is read while nothing happens: no
 * polling, no timer that queries the store.
 * Resolves `null` on timeout or abort. Throws what the read service throws
 * (404 for a mailbox that is not the caller's, 403 scope_required).
 */
export const waitForEmail = async (deps: Deps, ctx: RequestContext, filter: WaitFilter, opts: WaitOptions): Promise<Summary | null> => {
  const woken = new Set<string>();
  // A message the bus woke us for may carry a created_at a moment before `since` (stamped before its commit).
  const floor = new Date(Date.parse(filter.since) - 60_000).toISOString();
  const matches = (m: Summary) => m.created_at > filter.since || woken.has(m.id);

  /** Newest first through the read service's own filters, page by page; returns the oldest match. */
  const check = async (): Promise<Summary | null> => {
    let before: string | undefined;
    let found: Summary | null = null;
    for (let page = 0; page < MAX_PAGES; page++) {
      const r = await deps.reader.list(ctx, filter.mailboxId, {
        direction: 'inbound',
        since: floor,
        from: filter.from,
        subject: filter.subject,
        before,
        limit: PAGE,
      });
      for (const m of r.messages) if (matches(m)) found = m;
      if (!r.next) break;
      before = r.next;
    }
    return found;
  };

  const org = ctx.principal.orgId;
  // Taken before the first look: an arrival committed after it is above the cursor, one before it is seen by the look.
  let cursor = await deps.events.head(org);
  /** The mailbox's arrivals since the cursor; true when there were any. */
  const arrivals = async (): Promise<boolean> => {
    let any = false;
    for (;;) {
      const page = await deps.events.read({ orgId: org, after: cursor, limit: 200, types: ARRIVALS, mailboxIds: [filter.mailboxId] });
      for (const e of page) {
        if (e.email_id) woken.add(e.email_id);
        cursor = e.seq;
        any = true;
      }
      if (page.length < 200) return any;
    }
  };

  return new Promise<Summary | null>((resolve, reject) => {
    let done = false;
    let running = false;
    let again = false;
    const started = Date.now();
    const timers: NodeJS.Timeout[] = [];
    const finish = (err: unknown, value: Summary | null) => {
      if (done) return;
      done = true;
      unsubscribe();
      for (const t of timers) clearTimeout(t);
      for (const s of opts.signals ?? []) s.removeEventListener('abort', onAbort);
      if (err) reject(err);
      else resolve(value);
    };
    /** One look: the first through the read service, later ones only after arrivals in the log. */
    let first = true;
    const look = async (): Promise<Summary | null> => {
      if (first) {
        first = false;
        return check();
      }
      return (await arrivals()) ? check() : null;
    };
    const run = () => {
      if (done) return;
      if (running) {
        again = true;
        return;
      }
      running = true;
      look().then(
        (m) => {
          running = false;
          if (m) return finish(null, m);
          if (again) {
            again = false;
            run();
          }
        },
        (e) => {
          running = false;
          // Another process holds the SQLite write lock: look again shortly instead of failing the wait.
          if (isStoreBusy(e)) timers.push(setTimeout(run, 100 + Math.random() * 100));
          else finish(e, null);
        },
      );
    };
    const onWake = (w: Wake) => {
      if (w !== '*' && (w.orgId !== org || !ARRIVALS.includes(w.type) || (w.mailboxId && w.mailboxId !== filter.mailboxId))) return;
      run();
    };
    const onAbort = () => finish(null, null);
    // The cursor was taken before subscribing and before the first look, so nothing committed in between is missed.
    const unsubscribe = deps.events.subscribe(onWake);
    for (const s of opts.signals ?? []) s.addEventListener('abort', onAbort);
    if (opts.signals?.some((s) => s.aborted)) return finish(null, null);
    timers.push(setTimeout(() => finish(null, null), opts.timeoutMs));
    if (opts.onProgress && opts.progressMs) {
      const tick = () => {
        timers.push(
          setTimeout(() => {
            if (done) return;
            opts.onProgress?.(Date.now() - started);
            tick();
          }, opts.progressMs),
        );
      };
      tick();
    }
    run();
  });
};
