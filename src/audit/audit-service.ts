import { sql } from 'kysely';
import type { Clock } from '../kernel/clock.js';
import { newId } from '../kernel/ids.js';
import type { Db, Dialect, Executor } from '../store/db.js';
import type { AuditEventsTable } from '../store/schema.js';
import { type ChainedEvent, chainedOfRow, chainHash, rowOfChained } from './audit-chain.js';

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
export const toChained = (r: AuditEventsTable): ChainedEvent => chainedOfRow(r);

export const toAuditEvent = (r: AuditEventsTable): AuditEvent => {
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

type Deps = { db: Db; dialect: Dialect; clock: Clock };

export const createAuditService = ({ db, dialect, clock }: Deps) => {
  /**
   * Appends one event to the hash chain inside the caller's transaction
   * (45 CFR 164.312(b)). If this fails, the caller's change fails with it.
   * The head row is locked, so concurrent appenders form one gapless chain.
   */
  const record = async (tx: Executor, input: AuditInput): Promise<{ seq: number; hash: string }> => {
    let headQuery = tx.selectFrom('audit_head').select(['seq', 'hash']).where('id', '=', 1);
    if (dialect === 'postgres') headQuery = headQuery.forUpdate();
    const head = await headQuery.executeTakeFirstOrThrow();
    const seq = Number(head.seq) + 1;
    const event: ChainedEvent = {
      seq,
      id: newId('event'),
      at: clock.now().toISOString(),
      org_id: input.orgId !== undefined ? input.orgId : input.actor.orgId,
      action: input.action,
      actor: { type: input.actor.type, id: input.actor.id },
      delegation_chain: input.actor.chain,
      target: input.target ?? null,
      outcome: input.outcome ?? 'success',
      request_id: input.requestId ?? null,
      client_ip: input.clientIp ?? null,
      content_hash: input.contentHash ?? null,
      details: input.details ?? {},
    };
    const hash = chainHash(head.hash, event);
    await tx
      .insertInto('audit_events')
      .values({ ...rowOfChained(event, head.hash, hash), outcome: event.outcome as AuditEventsTable['outcome'] })
      .execute();
    await tx.updateTable('audit_head').set({ seq, hash }).where('id', '=', 1).execute();
    return { seq, hash };
  };

  /** Records an event in a transaction of its own (denied attempts, which change nothing else). */
  const recordAlone = (input: AuditInput) => db.transaction().execute((tx) => record(tx, input));

  /** Events of one organisation, oldest first, keyset-paginated by seq. */
  const list = async (q: AuditQuery): Promise<AuditEvent[]> => {
    let query = db.selectFrom('audit_events').selectAll().orderBy('seq', 'asc').limit(q.limit);
    if (q.orgId !== null) query = query.where('org_id', '=', q.orgId);
    if (q.actorId) query = query.where('actor_id', '=', q.actorId);
    if (q.action) query = query.where('action', '=', q.action);
    if (q.targetId) query = query.where('target_id', '=', q.targetId);
    if (q.since) query = query.where('at', '>=', q.since);
    if (q.until) query = query.where('at', '<', q.until);
    if (q.afterSeq !== undefined) query = query.where('seq', '>', q.afterSeq);
    const rows = await query.execute();
    return rows.map(toAuditEvent);
  };

  const count = async (): Promise<number> => {
    const r = await db
      .selectFrom('audit_events')
      .select(sql<number>`count(*)`.as('n'))
      .executeTakeFirstOrThrow();
    return Number(r.n);
  };

  /** One event by seq, or undefined (also when it belongs to another organisation: callers answer 404). */
  const get = async (seq: number, orgId: string | null): Promise<AuditEvent | undefined> => {
    let query = db.selectFrom('audit_events').selectAll().where('seq', '=', seq);
    if (orgId !== null) query = query.where('org_id', '=', orgId);
    const row = await query.executeTakeFirst();
    return row ? toAuditEvent(row) : undefined;
  };

  return { record, recordAlone, list, count, get };
};

export type AuditService = ReturnType<typeof createAuditService>;
