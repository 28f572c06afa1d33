import type { MetricsSink } from '../kernel/metrics.js';
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import type { AuditService } from '../audit/audit-service.js';
import type { EventFeed } from '../events/event-feed.js';
import { appendEvent, type DomainEvent, eventById, eventsByIds, headSeq, readEvents, toEvent } from '../events/events-log.js';
import { systemActor } from '../identity/principal.js';
import type { Clock } from '../kernel/clock.js';
import { open, type SealedValue } from '../kernel/crypto/envelope.js';
import type { KeyRing } from '../kernel/crypto/keyring.js';
import { isAppError } from '../kernel/errors.js';
import { newId } from '../kernel/ids.js';
import type { Logger } from '../kernel/log.js';
import { createJobWorker } from '../queue/job-worker.js';
import type { Db, Dialect, Executor, Tx } from '../store/db.js';
import type { WebhookAttemptsTable, WebhookDeliveriesTable, WebhookEndpointsTable, WebhookSecretsTable } from '../store/schema.js';
import { type CheckedUrl, checkWebhookUrl, type HostLookup } from './url-safety.js';
import { type WebhookRetrySchedule, webhookRetryDelay } from './webhook-retry.js';
import { signDelivery } from './webhook-signing.js';
import { secretsKey, webhookSecretAad, webhookUrlAad, webhooksRepo as repo } from './webhooks-repo.js';
import { deliveryRow, firstDeliveryId } from './webhooks-service.js';

type Deps = {
  db: Db;
  dialect: Dialect;
  ring: KeyRing;
  clock: Clock;
  audit: Pick<AuditService, 'record'>;
  logger: Logger;
  feed: Pick<EventFeed, 'subscribe'>;
  lookup: HostLookup;
  allowHosts: readonly string[];
  schedule: WebhookRetrySchedule;
  concurrency: number;
  timeoutMs: number;
  leaseMs: number;
  pollMs: number;
  metrics?: Pick<MetricsSink, 'webhookAttempt'>;
};

/** A range lease this worker holds on an endpoint's first attempts (see `held` in createWebhookWorker). */
type Lease = {
  to: number;
  next: number;
  recheck: number;
  outstanding: number[];
  finished: Set<number>;
  /** The endpoint's organisation, and whether it had no filters at the last take (PostgreSQL's one-statement take: takeHeldPg). */
  org?: string;
  unfiltered?: boolean;
};

/**
 * A claimed delivery job with its event, endpoint and live secrets (read fresh for the whole claim at once). A
 * first attempt taken under a range lease (`range`) has no row yet: its outcome writes the first one.
 */
type Job = WebhookDeliveriesTable & {
  range?: Lease | undefined;
  event?: DomainEvent | undefined;
  endpoint?: WebhookEndpointsTable | undefined;
  secrets: WebhookSecretsTable[];
  /** The endpoint's URL and secrets once opened, shared by the claim's jobs of that endpoint (opened at most once per claim). */
  opened: { url?: string; secrets?: { expires_at: string | null; value: string }[] };
};

/** A first attempt taken under a range lease (no row yet), as both the take and the held lease's refill start it. */
const rangeJob = (
  ep: WebhookEndpointsTable,
  e: DomainEvent,
  id: string,
  c: { at: string; leaseUntil: string; workerId: string; secrets: WebhookSecretsTable[]; opened: Job['opened']; lease: Lease },
): Job => ({
  ...deliveryRow(ep, e, c.at, false, id),
  status: 'sending',
  attempts: 1,
  first_attempt_at: c.at,
  lease_until: c.leaseUntil,
  claimed_by: c.workerId,
  event: e,
  endpoint: ep,
  secrets: c.secrets,
  opened: c.opened,
  range: c.lease,
});

/** A job as its outcome sees it: a row, or a first attempt under a range lease (no row yet). */
type Attempted = WebhookDeliveriesTable & { range?: Lease | undefined };

/** What one attempt came to: a status code, or an error class (never the response body). */
type AttemptResult = {
  ok: boolean;
  status: number | null;
  error: string | null;
  refused: boolean;
  latencyMs: number;
  /** Not attempted (a first attempt of a range whose event is not the endpoint's): nothing to record but the cursor. */
  skipped?: boolean;
};

/** One row of the delivery log. */
const attemptRow = (job: WebhookDeliveriesTable, r: AttemptResult, at: string): WebhookAttemptsTable => ({
  id: newId('webhookAttempt'),
  org_id: job.org_id,
  endpoint_id: job.endpoint_id,
  delivery_id: job.id,
  event_id: job.event_id,
  attempt: Number(job.attempts),
  at,
  outcome: r.ok ? 'delivered' : r.refused ? 'refused' : 'failed',
  status_code: r.status,
  latency_ms: Math.round(r.latencyMs),
  error: r.error,
});

/** Longest an attempt's outcome waits for the others in flight before it commits (see `finish`). */
const COMMIT_WINDOW_MS = 5;

/** Events read per fan-out transaction. */
const FANOUT_PAGE = 500;
/** How long wake-ups of one organisation are merged into one fan-out (ms). */
const FANOUT_MERGE_MS = 10;

/** The request option naming the address checked for this attempt (read by the agents' pool key). */
type PinnedOptions = https.RequestOptions & { mailwardAddress?: string };
/*
 * Keep-alive agents for receivers. Node pools idle sockets by host and port, so a socket opened to the
 * address a name had before would carry a request whose check found another address. Here the pool key
 * also names the checked address: a request only ever rides a connection to exactly the address this
 * attempt checked (a changed DNS answer opens a new connection, to the new, checked address), and the
 * `lookup` option pins a new connection to it (no second DNS look-up between check and connect).
 */
/*
 * The agent asks for a request's pool name several times per request (to queue it, to take a free socket,
 * when the socket is freed), and Node builds it anew each time: a new string that each pool look-up then
 * hashes again (some 5 us per attempt, bench/webhooks.ts profile). The names of attempts (postWebhook's
 * options: only host, port, the server name Node derives from the host, and the checked address vary)
 * are worked out once per host, port, server name and address and handed out as the same string; any
 * other request is named as Node names it.
 */
