import { EVENT_COLUMNS, hexOfStored } from './audit-columns.js';
import { sql } from 'kysely';
import type { Clock } from '../kernel/clock.js';
import { newId } from '../kernel/ids.js';
import type { Logger } from '../kernel/log.js';
import { compileOnce, type Db, type Dialect, type Executor, inGroupCommit, runCompiled } from '../store/db.js';
import { type Lead, notifyOnCommit } from '../store/notify.js';
import type { AuditPendingInsert } from '../store/schema.js';
import { type ChainedEvent, chainedOfRow, type EventRow } from './audit-chain.js';
import { atBound, eventRows, idIs, selectEventRows } from './event-rows.js';
import { createIntegrator } from './integrator.js';
import { canonicalJson } from './canonical.js';

export type ChainEntry = { type: string; id: string; name: string };

/** Who acted. Audit imports no domain: callers describe the actor in these terms. */
export type AuditActor = {
  type: 'human' | 'agent' | 'system' | 'anonymous';
  id: string | null;
  orgId: string | null;
  chain: ChainEntry[];
};

export type AuditInput = {
  action: string;
  actor: AuditActor;
  orgId?: string | null;
  target?: { type: string; id: string } | null;
  outcome?: 'success' | 'denied' | 'error';
  requestId?: string | null;
  clientIp?: string | null;
  contentHash?: string | null;
  /** Never PHI, bodies, addresses or secrets. */
  details?: Record<string, unknown>;
};

export type AuditEvent = Omit<ChainedEvent, 'delegation_chain' | 'details'> & {
  delegation_chain: ChainEntry[];
  details: Record<string, unknown>;
  prev_hash: string;
  hash: string;
};

/** The event a stored row stands for (see audit-chain.ts). */
export const toChained = (r: EventRow): ChainedEvent => chainedOfRow(r);

export const toAuditEvent = (r: EventRow): AuditEvent => {
  const c = toChained(r);
  return {
    ...c,
    delegation_chain: c.delegation_chain as ChainEntry[],
    details: c.details as Record<string, unknown>,
    prev_hash: r.prev_hash,
    hash: r.hash,
  };
};

export type AuditQuery = {
  orgId: string | null;
  actorId?: string;
  action?: string;
  targetId?: string;
  since?: string;
  until?: string;
  afterSeq?: number;
  limit: number;
};

type Deps = {
  db: Db;
  dialect: Dialect;
  clock: Clock;
  /** Milliseconds between the integrator's passes (MAILWARD_AUDIT_INTEGRATE_MS); default 100. */
  integrateMs?: number;
  logger?: Logger;
  /** Leadership of the integrator among the processes sharing the store (`Store.lead`): only the leader integrates on wake-ups. */
  lead?: Lead;
  /** Tests only: the integrator's safety-net delay in a process that does not lead (integrator.ts `followerMs`). */
  followerMs?: number;
};

/** The pending row's columns, in one order: the prepared insert's parameters. */
const PENDING_COLUMNS = EVENT_COLUMNS.filter((c) => c !== 'seq' && c !== 'hash');

/**
 * A resolved principal's delegation chain is one array reused by every request
 * of that key (auth cache), so its canonical form is computed once per array.
 * The cache is checked against the array's length and a shallow copy of its
 * entries, so a chain changed in place is canonicalized again, never stale.
 */
const chainCache = new WeakMap<readonly ChainEntry[], { entries: ChainEntry[]; fields: string[]; json: string }>();
const canonicalChain = (chain: ChainEntry[]): string => {
  const hit = chainCache.get(chain);
  if (
    hit &&
    hit.entries.length === chain.length &&
    chain.every(
      (e, i) =>
        e === hit.entries[i] &&
        e.type === hit.fields[3 * i] &&
        e.id === hit.fields[3 * i + 1] &&
        e.name === hit.fields[3 * i + 2] &&
        Object.keys(e).length === 3,
    )
  ) {
    return hit.json;
  }
  const json = canonicalJson(chain);
  chainCache.set(chain, { entries: [...chain], fields: chain.flatMap((e) => [e.type, e.id, e.name]), json });
  return json;
};

/** The store notification a commit with audit events sends (`!`: not a domain event; store/notify.ts). */
export const AUDIT_WAKE = '!audit';

