import { EVENT_COLUMNS } from './audit-columns.js';
import { createHash } from 'node:crypto';
import { sql } from 'kysely';
import type { Clock } from '../kernel/clock.js';
import { newId } from '../kernel/ids.js';
import { compileOnce, type Db, type Dialect, type Executor, inGroupCommit, rollbacksIn } from '../store/db.js';
import type { AuditEventsTable } from '../store/schema.js';
import { type ChainedEvent, chainedOfRow, type EventRow } from './audit-chain.js';
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

const q = JSON.stringify;

/**
 * The append path's statements, built by Kysely's builders but compiled once:
 * building and compiling them anew was a large share of an append's cost.
 */
const compileAppend = (db: Db, dialect: Dialect) => {
  let head = db.selectFrom('audit_head').select(['seq', 'hash']).where('id', '=', 1);
  if (dialect === 'postgres') head = head.forUpdate();
  const insert = compileOnce(
    (v) => db.insertInto('audit_events').values(Object.fromEntries(EVENT_COLUMNS.map((c, i) => [c, v[i]])) as unknown as AuditEventsTable),
    EVENT_COLUMNS.length,
  );
  const update = compileOnce((v) => db.updateTable('audit_head').set({ seq: v[0], hash: v[1] }).where('id', '=', 1), 2);
  // PostgreSQL: the event and the new head in one statement, one round trip
  // instead of two (SQLite has no INSERT inside WITH, so it runs both above).
  const n = EVENT_COLUMNS.length;
  const insertAndMove =
    dialect === 'postgres'
      ? compileOnce(
          (v) =>
            db
              .with('appended', (qb) =>
                qb
                  .insertInto('audit_events')
                  .values(Object.fromEntries(EVENT_COLUMNS.map((c, i) => [c, v[i]])) as unknown as AuditEventsTable),
              )
              .updateTable('audit_head')
              .set({ seq: v[n], hash: v[n + 1] })
              .where('id', '=', 1),
          n + 2,
        )
      : undefined;
  return {
    head: head.compile(),
    /** The statements that store `row` and move the head to it. */
    write: (row: EventRow) =>
      insertAndMove
        ? [insertAndMove(...EVENT_COLUMNS.map((c) => row[c]), row.seq, row.hash)]
        : [insert(...EVENT_COLUMNS.map((c) => row[c])), update(row.seq, row.hash)],
  };
};

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

export const createAuditService = ({ db, dialect, clock }: Deps) => {
  const append = compileAppend(db, dialect);

  /**
   * The head as a transaction last wrote it. Once a transaction has appended it
   * holds the head (FOR UPDATE on PostgreSQL, the write lock on SQLite) until
   * it ends, so its next append need not read the head again; a rollback to a
   * savepoint may undo appends, so after one (rollbacksIn changes) the head is
   * read again. Only `record` moves the head; were it moved past this cache by
   * other means, the next seq would already exist and the primary key would
   * refuse the append (the caller fails; the chain cannot fork).
   */
  const heads = new WeakMap<Executor, { seq: number; hash: string; rollbacks: number }>();

  /**
   * Appends one event to the hash chain inside the caller's transaction
   * (45 CFR 164.312(b)). If this fails, the caller's change fails with it.
   * The head row is locked, so concurrent appenders form one gapless chain.
   */
  const record = async (tx: Executor, input: AuditInput): Promise<{ seq: number; hash: string }> => {
    const rollbacks = tx.isTransaction ? rollbacksIn(tx) : -1;
    let head = tx.isTransaction ? heads.get(tx) : undefined;
    if (!head || head.rollbacks !== rollbacks) {
      const { rows } = await tx.executeQuery<{ seq: number | string; hash: string }>(append.head);
      if (!rows[0]) throw new Error('audit: the chain head row is missing');
      head = { seq: Number(rows[0].seq), hash: rows[0].hash, rollbacks };
    }
    const seq = head.seq + 1;
    const target = input.target ?? null;
    const row: EventRow = {
      seq,
      id: newId('event'),
      at: clock.now().toISOString(),
      org_id: input.orgId !== undefined ? input.orgId : input.actor.orgId,
      action: input.action,
      actor_type: input.actor.type,
      actor_id: input.actor.id,
      // Stored in RFC 8785 form, as rowOfChained does.
      delegation_chain: canonicalChain(input.actor.chain),
      target_type: target?.type ?? null,
      target_id: target?.id ?? null,
      outcome: input.outcome ?? 'success',
      request_id: input.requestId ?? null,
      client_ip: input.clientIp ?? null,
      content_hash: input.contentHash ?? null,
      details: canonicalJson(input.details ?? {}),
      prev_hash: head.hash,
      hash: '',
    };
    // chainHash(prev, event) without canonicalizing the event a second time:
    // the same RFC 8785 text, spliced from the already canonical columns
    // (members in JCS order; audit-service.test.ts checks it against chainHash).
    const canonical = `{"action":${q(row.action)},"actor":{"id":${q(row.actor_id)},"type":${q(row.actor_type)}},"at":${q(row.at)},"client_ip":${q(row.client_ip)},"content_hash":${q(row.content_hash)},"delegation_chain":${row.delegation_chain},"details":${row.details},"id":${q(row.id)},"org_id":${q(row.org_id)},"outcome":${q(row.outcome)},"request_id":${q(row.request_id)},"seq":${seq},"target":${target ? `{"id":${q(target.id)},"type":${q(target.type)}}` : 'null'}}`;
    row.hash = createHash('sha256').update(head.hash, 'hex').update(canonical, 'utf8').digest('hex');
    for (const statement of append.write(row)) await tx.executeQuery(statement);
    if (tx.isTransaction) heads.set(tx, { seq, hash: row.hash, rollbacks });
    return { seq, hash: row.hash };
  };

  /**
   * Records an event in a transaction of its own (denied attempts, which change
   * nothing else). Events arriving together share one commit (inGroupCommit);
   * each caller returns only after that commit.
   */
  const recordAlone = (input: AuditInput) => inGroupCommit(db, (tx) => record(tx, input));

  /** Events of one organisation, oldest first, keyset-paginated by seq; read in `ex` (the caller's transaction, so its read event commits with it). */
  const list = async (q: AuditQuery, ex: Executor = db): Promise<AuditEvent[]> => {
    let query = ex.selectFrom('audit_events').selectAll().orderBy('seq', 'asc').limit(q.limit);
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
    const r = await db.selectFrom('audit_events').select(sql<number>`count(*)`.as('n')).executeTakeFirstOrThrow();
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