type NameCache = Map<string, Map<number, Map<string, Map<string, string>>>>;
const getOrAdd = <K, V>(m: Map<K, V>, k: K, make: () => V): V => {
  let v = m.get(k);
  if (v === undefined) {
    v = make();
    m.set(k, v);
  }
  return v;
};
const cachedName = (cache: NameCache, o: PinnedOptions | undefined, compute: () => string): string => {
  const address = o?.mailwardAddress;
  if (address === undefined || typeof o?.host !== 'string' || typeof o.port !== 'number') return `${compute()}|${address ?? ''}`;
  const servername = typeof o.servername === 'string' ? o.servername : '';
  const byPort = getOrAdd(cache, o.host, () => new Map());
  const byServer = getOrAdd(byPort, o.port, () => new Map());
  const byAddress = getOrAdd(byServer, servername, () => new Map<string, string>());
  let name = byAddress.get(address);
  if (name === undefined) {
    if (cache.size > 10_000) cache.clear();
    name = `${compute()}|${address}`;
    byAddress.set(address, name);
  }
  return name;
};
class PinnedHttpAgent extends http.Agent {
  readonly #names: NameCache = new Map();
  override getName(o?: PinnedOptions): string {
    return cachedName(this.#names, o, () => super.getName(o));
  }
}
class PinnedHttpsAgent extends https.Agent {
  readonly #names: NameCache = new Map();
  override getName(o?: PinnedOptions): string {
    return cachedName(this.#names, o, () => super.getName(o));
  }
}
/** Keep-alive agents with at most `maxSockets` connections per receiver address (the worker's concurrency). */
export const createWebhookAgents = (maxSockets: number) => ({
  http: new PinnedHttpAgent({ keepAlive: true, maxSockets }),
  https: new PinnedHttpsAgent({ keepAlive: true, maxSockets }),
});
export type WebhookAgents = ReturnType<typeof createWebhookAgents>;
const defaultAgents = createWebhookAgents(64);

/**
 * POSTs one signed body. Redirects are never followed: a 3xx is a failed attempt (its Location could
 * name an address the rules refuse). The response body is read and dropped, never stored or logged.
 */
export const postWebhook = (
  target: CheckedUrl,
  headers: Record<string, string>,
  body: string,
  timeoutMs: number,
  agents: WebhookAgents = defaultAgents,
) =>
  new Promise<{ status: number | null; error: string | null }>((resolve) => {
    const { address, isHttps } = target;
    const options: PinnedOptions = {
      method: 'POST',
      host: target.host,
      port: target.port,
      path: target.path,
      agent: isHttps ? agents.https : agents.http,
      mailwardAddress: address.address,
      // Pinned: connect to the checked address whatever DNS says now (TLS still verifies the host name).
      lookup: ((_h: string, o: { all?: boolean }, cb: (...a: unknown[]) => void) =>
        o?.all ? cb(null, [{ address: address.address, family: address.family }]) : cb(null, address.address, address.family)) as never,
      headers: {
        'content-type': 'application/json',
        'content-length': String(Buffer.byteLength(body)),
        'user-agent': 'Mailward-Webhooks/1',
        ...headers,
      },
    };
    const onResponse = (res: http.IncomingMessage) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? null, error: null }));
      res.on('error', () => resolve({ status: res.statusCode ?? null, error: 'response_error' }));
    };
    const req = isHttps ? https.request(options, onResponse) : http.request(options, onResponse);
    // One deadline for the whole attempt (connect, send, answer). No socket idle `timeout` option: Node re-arms
    // that on every read and write of the socket and resets it when a kept-alive socket goes back to the pool.
    const timer = setTimeout(() => req.destroy(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })), timeoutMs);
    req.on('close', () => clearTimeout(timer));
    req.on('error', (e: NodeJS.ErrnoException) =>
      resolve({ status: null, error: /^[A-Z_]{2,40}$/.test(e.code ?? '') ? e.code! : 'network_error' }),
    );
    req.end(body);
  });

/**
 * Events out: the dispatcher fans each organisation's events out to its endpoints, and the general job
 * worker (src/queue/job-worker.ts) delivers them, at least once.
 *
 * Fan-out: each endpoint keeps its own cursor into the log. While the worker runs, its claims take the events
 * past the cursors under range leases on the endpoints, as many as they have free slots, and write no job row
 * for a first attempt: its outcome writes the first row (`fanOutLeased`, `recordRanges`). Otherwise one
 * transaction reads the events after the cursor, inserts a waiting job for every match and moves the cursor with
 * a compare-and-set (`fanOutEndpoint`). Either way two processes never fan out an event twice and a crash loses
 * none. Retries, replays and a dead worker's jobs: claimed with a lease (a `kill -9` leaves jobs whose lease
 * runs out and another worker takes them), signed per Standard Webhooks, POSTed to the pinned address, and each
 * attempt written to the delivery log with the job's next state in one transaction.
 */
