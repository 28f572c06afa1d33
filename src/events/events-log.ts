import { sql } from 'kysely';
import { newId } from '../kernel/ids.js';
import { batchInsert, paddedIn } from '../store/batch.js';
import { compiledFor, deferToCommit, type Executor, runCompiled } from '../store/db.js';
import { notifyOnCommit } from '../store/notify.js';
import type { DomainEventsTable } from '../store/schema.js';
import type { DomainEventType } from './event-types.js';

/** What a writer appends: the organisation, the type, the ids it concerns and non-PHI facts. */
export type NewDomainEvent = {
  orgId: string;
  type: DomainEventType;
  at: string;
  mailboxId?: string | null;
  emailId?: string | null;
  approvalId?: string | null;
  data?: Record<string, unknown>;
};

/** An event as the log returns it (wire shape: snake_case). */
export type DomainEvent = {
  id: string;
  seq: number;
  type: DomainEventType;
  occurred_at: string;
  org_id: string;
  mailbox_id: string | null;
  email_id: string | null;
  approval_id: string | null;
  data: Record<string, unknown>;
};

/** A wake-up payload: `org type mailbox` (mailbox may be empty), or `*` when anything may have changed. */
export const wakePayload = (e: Pick<NewDomainEvent, 'orgId' | 'type' | 'mailboxId'>) => `${e.orgId} ${e.type} ${e.mailboxId ?? ''}`;

export type Wake = { orgId: string; type: string; mailboxId: string | null } | '*';
/** A domain-event wake-up, or null for another kind of notification (`!name`, e.g. the auth epoch's). */
export const parseWake = (payload: string): Wake | null => {
  if (payload.startsWith('!')) return null;
  const [orgId, type, mailboxId] = payload.split(' ');
  if (!orgId || orgId === '*' || !type) return '*';
  return { orgId, type, mailboxId: mailboxId || null };
};

/**
 * Takes `n` numbers of an organisation's sequence and returns the last. The organisation's head row stays
 * locked until the transaction ends, so numbers commit in the order they were taken and a reader that has
 * seen `seq` k has seen every event below k (no gaps, no skips: a rolled-back transaction gives its numbers
 * back). Audit appends take no shared lock (they commit unsequenced, src/audit/integrator.ts), so this is the
 * only head a writer locks here. SQLite has one writer at a time (BEGIN IMMEDIATE). Compiled once and run on
 * the transaction's connection directly (src/store/db.ts runCompiled): it runs in every commit that writes events.
 */
const takeSeqs = async (tx: Executor, orgId: string, n: number): Promise<number> => {
  const compiled = compiledFor(tx, 'takeSeqs', 2, ([org, count]) =>
    tx
      .insertInto('event_heads')
      .values({ org_id: org as string, seq: count as number })
      .onConflict((oc) => oc.column('org_id').doUpdateSet({ seq: sql<number>`event_heads.seq + excluded.seq` }))
      .returning('seq'),
  );
  const row = (await runCompiled(tx, compiled(orgId, n))).rows[0];
  if (!row) throw new Error('event_heads: no sequence number was returned');
  return Number(row.seq);
};

const insertEventRows = batchInsert('domain_events', [
  'org_id',
  'seq',
  'id',
  'type',
  'occurred_at',
  'mailbox_id',
  'email_id',
  'approval_id',
  'data',
]);

/** An event waiting for its number: its id is taken when it is appended (UUIDv7: in the order of appending). */
type Unnumbered = NewDomainEvent & { id: string };

/**
 * Numbers and inserts events: per organisation (in one fixed order, so two transactions writing events of the
 * same organisations take their heads in the same order and cannot deadlock on them) one head upsert for all of
 * them and multi-row inserts, then one wake-up per distinct payload after the commit.
 */
const writeEvents = async (tx: Executor, events: readonly Unnumbered[]): Promise<void> => {
  const byOrg = new Map<string, Unnumbered[]>();
  for (const e of events) {
    const list = byOrg.get(e.orgId);
    if (list) list.push(e);
    else byOrg.set(e.orgId, [e]);
  }
  for (const orgId of [...byOrg.keys()].sort()) {
    const list = byOrg.get(orgId)!;
    const last = await takeSeqs(tx, orgId, list.length);
    const first = last - list.length + 1;
    await insertEventRows(
      tx,
      list.map((e, i) => ({
        org_id: orgId,
        seq: first + i,
        id: e.id,
        type: e.type,
        occurred_at: e.at,
        mailbox_id: e.mailboxId ?? null,
        email_id: e.emailId ?? null,
        approval_id: e.approvalId ?? null,
        data: JSON.stringify(e.data ?? {}),
      })),
    );
    for (const payload of new Set(list.map(wakePayload))) await notifyOnCommit(tx, payload);
  }
};

/**
 * Appends events in the caller's transaction (written with the change they describe, or not at all) and
 * announces them to listening processes after the commit. Call it inside the transaction of the change.
 * In a transaction opened by `transact` or a group commit (src/store/db.ts) the events are numbered and
 * inserted last, just before COMMIT, together with every other event of that transaction: one head upsert per
 * organisation and commit instead of one per call, and on PostgreSQL the head row is locked only while the
 * transaction commits rather than from its first event on (writers of one organisation wait on it). Events of
 * a group caller that failed are dropped with its savepoint; the order of a transaction's events is the order
 * they were appended in. Elsewhere they are numbered and inserted now, as before.
 */
