import { sql } from 'kysely';
import { compiledFor, type Dialect, type Executor, runCompiled } from '../store/db.js';
import { objectList } from '../store/json-column.js';
import { earliestDue } from './job-worker.js';
import type { ChainLink, OutboxRecord } from '../store/records.js';
import type { OutboxTable } from '../store/schema.js';

/*
 * The outbox table's repo: every read and write of `outbox`. Jobs are read as `OutboxRecord`s, the delegation
 * chain they were queued under parsed and checked by `toOutboxRecord`.
 */

/** An outbox row with its JSON column parsed; 500 `internal` when it is malformed. */
export const toOutboxRecord = (row: OutboxTable): OutboxRecord => ({
  ...row,
  actor_chain: objectList<ChainLink>(row.actor_chain, 'outbox.actor_chain', (l) => typeof l.type === 'string' && typeof l.id === 'string'),
});

export type { OutboxRecord } from '../store/records.js';

/**
 * Claims up to `limit` due jobs for `workerId` in ONE statement, so two
 * workers (or processes) never hold the same job: on PostgreSQL the inner
 * select takes row locks with FOR UPDATE SKIP LOCKED; on SQLite the single
 * UPDATE ... RETURNING runs as one write transaction. A job whose lease ran out
 * (its worker died) is due again.
 */
export const claimOutboxJobs = async (
  db: Executor,
  dialect: Dialect,
  workerId: string,
  now: Date,
  leaseMs: number,
  limit: number,
): Promise<OutboxRecord[]> => {
  const at = now.toISOString();
  let due = db
    .selectFrom('outbox')
    .select('id')
    .where((eb) =>
      eb.or([
        eb.and([eb('status', '=', 'pending'), eb('next_attempt_at', '<=', at)]),
        eb.and([eb('status', '=', 'sending'), eb('lease_until', '<', at)]),
      ]),
    )
    .orderBy('next_attempt_at')
    .limit(limit);
  if (dialect === 'postgres') due = due.forUpdate().skipLocked();
  return db
    .updateTable('outbox')
    .set({
      status: 'sending',
      claimed_by: workerId,
      lease_until: new Date(now.getTime() + leaseMs).toISOString(),
      attempts: sql`attempts + 1`,
      updated_at: at,
    })
    .where('id', 'in', due)
    .returningAll()
    .execute()
    .then((rows) => rows.map(toOutboxRecord));
};

/**
 * When the next job that is not due yet becomes due (the job worker's `nextDue`): the earliest waiting retry, or
 * the earliest lease of another worker's job in flight running out (that worker may be dead: claimOutboxJobs takes
 * such jobs over). One statement (both minima by outbox_due_idx's status prefix); null when neither exists.
 */
export const nextOutboxDue = async (db: Executor, workerId: string): Promise<Date | null> => {
  const row = await db
    .selectNoFrom((eb) => [
      eb
        .selectFrom('outbox')
        .select((e) => e.fn.min('next_attempt_at').as('at'))
        .where('status', '=', 'pending')
        .as('retry'),
      eb
        .selectFrom('outbox')
        .select((e) => e.fn.min('lease_until').as('at'))
        .where('status', '=', 'sending')
        .where('claimed_by', '<>', workerId)
        .as('lease'),
    ])
    .executeTakeFirst();
  return earliestDue([row?.retry, row?.lease]);
};

/** A new, due delivery job (outbound queueing and re-routing at an attempt both make them here). */
export const insertOutboxJob = (
  db: Executor,
  job: Pick<OutboxTable, 'id' | 'org_id' | 'message_id' | 'kind' | 'route' | 'envelope_sealed' | 'actor_chain'>,
  at: string,
) =>
  db
    .insertInto('outbox')
    .values({
      ...job,
      status: 'pending',
      attempts: 0,
      next_attempt_at: at,
      lease_until: null,
      claimed_by: null,
      last_code: null,
      created_at: at,
      updated_at: at,
    })
    .execute();

/**
 * Records an attempt's outcome on its job: only while the job is still `sending` and, unless the relay
 * accepted it, only by the worker that holds the lease (a lease taken over by another worker wins; a
 * 250 stands whoever holds the lease now, since the relay has the message). Returns false when the
 * outcome is not this worker's to record.
 */