export const createWebhookWorker = (d: Deps) => {
  const workerId = `wrk_${randomUUID()}`;
  let kickWorker = () => {};
  let laterWorker = (_at: Date) => {};
  // As many connections per receiver address as attempts may be in flight: none waits in the agent's queue.
  const agents = createWebhookAgents(d.concurrency);

  // --- fan-out ---------------------------------------------------------------------------------
  const matches = (_ep: WebhookEndpointsTable, types: string[], mailboxes: string[], e: { type: string; mailbox_id: string | null }) =>
    (types.length === 0 || types.includes(e.type)) &&
    (mailboxes.length === 0 || (e.mailbox_id !== null && mailboxes.includes(e.mailbox_id)));

  class CursorMoved extends Error {}

  /*
   * Events just fanned out, kept for their first attempt (the claim would read them again otherwise). The
   * log is append-only (an event row is never updated or deleted), so a kept event is the stored one; the
   * attempt still checks it belongs to the job's organisation. Bounded; a miss reads the log.
   */
  const recentEvents = new Map<string, DomainEvent>();
  const remember = (e: DomainEvent) => {
    if (recentEvents.size >= 20_000) recentEvents.clear();
    recentEvents.set(e.id, e);
  };

  /** Fans one endpoint out to the head of its organisation's log; returns how many jobs it queued. */
  const fanOutEndpoint = async (endpointId: string): Promise<number> => {
    let queued = 0;
    for (;;) {
      let more = false;
      let matched: DomainEvent[] = [];
      try {
        const n = await d.db.transaction().execute(async (tx) => {
          const ep = await repo.endpointAnyOrg(tx, endpointId);
          if (ep?.status !== 'active' || ep.deleted_at) return 0;
          const from = Number(ep.cursor);
          // A running worker's range lease (or a dead one's, until another worker takes it over) owns these events.
          if (ep.leased_by !== null || Number(ep.leased_to) > from) return 0;
          const events = await readEvents(tx, { orgId: ep.org_id, after: from, limit: FANOUT_PAGE });
          if (events.length === 0) return 0;
          more = events.length === FANOUT_PAGE;
          const types = JSON.parse(ep.event_types) as string[];
          const mailboxes = JSON.parse(ep.mailbox_ids) as string[];
          const at = d.clock.now().toISOString();
          const rows = events.filter((e) => matches(ep, types, mailboxes, e)).map((e) => deliveryRow(ep, e, at, false));
          if (!(await repo.advanceCursor(tx, ep.id, from, events.at(-1)!.seq))) throw new CursorMoved();
          await repo.insertDeliveries(tx, rows);
          matched = rows.length > 0 ? events.filter((e) => matches(ep, types, mailboxes, e)) : [];
          return rows.length;
        });
        for (const e of matched) remember(e);
        queued += n;
        // Each committed page is due at once: delivery starts while later pages are still being fanned out.
        if (n > 0) {
          dueKicked = true;
          kickWorker();
        }
      } catch (e) {
        // Another process fanned these events out first: its jobs stand, ours rolled back.
        if (e instanceof CursorMoved) continue;
        throw e;
      }
      if (!more) return queued;
    }
  };

  /*
   * First attempts from range leases, while the worker runs. An endpoint's events past its cursor are the queue of
   * its first attempts. A claim (the worker's, or the refill in an outcome commit) takes the next events of the
   * endpoints known to have some, as many as it has free slots, under a lease on the endpoint's range: one
   * compare-and-set of the endpoint's row names this worker (`leased_by`, `lease_until`) and moves `leased_to` past
   * the events taken (migration 0045). No job row is written for them: the outcome commit records each attempt as
   * it came out, a success as its delivery-log row, a failure as a waiting job (attempt 1 logged, its retry time
   * set), and moves the cursor past every event whose outcome is recorded, with the same compare-and-set on the
   * lease (`recordRange`). Two row writes per failed first attempt, one per successful one (plus one update of the
   * endpoint's row per claim and per outcome commit, not per event).
   *
   * Recovery (at least once): a `kill -9` leaves a lease that runs out; another worker's look for expired leases
   * (at most once a second, with its look for expired jobs) takes it over with a compare-and-set on the holder and
   * its `lease_until`, and sends again every event of (cursor, leased_to] whose first attempt is not in the delivery
   * log (the delivery id of a first attempt is derived from the endpoint and the event: one index probe each). A
   * holder that lost its lease records nothing (its compare-and-set fails), so the log never holds a second first
   * attempt, nor a second success, of an event for an endpoint; receivers deduplicate on `webhook-id`.
   *
   * `backlog` holds the endpoints that may have events past what this worker took (woken by the event feed), each
   * with the generation of its last wake-up: a fan-out that reached the head drops the endpoint only if no wake-up
   * came after it began, so an event committed meanwhile is never left behind.
   *
   * An endpoint is `deep` once a fan-out found more of its events than it had slots for: only those are fanned
   * out in an outcome commit's refill. A trickle (an event or two per wake-up) is left to the worker's own claim:
   * on PostgreSQL a fan-out in the outcome commit held the endpoint's row through that commit while the claim
   * woken by the same events waited on it, and at 200 events/s the p90 from commit to delivery rose from
   * 77 to 266 ms (bench/webhooks.ts).
   */
  const backlog = new Map<string, { gen: number; deep: boolean }>();
  let generation = 0;
  let deepCount = 0;
  const setBacklog = (id: string, v: { gen: number; deep: boolean } | undefined) => {
    const was = backlog.get(id);
    if (was?.deep) deepCount--;
    backlog.delete(id);
    if (!v) return;
    backlog.set(id, v);
    if (v.deep) deepCount++;
  };
  const markBacklog = (endpointId: string) => setBacklog(endpointId, { gen: ++generation, deep: backlog.get(endpointId)?.deep ?? false });
  /*
   * The range leases this worker holds, with what it knows of each endpoint's row: `to` is the row's `leased_to`,
   * `next` the last event taken (or looked past), `recheck` the end of a dead holder's range whose events are looked
   * up in the delivery log before they are sent again, `outstanding` the events taken whose outcome is not recorded
   * yet (in seq order), `finished` those of them recorded out of order. A job remembers the lease it was taken under:
   * one taken under a lease since lost (and maybe taken again) records nothing.
   */
  const held = new Map<string, Lease>();
  /** The live secrets a lease's last take read (PostgreSQL's one-statement refill compares them with the store's: flushRangesPg). */
  const leaseSecrets = new WeakMap<Lease, WebhookSecretsTable[]>();
  /** The cursor once `seqs` (and every earlier finished one) are recorded: just below the first outstanding event left. */
  const cursorAfter = (h: Lease, seqs: ReadonlySet<number>) => {
    for (const s of h.outstanding) if (!h.finished.has(s) && !seqs.has(s)) return s - 1;
    return h.next;
  };
  const markFinished = (h: Lease, seqs: Iterable<number>) => {
    for (const s of seqs) h.finished.add(s);
    let i = 0;
    while (i < h.outstanding.length && h.finished.has(h.outstanding[i]!)) h.finished.delete(h.outstanding[i++]!);
    if (i > 0) h.outstanding.splice(0, i);
  };
  /** What a fan-out did, applied to `backlog` and `held` only once its transaction committed. */
  type Fresh = { jobs: Job[]; caughtUp: [string, number][]; served: string[]; apply: (() => void)[] };
  const fanOutLeased = async (tx: Executor, n: number, deepOnly: boolean): Promise<Fresh> => {
    const fresh: Fresh = { jobs: [], caughtUp: [], served: [], apply: [] };
    const now = d.clock.now();
    const at = now.toISOString();
    const leaseUntil = new Date(now.getTime() + d.leaseMs).toISOString();
    // In turn: an endpoint served moves to the back (settle), so one with a long backlog does not starve the others.
    for (const [endpointId, { gen, deep }] of [...backlog]) {
      const want = n - fresh.jobs.length;
      if (want <= 0) break;
      if (deepOnly && !deep) continue;
      const ep = await repo.endpointAnyOrg(tx, endpointId);
      if (ep?.status !== 'active' || ep.deleted_at) {
        fresh.caughtUp.push([endpointId, gen]);
        continue;
      }
      const mine = held.get(endpointId);
      const cursor = Number(ep.cursor);
      const leasedTo = Math.max(Number(ep.leased_to), cursor);
      const liveOther = ep.leased_by !== null && ep.leased_by !== workerId && ep.lease_until !== null && ep.lease_until >= at;
      if (liveOther || (mine && ep.leased_by !== workerId)) {
        // Another worker's (live) lease: its events are that worker's to send (it hears the same wake-ups).
        if (mine) fresh.apply.push(() => held.get(endpointId) === mine && held.delete(endpointId));
        if (liveOther) {
          fresh.caughtUp.push([endpointId, gen]);
          continue;
        }
      }
      const extend = mine !== undefined && ep.leased_by === workerId;
      // Taken over (or free): start at the cursor and look up what (cursor, leased_to] already recorded.
      const base = extend ? mine : { to: leasedTo, next: cursor, recheck: leasedTo };
      const types = JSON.parse(ep.event_types) as string[];
      const mailboxes = JSON.parse(ep.mailbox_ids) as string[];
      const filtered = types.length > 0 || mailboxes.length > 0;
      // Filtered in SQL; the head read first bounds the scan, so a lease moves past events that did not match.
      // (Every event up to a committed head is visible: the head and its events commit together, src/events/events-log.ts.)
      const head = filtered ? await headSeq(tx, ep.org_id) : undefined;
      const events = await readEvents(tx, { orgId: ep.org_id, after: base.next, upTo: head, limit: want, types, mailboxIds: mailboxes });
      const more = events.length === want;
      const reached = more || head === undefined ? (events.at(-1)?.seq ?? base.next) : head;
      // A dead holder's expired lease is taken over even with nothing to send, so the look for expired leases stops finding it.
      const takeover = !extend && ep.leased_by !== null;
      if (reached <= base.next && !takeover) {
        fresh.caughtUp.push([endpointId, gen]);
        continue;
      }
      const to = Math.max(base.to, reached);
      // Events of a dead holder's range whose first attempt is in the delivery log are not sent again.
      const ids = events.map((e) => firstDeliveryId(ep.id, e.id));
      const again = events.some((e) => e.seq <= base.recheck)
        ? new Set(
            await repo.recordedFirstAttempts(
              tx,
              ids.filter((_, i) => events[i]!.seq <= base.recheck),
            ),
          )
        : null;
      const sending = events.length - (again?.size ?? 0);
      // Nothing in flight and nothing to send: no outcome commit will move the cursor, so this take does.
      const idle = sending === 0 && (!extend || mine.outstanding.length === 0);
      const taken = await repo.takeRange(
        tx,
        { id: ep.id, workerId, leaseUntil, to, cursor, fromTo: extend ? mine.to : Number(ep.leased_to), moveCursor: idle ? reached : null },
        extend ? { by: workerId, until: null } : ep.leased_by === null ? null : { by: ep.leased_by, until: ep.lease_until },
      );
      if (!taken) {
        // Moved under us: a lease this worker held is lost; another worker's take stands (looked at again later).
        if (extend) fresh.apply.push(() => held.get(endpointId) === mine && held.delete(endpointId));
        fresh.caughtUp.push([endpointId, gen]);
        continue;
      }
      if (!more) fresh.caughtUp.push([endpointId, gen]);
      else fresh.served.push(endpointId);
      const lease: Lease = extend ? mine : { to: base.to, next: base.next, recheck: base.recheck, outstanding: [], finished: new Set() };
      const seqs: number[] = [];
      const secrets = events.length > 0 ? await repo.liveSecretsOf(tx, [ep.id], at) : [];
      const opened: Job['opened'] = {};
      for (let i = 0; i < events.length; i++) {
        const e = events[i]!;
        if (again?.has(ids[i]!)) continue;
        seqs.push(e.seq);
        fresh.jobs.push(rangeJob(ep, e, ids[i]!, { at, leaseUntil, workerId, secrets, opened, lease }));
      }
      fresh.apply.push(() => {
        lease.to = to;
        lease.next = reached;
        lease.org = ep.org_id;
        lease.unfiltered = !filtered;
        lease.outstanding.push(...seqs);
        held.set(endpointId, lease);
        if (events.length > 0) leaseSecrets.set(lease, secrets);
      });
    }
    return fresh;
  };
  const settle = (fresh: Fresh) => {
    for (const f of fresh.apply) f();
    for (const [id, gen] of fresh.caughtUp) {
      const v = backlog.get(id);
      if (v?.gen === gen) setBacklog(id, undefined);
      else if (v?.deep) setBacklog(id, { gen: v.gen, deep: false });
    }
    for (const id of fresh.served) {
      const v = backlog.get(id);
      if (v) setBacklog(id, { gen: v.gen, deep: true });
    }
  };

  /** While the worker runs: notes the organisation's active endpoints as having events to fan out, and wakes the worker. */
  const markOrg = async (orgId: string) => {
    try {
      const eps = await repo.activeEndpoints(d.db, orgId);
      for (const ep of eps) markBacklog(ep.id);
      if (eps.length > 0) kickWorker();
    } catch (e) {
      d.logger.error({ err: { type: (e as Error)?.name } }, 'webhooks: fan-out failed');
    }
  };

  // Without a running worker (tests, a process that only dispatches): jobs for every event up to the head, waiting.
  // One fan-out at a time per organisation in this process; a wake-up meanwhile runs it once more after.
  let live = false;
  const running = new Map<string, Promise<void>>();
  const again = new Set<string>();
  const fanOut = (orgId: string): Promise<void> => {
    if (live) return markOrg(orgId);
    if (running.has(orgId)) {
      again.add(orgId);
      return running.get(orgId)!;
    }
    const p = (async () => {
      try {
        do {
          again.delete(orgId);
          let queued = 0;
          for (const ep of await repo.activeEndpoints(d.db, orgId)) queued += await fanOutEndpoint(ep.id);
          if (queued > 0) {
            dueKicked = true;
            kickWorker();
          }
        } while (again.has(orgId));
      } catch (e) {
        d.logger.error({ err: { type: (e as Error)?.name } }, 'webhooks: fan-out failed');
      } finally {
        running.delete(orgId);
      }
    })();
    running.set(orgId, p);
    return p;
  };
  const fanOutAll = async () => {
    for (const org of await repo.orgsWithActiveEndpoints(d.db)) await fanOut(org);
  };

  // --- delivery --------------------------------------------------------------------------------
  /*
   * Opened values are kept by their sealed text: a sealed URL or secret never changes (a new URL or a
   * rotation writes new sealed text), so a hit is always right, while which secrets are live and whether
   * the endpoint is active are read fresh with every claim.
   */
  const opened = new Map<string, string>();
  const openOnce = (sealed: SealedValue, aad: string) => {
    // Binary sealed values keyed by their bytes as latin1 (a plain copy, one char per byte), text ones as they are.
    const k = Buffer.isBuffer(sealed) ? `b${sealed.toString('latin1')}` : `s${sealed}`;
    let v = opened.get(k);
    if (v === undefined) {
      v = open(d.ring, sealed, aad).toString('utf8');
      if (opened.size > 10_000) opened.clear();
      opened.set(k, v);
    }
    return v;
  };

  /**
   * Writes one attempt: the delivery log row, the job's next state, the endpoint's counters, and an auto-disable.
   * A first attempt from a range lease (whose lease the caller checked in this transaction: recordRange) has no row
   * yet: a failure inserts its job, waiting for its retry (attempt 1 done); a success writes no job at all.
   */
  const finishIn = async (tx: Tx, job: Attempted, r: AttemptResult) => {
    const now = d.clock.now();
    const at = now.toISOString();
    const first = job.first_attempt_at ? new Date(job.first_attempt_at) : now;
    const delay = r.ok ? null : webhookRetryDelay(d.schedule, Number(job.attempts), first, now);
    const status = r.ok ? 'done' : delay === null ? 'failed' : 'pending';
    const set = {
      status,
      next_attempt_at: delay === null ? job.next_attempt_at : new Date(now.getTime() + delay * 1000).toISOString(),
      last_status_code: r.status,
      last_error: r.error,
      updated_at: at,
    } as const;
    let recorded = true;
    if (!job.range) recorded = await repo.recordOutcome(tx, { id: job.id, workerId }, set);
    else if (!r.ok) await repo.insertDeliveries(tx, [{ ...job, ...set, lease_until: null, claimed_by: null }]);
    if (!recorded) return;
    // A retry this worker scheduled wakes its idle job loop then (job-worker.ts `dueAt`), with no read of the time.
    if (status === 'pending') laterWorker(new Date(set.next_attempt_at));
    d.metrics?.webhookAttempt?.(r.ok ? 'delivered' : status === 'failed' ? 'failed' : 'retrying');
    await repo.insertAttempt(tx, attemptRow(job, r, at));
    await repo.noteResult(tx, job.endpoint_id, r.ok, at);
    if (status !== 'failed') return;
    // Auto-disable: this delivery failed for its whole retry schedule and the endpoint took nothing since it began.
    const ep = await repo.endpointAnyOrg(tx, job.endpoint_id);
    if (!ep || (ep.last_success_at !== null && ep.last_success_at >= first.toISOString())) return;
    if (!(await repo.disableEndpoint(tx, ep.id, 'failing', at))) return;
    const cancelled = await repo.cancelPending(tx, ep.id, at);
    const details = { webhook_id: ep.id, reason: 'failing', failures: Number(ep.consecutive_failures), cancelled_deliveries: cancelled };
    await appendEvent(tx, { orgId: ep.org_id, type: 'webhook.disabled', at, data: details });
    await d.audit.record(tx, {
      action: 'webhook.disabled',
      actor: systemActor(ep.org_id),
      target: { type: 'webhook', id: ep.id },
      details,
    });
  };

  // Group commit (as the delivery worker's): outcomes arriving together share one transaction.
  /** An outcome waiting for its commit; `holdsSlot`: its attempt still holds its slot in the job worker until then (see `attempt`). */
  type Pending = { job: Attempted; r: AttemptResult; holdsSlot: boolean; resolve: () => void; reject: (e: unknown) => void };
  /** How many of `group` free a slot when their commit answers them (what a refill in that commit may claim for). */
  const freeing = (group: readonly Pending[]) => group.reduce((n, p) => n + (p.holdsSlot ? 1 : 0), 0);
  const outcomes: Pending[] = [];
  /*
   * One outcome commit at a time, on both dialects: outcomes arriving meanwhile wait and share the next.
   * Four commits in flight on PostgreSQL (endpoint rows locked in id order) was tried: smaller groups, more
   * statements per event, lower throughput and more CPU per event in bench/webhooks.ts.
   */
  let committing = false;
  /*
   * Records the outcomes of first attempts taken under range leases, per endpoint: the lease's compare-and-set
   * first (it moves the cursor past every event recorded, and notes a success), then their rows. Returns what to
   * apply to the lease once the transaction committed; with the lease lost, records nothing and the attempts are
   * dropped (their events are sent again by the worker that took the lease over: at least once).
   */
  const recordRanges = async (tx: Tx, list: Pending[], attempts: WebhookAttemptsTable[], at: string) => {
    const after: (() => void)[] = [];
    const byEndpoint = new Map<string, Pending[]>();
    for (const p of list) {
      const l = byEndpoint.get(p.job.endpoint_id);
      if (l) l.push(p);
      else byEndpoint.set(p.job.endpoint_id, [p]);
    }
    // Endpoint rows in id order: two processes' outcome commits never wait on each other in a cycle.
    for (const id of [...byEndpoint.keys()].sort()) {
      const group = byEndpoint.get(id)!;
      const lease = held.get(id);
      // Taken under a lease since lost (and maybe taken again): not this lease's to record.
      const mine = group.filter((p) => p.job.range === lease);
      if (!lease || mine.length === 0) continue;
      const seqs = new Set(mine.map((p) => Number(p.job.event_seq)));
      const success = mine.some((p) => p.r.ok);
      if (!(await repo.recordRange(tx, id, workerId, cursorAfter(lease, seqs), success ? at : null))) {
        after.push(() => held.get(id) === lease && held.delete(id));
        continue;
      }
      for (const p of mine) {
        if (p.r.skipped) continue;
        if (p.r.ok) {
          attempts.push(attemptRow(p.job, p.r, at));
          d.metrics?.webhookAttempt?.('delivered');
        } else await finishIn(tx, p.job, p.r);
      }
      after.push(() => markFinished(lease, seqs));
    }
    return after;
  };
  /** Records outcomes one by one, each in a transaction of its own (after a group's commit failed: one bad outcome must not hold back the others). */
  const recordOneByOne = async (list: Pending[]) => {
    for (const p of list) {
      try {
        let one: (() => void)[] = [];
        await d.db.transaction().execute(async (tx) => {
          if (!p.job.range) return finishIn(tx, p.job, p.r);
          const attempts: WebhookAttemptsTable[] = [];
          one = await recordRanges(tx, [p], attempts, d.clock.now().toISOString());
          await repo.insertAttempts(tx, attempts);
        });
        for (const f of one) f();
        p.resolve();
      } catch (e) {
        p.reject(e);
      }
    }
  };
  /*
   * PostgreSQL, the common case: every outcome of the group is a first attempt under a range lease that was
   * delivered (or skipped). Per endpoint one autocommit statement records them and, for the refill, takes the
   * endpoint's next events (repo.recordAndTakeRangePg): one round trip per wave instead of ten or so (BEGIN, the
   * lease's compare-and-set, the log's inserts, the take's reads and compare-and-set, COMMIT), each a wait on the
   * server from this process's one connection at a time. What each endpoint's statement records is independent
   * of the others' (its own lease, its own rows), so they need not share a transaction; a statement that fails
   * leaves its endpoint's outcomes to recordOneByOne. Due jobs (retries, replays) are claimed first, as in
   * claimWithFresh, by their own statement when they may be waiting; failures, and every outcome on SQLite (where
   * a statement is a call in this thread, not a round trip), go through the transaction of `flush`.
   */
  /** Whether recordAndTakeRangePg may extend this lease: no dead holder's range left to look up, and no filter. */
  const canTakeHeldPg = (lease: Lease) => lease.next >= lease.recheck && lease.unfiltered === true && lease.org !== undefined;
  /**
   * What a take of recordAndTakeRangePg returned, applied to the lease, `backlog` and `jobs` (the statement has
   * committed). Returns how many events it took.
   */
  const applyTake = async (
    id: string,
    lease: Lease,
    b: { gen: number; deep: boolean },
    row: NonNullable<Awaited<ReturnType<typeof repo.recordAndTakeRangePg>>>,
    want: number,
    at: string,
    leaseUntil: string,
    jobs: Job[],
  ): Promise<number> => {
    if (!row.took) {
      if (row.status !== 'active' || row.deleted_at) settle({ jobs: [], caughtUp: [[id, b.gen]], served: [], apply: [] });
      // Otherwise filtered since (or the lease moved): the general fan-out takes it (fanOutLeased).
      else lease.unfiltered = false;
      return 0;
    }
    const events = (row.events ?? []).map(toEvent);
    const more = events.length === want;
    if (events.length > 0) {
      let secrets = leaseSecrets.get(lease);
      if (!secrets || secretsKey(secrets) !== row.secrets_key) {
        try {
          secrets = await repo.liveSecretsOf(d.db, [id], at);
          leaseSecrets.set(lease, secrets);
        } catch {
          // Fail closed: without its secrets read an attempt signs nothing, fails and is retried on its job.
          secrets = [];
        }
      }
      const { took: _t, events: _e, secrets_key: _k, ...ep } = row;
      const opened: Job['opened'] = {};
      for (const e of events) {
        jobs.push(rangeJob(ep, e, firstDeliveryId(id, e.id), { at, leaseUntil, workerId, secrets, opened, lease }));
        lease.outstanding.push(e.seq);
      }
      lease.to = Math.max(lease.to, events.at(-1)!.seq);
      lease.next = events.at(-1)!.seq;
    }
    settle({ jobs: [], caughtUp: more ? [] : [[id, b.gen]], served: more ? [id] : [], apply: [] });
    return events.length;
  };
  /*
   * PostgreSQL: the loop's claim when every endpoint with events waiting is one whose lease this worker holds and
   * may extend (canTakeHeldPg): each take is one autocommit statement (recordAndTakeRangePg without outcomes)
   * instead of a transaction of six round trips. Null (nothing done) otherwise: the general claim runs.
   */
  const takeHeldPg = async (n: number, due: boolean): Promise<Job[] | null> => {
    if (taking !== null) return null;
    for (const id of backlog.keys()) {
      const lease = held.get(id);
      if (!lease || !canTakeHeldPg(lease)) return null;
    }
    const token = {};
    taking = token;
    try {
      const jobs: Job[] = [];
      if (dueLook(due)) jobs.push(...(await hydrate(await claimIn(d.db, n))));
      let left = n - jobs.length;
      const now = d.clock.now();
      const at = now.toISOString();
      const leaseUntil = new Date(now.getTime() + d.leaseMs).toISOString();
      // In turn, as fanOutLeased: an endpoint served moves to the back.
      for (const [id, b] of [...backlog]) {
        if (left <= 0) break;
        const lease = held.get(id);
        if (!lease || !canTakeHeldPg(lease)) continue;
        const row = await repo.recordAndTakeRangePg(
          d.db,
          {
            id,
            workerId,
            take: true,
            knownTo: lease.to,
            orgId: lease.org!,
            after: lease.next,
            limit: left,
            cursor: 0,
            successAt: null,
            leaseUntil,
            secretsAt: at,
          },
          [],
        );
        if (!row) {
          // Taken over: the general claim looks at it again (it is still in `backlog`).
          if (held.get(id) === lease) held.delete(id);
          continue;
        }
        left -= await applyTake(id, lease, b, row, left, at, leaseUntil, jobs);
      }
      return jobs;
    } finally {
      if (taking === token) taking = null;
    }
  };
  const flushRangesPg = async (group: Pending[]) => {
    const refill = worker.reserve(freeing(group), deepCount > 0);
    const jobs: Job[] = [];
    let dueShort = true;
    let filled = false;
    try {
      const now = d.clock.now();
      const at = now.toISOString();
      const leaseUntil = new Date(now.getTime() + d.leaseMs).toISOString();
      let left = refill?.n ?? 0;
      if (refill && dueLook(refill.due)) {
        try {
          const rows = await claimIn(d.db, left);
          dueShort = rows.length < left;
          left -= rows.length;
          jobs.push(...(await hydrate(rows)));
        } catch (e) {
          // Claimed but unread, or not claimed: they wait out their lease, or the next look finds them (at least once).
          dueShort = false;
          d.logger.error({ err: { type: (e as Error)?.name } }, 'webhooks: claiming due jobs failed');
        }
      }
      const byEndpoint = new Map<string, Pending[]>();
      for (const p of group) {
        const l = byEndpoint.get(p.job.endpoint_id);
        if (l) l.push(p);
        else byEndpoint.set(p.job.endpoint_id, [p]);
      }
      const failed: Pending[] = [];
      // Endpoint rows in id order: two processes' outcome commits never wait on each other in a cycle.
      for (const id of [...byEndpoint.keys()].sort()) {
        const list = byEndpoint.get(id)!;
        const lease = held.get(id);
        // Taken under a lease since lost (and maybe taken again): not this lease's to record.
        const mine = lease ? list.filter((p) => p.job.range === lease) : [];
        if (!lease || mine.length === 0) {
          for (const p of list) p.resolve();
          continue;
        }
        const seqs = new Set(mine.map((p) => Number(p.job.event_seq)));
        const delivered = mine.filter((p) => p.r.ok && !p.r.skipped);
        const b = backlog.get(id);
        // Only an extension of this lease past what it has looked at (no dead holder's range left to look up first).
        const take = left > 0 && b?.deep === true && taking === null && canTakeHeldPg(lease);
        const token = {};
        if (take) taking = token;
        let row: Awaited<ReturnType<typeof repo.recordAndTakeRangePg>>;
        try {
          row = await repo.recordAndTakeRangePg(
            d.db,
            {
              id,
              workerId,
              take,
              knownTo: lease.to,
              orgId: mine[0]!.job.org_id,
              after: lease.next,
              limit: take ? left : 0,
              cursor: cursorAfter(lease, seqs),
              successAt: delivered.length > 0 ? at : null,
              leaseUntil,
              secretsAt: at,
            },
            delivered.map((p) => attemptRow(p.job, p.r, at)),
          );
        } catch {
          failed.push(...list);
          continue;
        } finally {
          if (taking === token) taking = null;
        }
        if (!row) {
          // The lease is no longer this worker's: nothing was recorded (the worker that took it over sends these again).
          if (held.get(id) === lease) held.delete(id);
          for (const p of list) p.resolve();
          continue;
        }
        markFinished(lease, seqs);
        for (const _ of delivered) d.metrics?.webhookAttempt?.('delivered');
        if (take && b) left -= await applyTake(id, lease, b, row, left, at, leaseUntil, jobs);
        for (const p of list) p.resolve();
      }
      // Handed over before the finished jobs free their slots (the resolves below), so the loop does not claim for them as well.
      filled = true;
      refill?.fill(jobs, false, dueShort);
      if (failed.length > 0) await recordOneByOne(failed);
    } finally {
      if (!filled) refill?.fill([], true);
    }
  };
  const flush = async () => {
    if (committing) return;
    committing = true;
    try {
      while (outcomes.length > 0) {
        const group = outcomes.splice(0, 256);
        if (d.dialect === 'postgres' && group.every((p) => p.job.range && (p.r.ok || p.r.skipped))) {
          try {
            await flushRangesPg(group);
          } catch (e) {
            // Not expected (each statement's failure is handled in it): the outcomes not answered yet fail.
            d.logger.error({ err: { type: (e as Error)?.name } }, 'webhooks: recording outcomes failed');
            for (const p of group) p.reject(e);
          }
          continue;
        }
        // The next jobs are claimed in this same commit (one commit, not two): as many as would be free.
        const refill = worker.reserve(freeing(group), deepCount > 0);
        let claimed: Claimed = { rows: [], fresh: null, dueShort: true };
        const token = {};
        let after: (() => void)[] = [];
        try {
          await d.db.transaction().execute(async (tx) => {
            // The common case in a few statements: successes by status code, their log rows in one insert.
            const at = d.clock.now().toISOString();
            const attempts: WebhookAttemptsTable[] = [];
            after = await recordRanges(
              tx,
              group.filter((p) => p.job.range),
              attempts,
              at,
            );
            const ok = group.filter((p) => p.r.ok && !p.job.range);
            const byCode = new Map<number, Pending[]>();
            for (const p of ok) {
              const list = byCode.get(p.r.status!);
              if (list) list.push(p);
              else byCode.set(p.r.status!, [p]);
            }
            const endpoints = new Set<string>();
            for (const [code, list] of byCode) {
              const done = new Set(
                await repo.recordDelivered(
                  tx,
                  workerId,
                  list.map((p) => p.job.id),
                  code,
                  at,
                ),
              );
              for (const p of list) {
                if (!done.has(p.job.id)) continue;
                endpoints.add(p.job.endpoint_id);
                attempts.push(attemptRow(p.job, p.r, at));
                d.metrics?.webhookAttempt?.('delivered');
              }
            }
            await repo.insertAttempts(tx, attempts);
            for (const id of endpoints) await repo.noteResult(tx, id, true, at);
            for (const p of group) if (!p.r.ok && !p.job.range) await finishIn(tx, p.job, p.r);
            if (refill) claimed = await claimWithFresh(tx, refill.n, refill.due, true, token);
          });
          for (const f of after) f();
          if (claimed.fresh) settle(claimed.fresh);
          // Handed over before the finished jobs free their slots, so the loop does not claim for them as well.
          if (refill) {
            try {
              refill.fill([...(await hydrate(claimed.rows)), ...(claimed.fresh?.jobs ?? [])], false, claimed.dueShort);
            } catch (e) {
              // Leased but unread: they wait out their lease and are claimed again (at least once still holds).
              refill.fill([], true);
              d.logger.error({ err: { type: (e as Error)?.name } }, 'webhooks: reading claimed jobs failed');
            }
          }
          for (const p of group) p.resolve();
        } catch {
          refill?.fill([], true);
          // One bad outcome must not hold back the others.
          await recordOneByOne(group);
        } finally {
          if (taking === token) taking = null;
        }
      }
    } finally {
      committing = false;
    }
  };
  /*
   * When outcomes commit: once no request is waiting for its answer (every attempt in flight has come back),
   * or COMMIT_WINDOW_MS after the first outcome waiting, whichever is first. Committing each handful of
   * answers as it arrived (one turn of the event loop) made small groups and sent the next requests a few
   * at a time, each write waking the receiver and each answer waking this process: per event, more commits,
   * more statements and more system calls. Waiting for the whole wave makes one commit, one claim and one
   * burst of requests per wave (bench/webhooks.ts: CPU per event); the window bounds what a slow receiver
   * costs the others. At a low rate nothing else is in flight, so an answer commits at once.
   */
  let awaiting = 0;
  let scheduled = false;
  let windowTimer: NodeJS.Timeout | null = null;
  const flushSoon = () => {
    if (windowTimer) clearTimeout(windowTimer);
    windowTimer = null;
    if (scheduled) return;
    scheduled = true;
    setImmediate(() => {
      scheduled = false;
      void flush();
    });
  };
  const finish = (job: Attempted, r: AttemptResult, holdsSlot = true) =>
    new Promise<void>((resolve, reject) => {
      outcomes.push({ job, r, holdsSlot, resolve, reject });
      if (awaiting === 0 || outcomes.length >= 256) flushSoon();
      else
        windowTimer ??= setTimeout(() => {
          windowTimer = null;
          flushSoon();
        }, COMMIT_WINDOW_MS);
    });

  const cancel = (job: Attempted) =>
    job.range
      ? // No row to cancel: the outcome commit only moves the range's cursor past it.
        finish(job, { ok: false, status: null, error: 'endpoint_inactive', refused: false, latencyMs: 0, skipped: true })
      : cancelRow(job);
  const cancelRow = (job: Attempted) =>
    d.db.transaction().execute((tx) =>
      repo.recordOutcome(
        tx,
        { id: job.id, workerId },
        {
          status: 'cancelled',
          next_attempt_at: job.next_attempt_at,
          last_status_code: null,
          last_error: 'endpoint_inactive',
          updated_at: d.clock.now().toISOString(),
        },
      ),
    );

  const attempt = async (job: Job) => {
    const ep = job.endpoint;
    if (ep?.status !== 'active' || ep.deleted_at) {
      await cancel(job);
      return;
    }
    const event = job.event ?? (await eventById(d.db, job.org_id, job.event_id));
    if (event?.org_id !== job.org_id) {
      await cancel(job);
      return;
    }
    const started = performance.now();
    const nowDate = d.clock.now();
    let result: AttemptResult;
    try {
      // Checked again at every attempt: DNS may answer differently than when the endpoint was created.
      const o = job.opened;
      o.url ??= openOnce(ep.url_sealed, webhookUrlAad(ep));
      const checked = await checkWebhookUrl(o.url, d.allowHosts, d.lookup);
      const body = JSON.stringify(event);
      const nowIso = nowDate.toISOString();
      o.secrets ??= job.secrets.map((x) => ({ expires_at: x.expires_at, value: openOnce(x.secret_sealed, webhookSecretAad(x)) }));
      // Still live now (a job may have waited for its slot since the claim read them).
      const live = o.secrets.filter((x) => x.expires_at === null || x.expires_at > nowIso).map((x) => x.value);
      // Never an unsigned delivery: an endpoint without a live secret fails closed.
      if (live.length === 0) throw new Error('no live signing secret');
      const headers = signDelivery(live, event.id, nowDate, body);
      awaiting++;
      let res: Awaited<ReturnType<typeof postWebhook>>;
      try {
        res = await postWebhook(checked, headers, body, d.timeoutMs, agents);
      } finally {
        awaiting--;
      }
      const ok = res.status !== null && res.status >= 200 && res.status < 300;
      const error =
        res.error ??
        (ok
          ? null
          : res.status !== null && res.status >= 300 && res.status < 400
            ? `redirect_refused (${res.status})`
            : `http_${res.status}`);
      result = { ok, status: res.status, error, refused: false, latencyMs: performance.now() - started };
    } catch (e) {
      const refused = isAppError(e) && e.code === 'webhook_url_refused';
      const reason = refused ? String(e.extra?.reason ?? 'refused') : 'internal';
      if (!refused) d.logger.error({ delivery: job.id, err: { type: (e as Error)?.name } }, 'webhooks: attempt failed internally');
      result = {
        ok: false,
        status: null,
        error: refused ? `url_refused: ${reason}` : 'internal',
        refused,
        latencyMs: performance.now() - started,
      };
    }
    /*
     * While the worker runs, an attempt whose answer is in gives its slot back at once, its outcome still to commit
     * (at most `concurrency` such outcomes at a time; past that an attempt waits for its commit, as it always does
     * without a running worker, where `runOnce` returns once the outcomes are recorded). The next requests then go
     * out while the last ones' outcomes commit, instead of after: on PostgreSQL a commit is a wait on the server
     * (round trip and WAL flush) during which no request was in flight. Not on SQLite: there a commit runs on this
     * thread, so no request could go out meanwhile, and freed slots only made more, smaller claims (statements per
     * event 0.29 -> 0.36 and a p99 at 200 events/s of 450 ms against 117 in one bench/webhooks.ts pair at load 18). At most `concurrency` requests are in flight
     * as before; what is not committed is only this process's to record (a crash before the commit sends the events
     * again: at least once), and `stop` gives the range leases back only once every outcome is recorded.
     */
    if (!live || d.dialect !== 'postgres' || unrecorded.size >= d.concurrency) return finish(job, result);
    const done = finish(job, result, false);
    unrecorded.add(done);
    void done
      .catch((e: unknown) =>
        d.logger.error({ delivery: job.id, err: { type: (e as Error)?.name } }, 'webhooks: recording an outcome failed'),
      )
      .finally(() => unrecorded.delete(done));
  };
  /** Outcomes of attempts that gave their slot back before their commit (see `attempt`). */
  const unrecorded = new Set<Promise<void>>();

  /** Claims up to `n` due jobs in `ex` (the root handle, or the transaction recording outcomes). */
  /*
   * Jobs whose lease ran out (a dead worker's) are looked for at most once a second: a lease runs for
   * MAILWARD_WEBHOOK_LEASE_SECONDS anyway, and with few jobs due every claim would otherwise run that
   * second statement too.
   */
  let expiredAt = 0;
  const claimIn = async (ex: Executor, n: number) => {
    const now = d.clock.now();
    const expired = Date.now() - expiredAt >= 1000;
    if (expired) expiredAt = Date.now();
    dueAt = Date.now();
    // Range leases that ran out too (a dead worker's first attempts): taken over by the next fan-out.
    if (expired) for (const id of await repo.expiredRanges(ex, workerId, now.toISOString())) markBacklog(id);
    dueKicked = false;
    const rows = await repo.claimDeliveries(ex, d.dialect, workerId, now, d.leaseMs, n, expired);
    dueFull = rows.length >= n;
    return rows;
  };
  /*
   * Whether PostgreSQL's one-statement claims (takeHeldPg, flushRangesPg) look for due jobs first: when jobs may
   * have become due other than by time (a replay or a fan-out without a worker kicked it: `dueKicked`), when the last
   * look found as many as it asked for (`dueFull`: more may be waiting), or once every MAILWARD_WEBHOOK_POLL_MS
   * (retries come due by time). The job worker's `due` is also set by every wake-up for new events, which are
   * fresh work, not due jobs: looking each time was one more statement per claim.
   */
  let dueKicked = false;
  let dueFull = false;
  const dueLook = (due: boolean) => (due && (dueKicked || dueFull)) || Date.now() - dueAt >= d.pollMs;
  /*
   * Due jobs (retries, replays, a dead worker's) are looked for first, then events past the cursors fill what
   * is left. While fresh events keep every slot busy the worker is never idle long enough for its poll timer,
   * so the look for due jobs that the last one found none of still runs at least every MAILWARD_WEBHOOK_POLL_MS.
   */
  let dueAt = 0;
  type Claimed = { rows: WebhookDeliveriesTable[]; fresh: Fresh | null; dueShort: boolean };
  /*
   * One fan-out at a time in this worker (the loop's claim and an outcome commit's refill run in transactions of
   * their own, on PostgreSQL at once): a take that extends this worker's lease then fails its compare-and-set only
   * when the lease was lost. The holder's token is cleared when its transaction ends.
   */
  let taking: object | null = null;
  const claimWithFresh = async (ex: Executor, n: number, due: boolean, deepOnly: boolean, token: object): Promise<Claimed> => {
    const look = due || Date.now() - dueAt >= d.pollMs;
    const rows = look ? await claimIn(ex, n) : [];
    let fresh: Fresh | null = null;
    if (rows.length < n && (deepOnly ? deepCount : backlog.size) > 0 && taking === null) {
      taking = token;
      fresh = await fanOutLeased(ex, n - rows.length, deepOnly);
    }
    return { rows, fresh, dueShort: !look || rows.length < n };
  };
  const claim = async (n: number, due: boolean): Promise<Job[]> => {
    if (backlog.size === 0) return hydrate(await claimIn(d.db, n));
    if (d.dialect === 'postgres') {
      const jobs = await takeHeldPg(n, due);
      if (jobs) return jobs;
    }
    const token = {};
    let claimed: Claimed;
    try {
      claimed = await d.db.transaction().execute(async (tx) => {
        /*
         * The loop's claim records no outcome (due jobs leased, events taken under a range lease, at most a cursor
         * moved past events nothing is sent for): on PostgreSQL its commit does not wait for the WAL flush
         * (webhooks-repo.ts, TAKE_ONLY_PG, says why that is safe). Outcome commits (flush, recordOneByOne, cancelRow)
         * never do this and stay synchronous.
         */
        if (d.dialect === 'postgres') await repo.commitAsynchronouslyPg(tx);
        return claimWithFresh(tx, n, due, false, token);
      });
      if (claimed.fresh) settle(claimed.fresh);
    } finally {
      if (taking === token) taking = null;
    }
    return [...(await hydrate(claimed.rows)), ...(claimed.fresh?.jobs ?? [])];
  };
  // The claimed jobs' events, endpoints and live secrets in three queries, not three per attempt.
  const hydrate = async (jobs: WebhookDeliveriesTable[]): Promise<Job[]> => {
    if (jobs.length === 0) return [];
    const endpointIds = [...new Set(jobs.map((j) => j.endpoint_id))];
    const missing = [...new Set(jobs.map((j) => j.event_id))].filter((id) => !recentEvents.has(id));
    const [read, endpoints, secrets] = await Promise.all([
      eventsByIds(d.db, missing),
      repo.endpointsByIds(d.db, endpointIds),
      repo.liveSecretsOf(d.db, endpointIds, d.clock.now().toISOString()),
    ]);
    const eventsById = new Map(read.map((e) => [e.id, e]));
    for (const j of jobs) {
      const kept = recentEvents.get(j.event_id);
      if (kept) eventsById.set(kept.id, kept);
    }
    const endpointById = new Map(endpoints.map((e) => [e.id, e]));
    // Per endpoint once: its secrets and the slot its opened values are kept in for this claim.
    const shared = new Map<string, { secrets: WebhookSecretsTable[]; opened: Job['opened'] }>();
    for (const id of endpointIds) shared.set(id, { secrets: secrets.filter((s) => s.endpoint_id === id), opened: {} });
    return jobs.map((j) => {
      const e = shared.get(j.endpoint_id)!;
      return { ...j, event: eventsById.get(j.event_id), endpoint: endpointById.get(j.endpoint_id), secrets: e.secrets, opened: e.opened };
    });
  };

  const worker = createJobWorker<Job>(
    {
      name: 'webhooks',
      id: (j) => j.id,
      claim: (_w, n, _lease, due) => claim(n, due),
      renew: async (_w, until) => {
        await repo.renewLeases(d.db, d.dialect, workerId, until.toISOString());
        if (held.size > 0) await repo.renewRanges(d.db, workerId, until.toISOString());
      },
      run: (job) => attempt(job),
      nextDue: () => repo.nextDue(d.db, workerId),
    },
    {
      workerId,
      concurrency: d.concurrency,
      prefetch: d.concurrency,
      pollMs: d.pollMs,
      leaseMs: d.leaseMs,
      logger: d.logger,
      now: () => d.clock.now(),
      hasFresh: () => backlog.size > 0,
    },
  );
  kickWorker = worker.kick;
  laterWorker = worker.dueAt;

  /*
   * Wake-ups are merged per organisation over FANOUT_MERGE_MS: a busy organisation commits events many times a
   * second (several per delivered message), and each fan-out first reads the organisation's active endpoints.
   * The events are read from the log by cursor, so a merged wake-up loses none; it only waits a few milliseconds.
   */
  const wokenOrgs = new Set<string>();
  let mergeTimer: NodeJS.Timeout | null = null;
  const wake = (orgId: string) => {
    wokenOrgs.add(orgId);
    mergeTimer ??= setTimeout(() => {
      mergeTimer = null;
      const orgs = [...wokenOrgs];
      wokenOrgs.clear();
      for (const org of orgs) void fanOut(org);
    }, FANOUT_MERGE_MS);
  };

  let unsubscribe: (() => void) | null = null;
  /** Starts fan-out (woken by the event feed of every process sharing the store) and delivery. */
  const start = () => {
    if (unsubscribe) return;
    live = true;
    unsubscribe = d.feed.subscribe((w) => {
      if (w === '*') void fanOutAll();
      else wake(w.orgId);
    });
    worker.start();
    void fanOutAll();
  };
  const stop = async () => {
    unsubscribe?.();
    unsubscribe = null;
    live = false;
    backlog.clear();
    deepCount = 0;
    if (mergeTimer) clearTimeout(mergeTimer);
    mergeTimer = null;
    wokenOrgs.clear();
    await Promise.all(running.values());
    await worker.stop();
    // Attempts that gave their slot back before their outcome committed: recorded before the leases go back.
    await Promise.allSettled([...unrecorded]);
    // Every attempt has come back and its outcome is recorded: the range leases go back (another worker takes them at once).
    try {
      if (held.size > 0) await repo.releaseRanges(d.db, workerId);
    } catch (e) {
      d.logger.error({ err: { type: (e as Error)?.name } }, 'webhooks: releasing range leases failed');
    }
    held.clear();
    agents.http.destroy();
    agents.https.destroy();
  };

  const kick = () => {
    dueKicked = true;
    worker.kick();
  };
  return { start, stop, fanOut, fanOutAll, runOnce: worker.runOnce, kick, workerId };
};

export type WebhookWorker = ReturnType<typeof createWebhookWorker>;