export const appendEvents = async (tx: Executor, events: NewDomainEvent[]): Promise<void> => {
  if (events.length === 0) return;
  const list = events.map((e) => ({ ...e, id: newId('event') }));
  if (deferToCommit(tx, 'domain_events', writeEvents, list)) return;
  await writeEvents(tx, list);
};

export const appendEvent = (tx: Executor, e: NewDomainEvent) => appendEvents(tx, [e]);

export type EventQuery = {
  orgId: string;
  /** Events strictly after this sequence number (0: from the start). */
  after: number;
  limit: number;
  types?: readonly string[];
  mailboxIds?: readonly string[];
  /** Never past this sequence number. */
  upTo?: number;
};

/** A stored row (or the same columns as json_agg gives them) as the log returns it: wire shape, `data` parsed. */
export const toEvent = (r: DomainEventsTable): DomainEvent => ({
  id: r.id,
  seq: Number(r.seq),
  type: r.type as DomainEventType,
  occurred_at: r.occurred_at,
  org_id: r.org_id,
  mailbox_id: r.mailbox_id,
  email_id: r.email_id,
  approval_id: r.approval_id,
  data: JSON.parse(r.data) as Record<string, unknown>,
});

/**
 * Events of one organisation after a cursor, oldest first. Compiled once per shape (bound or not, IN-list
 * sizes padded: src/store/batch.ts): the webhook dispatcher runs it for every batch it fans out.
 */
export const readEvents = async (ex: Executor, q: EventQuery): Promise<DomainEvent[]> => {
  const types = q.types?.length ? paddedIn(q.types) : [];
  const mailboxes = q.mailboxIds?.length ? paddedIn(q.mailboxIds) : [];
  const bounded = q.upTo !== undefined;
  const values: unknown[] = [q.orgId, q.after, ...(bounded ? [q.upTo] : []), ...types, ...mailboxes, q.limit];
  const compiled = compiledFor(ex, `readEvents:${bounded}:${types.length}:${mailboxes.length}`, values.length, (v) => {
    const at = 2 + (bounded ? 1 : 0);
    let query = ex
      .selectFrom('domain_events')
      .selectAll()
      .where('org_id', '=', v[0] as string)
      .where('seq', '>', v[1] as number);
    if (bounded) query = query.where('seq', '<=', v[2] as number);
    if (types.length) query = query.where('type', 'in', v.slice(at, at + types.length) as string[]);
    if (mailboxes.length)
      query = query.where('mailbox_id', 'in', v.slice(at + types.length, at + types.length + mailboxes.length) as string[]);
    return query.orderBy('seq').limit(v[at + types.length + mailboxes.length] as number);
  });
  return (await ex.executeQuery(compiled(...values))).rows.map(toEvent);
};

/** The last sequence number an organisation has committed (0 before its first event). */
export const headSeq = async (ex: Executor, orgId: string): Promise<number> => {
  const compiled = compiledFor(ex, 'headSeq', 1, ([org]) =>
    ex
      .selectFrom('event_heads')
      .select('seq')
      .where('org_id', '=', org as string),
  );
  const r = (await ex.executeQuery(compiled(orgId))).rows[0];
  return r ? Number(r.seq) : 0;
};

export type EventPageQuery = {
  orgId: string;
  order: 'asc' | 'desc';
  /** asc: events after this seq; desc: events before it (undefined: from the start or the head). */
  cursor?: number;
  /** Only events that occurred at or after this ISO time. */
  since?: string;
  limit: number;
  types?: readonly string[];
  mailboxIds?: readonly string[];
  /** asc only: never past this seq (a replay stops at what the dispatcher already fanned out). */
  upTo?: number;
};

/** A page of an organisation's events in either order, keyed by `seq` (the events API and replays). */
export const pageEvents = async (ex: Executor, q: EventPageQuery): Promise<DomainEvent[]> => {
  let query = ex.selectFrom('domain_events').selectAll().where('org_id', '=', q.orgId);
  if (q.cursor !== undefined) query = query.where('seq', q.order === 'asc' ? '>' : '<', q.cursor);
  if (q.upTo !== undefined) query = query.where('seq', '<=', q.upTo);
  if (q.since) query = query.where('occurred_at', '>=', q.since);
  if (q.types?.length) query = query.where('type', 'in', [...q.types]);
  if (q.mailboxIds?.length) query = query.where('mailbox_id', 'in', [...q.mailboxIds]);
  const rows = await query.orderBy('seq', q.order).limit(q.limit).execute();
  return rows.map(toEvent);
};

/** One event of an organisation by its id (evt_...), or undefined. */
export const eventById = async (ex: Executor, orgId: string, id: string): Promise<DomainEvent | undefined> => {
  const r = await ex.selectFrom('domain_events').selectAll().where('org_id', '=', orgId).where('id', '=', id).executeTakeFirst();
  return r ? toEvent(r) : undefined;
};

/** Events by id (any organisation; the caller checks ownership), for a batch of claimed delivery jobs. */
export const eventsByIds = async (ex: Executor, ids: readonly string[]): Promise<DomainEvent[]> =>
  ids.length === 0 ? [] : (await ex.selectFrom('domain_events').selectAll().where('id', 'in', paddedIn(ids)).execute()).map(toEvent);
