import { sql } from 'kysely';
import type { Dialect, Executor } from '../store/db.js';
import type { OutboxTable } from '../store/schema.js';

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
): Promise<OutboxTable[]> => {
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
    .execute();
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