export const createAuditService = ({ db, dialect, clock, integrateMs = 100, logger, lead, followerMs }: Deps) => {
  const integrator = createIntegrator({
    db,
    dialect,
    intervalMs: integrateMs,
    logger,
    ...(lead ? { lead } : {}),
    ...(followerMs !== undefined ? { followerMs } : {}),
  });
  const announced = new WeakSet<Executor>();
  const insertPending = compileOnce(
    (v) =>
      db.insertInto('audit_pending').values(Object.fromEntries(PENDING_COLUMNS.map((c, i) => [c, v[i]])) as unknown as AuditPendingInsert),
    PENDING_COLUMNS.length,
  );

  /**
   * Appends one event, UNSEQUENCED, inside the caller's transaction (45 CFR 164.312(b)): if this fails,
   * the caller's change fails with it, and the event commits only with the change. It takes no shared
   * lock: the integrator (integrator.ts) gives it its seq and chain hash within MAILWARD_AUDIT_INTEGRATE_MS
   * of the commit. Returns the event's id (`eventHashRef(id)` names its chain hash in another event).
   */
  const record = async (tx: Executor, input: AuditInput): Promise<{ id: string }> => {
    const target = input.target ?? null;
    const row: AuditPendingInsert = {
      id: newId('event'),
      at: clock.now().toISOString(),
      org_id: input.orgId !== undefined ? input.orgId : input.actor.orgId,
      action: input.action,
      actor_type: input.actor.type,
      actor_id: input.actor.id,
      // Stored in RFC 8785 form, as rowOfChained does: the integrator splices the canonical event from them.
      delegation_chain: canonicalChain(input.actor.chain),
      target_type: target?.type ?? null,
      target_id: target?.id ?? null,
      outcome: input.outcome ?? 'success',
      request_id: input.requestId ?? null,
      client_ip: input.clientIp ?? null,
      content_hash: input.contentHash ?? null,
      details: canonicalJson(input.details ?? {}),
    };
    await runCompiled(tx, insertPending(...PENDING_COLUMNS.map((c) => row[c])));
    // Wakes the integrator of every process once this transaction commits (once per transaction).
    if (!announced.has(tx)) {
      announced.add(tx);
      await notifyOnCommit(tx, AUDIT_WAKE);
    }
    return { id: row.id };
  };

  /**
   * Records an event in a transaction of its own (denied attempts, which change nothing else). Events
   * arriving together share one commit (inGroupCommit); each caller returns after that commit, without
   * waiting for the event's integration (its seq comes within MAILWARD_AUDIT_INTEGRATE_MS).
   */
  const recordAlone = (input: AuditInput): Promise<{ id: string }> => inGroupCommit(db, (tx) => record(tx, input));

  /** recordAlone, then waits for the event's integration: for a caller that needs its seq and chain hash. */
  const recordSequenced = async (input: AuditInput): Promise<{ id: string; seq: number; hash: string }> =>
    sequenced((await recordAlone(input)).id);

  /** Waits for a committed event's integration and answers its seq and chain hash (call it outside any transaction). */
  const sequenced = async (id: string): Promise<{ id: string; seq: number; hash: string }> => {
    const done = await integrator.sync();
    const hit = done.get(id) ?? (await db.selectFrom('audit_events').select(['seq', 'hash']).where(idIs('id', id)).executeTakeFirst());
    if (!hit) throw new Error('audit: a committed event was not integrated');
    return { id, seq: Number(hit.seq), hash: typeof hit.hash === 'string' ? hit.hash : hexOfStored(hit.hash) };
  };

  /** Resolves once every event committed before the call has its seq (call it outside any transaction). */
  const sync = async (): Promise<void> => {
    await integrator.sync();
  };

  /** Events of one organisation, oldest first, keyset-paginated by seq; read in `ex` (the caller's transaction, so its read event commits with it). */
  const list = async (q: AuditQuery, ex: Executor = db): Promise<AuditEvent[]> => {
    if (ex === db) await sync();
    let query = selectEventRows(ex).orderBy('e.seq', 'asc').limit(q.limit);
    if (q.orgId !== null) query = query.where(idIs('e.org_id', q.orgId));
    if (q.actorId) query = query.where(idIs('e.actor_id', q.actorId));
    if (q.action) query = query.where('e.action', '=', q.action);
    if (q.targetId) query = query.where(idIs('e.target_id', q.targetId));
    if (q.since) query = query.where('e.at', '>=', atBound(q.since));
    if (q.until) query = query.where('e.at', '<', atBound(q.until));
    if (q.afterSeq !== undefined) query = query.where('e.seq', '>', q.afterSeq);
    return (await eventRows(query)).map(toAuditEvent);
  };

  const count = async (): Promise<number> => {
    await sync();
    const r = await db.selectFrom('audit_events').select(sql<number>`count(*)`.as('n')).executeTakeFirstOrThrow();
    return Number(r.n);
  };

  /** One event by seq, or undefined (also when it belongs to another organisation: callers answer 404). */
  const get = async (seq: number, orgId: string | null): Promise<AuditEvent | undefined> => {
    await sync();
    let query = selectEventRows(db).where('e.seq', '=', seq);
    if (orgId !== null) query = query.where(idIs('e.org_id', orgId));
    const [row] = await eventRows(query);
    return row ? toAuditEvent(row) : undefined;
  };

  return {
    record,
    recordAlone,
    recordSequenced,
    sequenced,
    sync,
    list,
    count,
    get,
    /** Starts the integrator (every process runs it; the leader integrates on wake-ups): a pass now, then on wake-ups. */
    startIntegrator: integrator.start,
    /** Whether this process's integrator leads (runs the passes on wake-ups). */
    isIntegratorLeader: integrator.isLeader,
    /** A store notification arrived: `!audit` (audit events committed) or `*` (another SQLite process committed). */
    wakeIntegrator: (payload: string) => {
      if (payload === AUDIT_WAKE || payload === '*') integrator.kick();
    },
    /** Stops them after integrating what is pending (on close). */
    stopIntegrator: integrator.stop,
    pendingCount: integrator.pendingCount,
    /** Each batch this process integrates, after its commit (integrator.ts `onIntegrated`). */
    onIntegrated: integrator.onIntegrated,
  };
};

export type AuditService = ReturnType<typeof createAuditService>;