export const recordJobOutcome = async (
  db: Executor,
  job: { id: string; workerId: string; accepted: boolean },
  set: Pick<OutboxTable, 'status' | 'next_attempt_at' | 'last_code' | 'updated_at'>,
): Promise<boolean> => {
  // Compiled once per shape (src/store/db.ts compiledFor): every delivery attempt's outcome commit runs it.
  const compiled = compiledFor(db, `recordJobOutcome:${job.accepted}`, job.accepted ? 5 : 6, (v) => {
    const q = db
      .updateTable('outbox')
      .set({
        status: v[0] as OutboxTable['status'],
        next_attempt_at: v[1] as string,
        last_code: v[2] as string | null,
        updated_at: v[3] as string,
        lease_until: null,
        claimed_by: null,
      })
      .where('id', '=', v[4] as string)
      .where('status', '=', 'sending');
    return job.accepted ? q : q.where('claimed_by', '=', v[5] as string);
  });
  const values = [set.status, set.next_attempt_at, set.last_code, set.updated_at, job.id, ...(job.accepted ? [] : [job.workerId])];
  return Number((await runCompiled(db, compiled(...values))).numAffectedRows ?? 0) === 1;
};

/** Points a job this worker holds at another route and envelope (routing at each attempt); false when the lease was lost. */
export const rerouteJob = async (
  db: Executor,
  job: { id: string; workerId: string },
  set: Pick<OutboxTable, 'route' | 'envelope_sealed' | 'updated_at'>,
): Promise<boolean> => {
  const u = await db
    .updateTable('outbox')
    .set(set)
    .where('id', '=', job.id)
    .where('status', '=', 'sending')
    .where('claimed_by', '=', job.workerId)
    .executeTakeFirst();
  return Number(u.numUpdatedRows) === 1;
};

/** Extends the leases of the jobs a live worker holds; rows an outcome commit holds are skipped on PostgreSQL (no deadlock). */
export const renewLeases = async (db: Executor, dialect: Dialect, workerId: string, leaseUntil: string) => {
  let mine = db.selectFrom('outbox').select('id').where('claimed_by', '=', workerId).where('status', '=', 'sending');
  if (dialect === 'postgres') mine = mine.forUpdate().skipLocked();
  await db.updateTable('outbox').set({ lease_until: leaseUntil }).where('id', 'in', mine).execute();
};

/** Closes the waiting jobs of a cancelled message; returns how many. Jobs already in SMTP are left to finish. */
export const cancelPendingJobs = async (db: Executor, messageId: string, at: string): Promise<number> => {
  const u = await db
    .updateTable('outbox')
    .set({ status: 'failed', last_code: 'cancelled', lease_until: null, claimed_by: null, updated_at: at })
    .where('message_id', '=', messageId)
    .where('status', '=', 'pending')
    .executeTakeFirst();
  return Number(u.numUpdatedRows);
};

// ---- Readers ----

/** Whether any delivery job of the message is not done yet (by MX there is one per recipient domain). */
export const hasOpenDeliveryJob = async (ex: Executor, messageId: string): Promise<boolean> => {
  // Compiled once (src/store/db.ts compiledFor): every delivered message's outcome asks it.
  const compiled = compiledFor(ex, 'hasOpenDeliveryJob', 1, ([message]) =>
    ex
      .selectFrom('outbox')
      .select('id')
      .where('message_id', '=', message as string)
      .where('kind', '=', 'deliver')
      .where('status', '!=', 'done')
      .limit(1),
  );
  return (await runCompiled(ex, compiled(messageId))).rows.length > 0;
};

/** Whether any job of the message is in SMTP now or done: (part of) the message was handed over. */
export const wasHandedOver = async (ex: Executor, messageId: string): Promise<boolean> =>
  (await ex
    .selectFrom('outbox')
    .select('id')
    .where('message_id', '=', messageId)
    .where('status', 'in', ['sending', 'done'])
    .executeTakeFirst()) !== undefined;

/**
 * The open jobs for the operations gauges, by status and phase: a pending job with no attempt yet is queued,
 * one that has been tried is deferred (outbox_due_idx). Counts and the oldest creation time only.
 */
export const outboxBacklog = (ex: Executor) =>
  ex
    .selectFrom('outbox')
    .select((eb) => [
      'status',
      eb.case().when('attempts', '=', 0).then('queued').else('deferred').end().as('phase'),
      eb.fn.countAll<number | string>().as('n'),
      eb.fn.min('created_at').as('oldest'),
    ])
    .where('status', 'in', ['pending', 'sending'])
    .groupBy(['status', 'phase'])
    .execute();
