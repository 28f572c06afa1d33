import { CompiledQuery, sql } from 'kysely';
import { batchInsert, paddedIn } from '../store/batch.js';
import { compiledFor, type Dialect, type Executor } from '../store/db.js';
import { earliestDue } from '../queue/job-worker.js';
import type {
  DomainEventsTable,
  WebhookAttemptsTable,
  WebhookDeliveriesTable,
  WebhookEndpointsTable,
  WebhookSecretsTable,
} from '../store/schema.js';

/** Associated data of a sealed endpoint URL: a row moved to another organisation or endpoint fails to open. */
export const webhookUrlAad = (r: { org_id: string; id: string }) => `mailward/webhook-url/v1|${r.org_id}|${r.id}`;
/** Associated data of a sealed signing secret. */
export const webhookSecretAad = (r: { org_id: string; endpoint_id: string; id: string }) =>
  `mailward/webhook-secret/v1|${r.org_id}|${r.endpoint_id}|${r.id}`;

/*
 * The statements a delivery runs per batch (claim, fan-out, outcome, the endpoint and secrets it reads), built
 * and compiled by Kysely once per dialect and IN-list size (compiledFor, src/store/db.ts), then executed with
 * each batch's values: building a Kysely query parses every value into an operation node and compiles the
 * lot, several times the cost of running the statement on SQLite.
 */
const once = compiledFor;

/** A `domain_events` row as json_agg gives it (columns as stored: `data` is the JSON text). */
export type DomainEventJson = DomainEventsTable;

/** The text of recordAndTakeRangePg but its last line (each text is named once per connection, src/store/db.ts withNamedStatements). */
const RECORD_AND_TAKE_HEAD = `with ep as (
  select 1 from webhook_endpoints
  where id = $1 and leased_by = $2 and $3::boolean and leased_to = $4::bigint and status = 'active'
    and deleted_at is null and event_types = '[]' and mailbox_ids = '[]'
), ev as (
  select * from domain_events
  where org_id = $5 and seq > $6::bigint and exists (select 1 from ep)
  order by seq limit $7::integer
), up as (
  update webhook_endpoints set
    cursor = greatest(cursor, $8::bigint),
    last_success_at = coalesce($9::text, last_success_at),
    consecutive_failures = case when $9::text is null then consecutive_failures else 0 end,
    leased_to = greatest(leased_to, coalesce((select max(seq) from ev), leased_to)),
    lease_until = case when exists (select 1 from ep) then $10::text else lease_until end
  where id = $1 and leased_by = $2
  returning *
), ins as (
  insert into webhook_attempts (id, org_id, endpoint_id, delivery_id, event_id, attempt, at, outcome, status_code, latency_ms, error)
  select a.* from unnest($12::text[], $13::text[], $14::text[], $15::text[], $16::text[], $17::integer[], $18::text[],
    $19::text[], $20::integer[], $21::integer[], $22::text[])
    as a(id, org_id, endpoint_id, delivery_id, event_id, attempt, at, outcome, status_code, latency_ms, error)
  where exists (select 1 from up)
)
select up.*, exists (select 1 from ep) as took,
  (select json_agg(ev order by ev.seq) from ev) as events,
  (select string_agg(s.id || '|' || coalesce(s.expires_at, ''), ',' order by s.created_at desc, s.id desc)
     from webhook_secrets s where s.endpoint_id = $1 and (s.expires_at is null or s.expires_at > $11)) as secrets_key
`;
/** recordAndTakeRangePg when it records outcomes: a synchronous commit, as the server is set (on by default). */
const RECORD_AND_TAKE_PG = `${RECORD_AND_TAKE_HEAD}from up`;

/*
 * The same statement when it records no outcome (a take only: no delivery-log rows, no success, the cursor not
 * asked to move), committed without waiting for its WAL flush: `set_config(..., true)` is SET LOCAL, and the
 * statement is its own transaction, whose commit reads `synchronous_commit` (PostgreSQL documentation, "Write Ahead
 * Log: Settings", synchronous_commit; "Reliability and the Write-Ahead Log: Asynchronous Commit"). Safe for a
 * take, and only for a take:
 * - an asynchronous commit is visible at once and, if the server crashes before its WAL is flushed (at most three
 *   times wal_writer_delay later, per that chapter), it is lost as a whole, never half applied: the documented risk
 *   is losing the last transactions, not corrupting the database. A lost take only moves the endpoint's lease back
 *   to what it was (`leased_to`, `lease_until`). The chapter warns against it when the client acts outside the
 *   database on the transaction (here: POSTs the events taken); that is allowed here because the events past the
 *   cursor are then taken and sent again, which at least once permits (receivers deduplicate on `webhook-id`, the
 *   event's id, unchanged). The delivery log and the jobs' outcomes are only written by outcome commits, and those
 *   stay synchronous (RECORD_AND_TAKE_PG, and recordRange, recordOutcome, finishIn in a transaction). The same
 *   holds for the worker's general claim (commitAsynchronouslyPg): a lost claim of a due job leaves it as it was
 *   (claimed again, with the same attempt number: its outcome was not recorded, see below), and a lost cursor move
 *   of a take (takeRange's `moveCursor`: past events nothing is sent for) is a look done again;
 * - WAL is flushed in order: once a later synchronous commit (this worker's outcome commit of the events taken
 *   here) has returned, this take is durable too. So a recorded outcome never refers to a lost take; and a worker
 *   whose take was lost finds `leased_to` below what it knows at its next take (the `ep` compare-and-set fails, the
 *   general fan-out takes the lease again: takeRange with this worker as holder).
 * The setting is made by the final select (`sc`, joined to it, adds no column); with no row (the lease is not
 * this worker's) the statement changed nothing and has no commit record to flush.
 */
const TAKE_ONLY_PG = `${RECORD_AND_TAKE_HEAD}from up cross join (select set_config('synchronous_commit', 'off', true)) sc`;

/** The key recordAndTakeRangePg returns for these live secrets (given in liveSecretsOf's order). */
export const secretsKey = (secrets: readonly WebhookSecretsTable[]) =>
  secrets.length === 0 ? null : secrets.map((s) => `${s.id}|${s.expires_at ?? ''}`).join(',');

/**
 * Every query of the webhook tables (STYLE.md: who may write a table is explicit). Deliveries are jobs
 * claimed like the outbox (src/queue/outbox-repo.ts): FOR UPDATE SKIP LOCKED on PostgreSQL, one atomic
 * UPDATE ... RETURNING on SQLite, a lease that a dead worker's jobs run out of.
 */
export const webhooksRepo = {
  insertEndpoint: (tx: Executor, row: WebhookEndpointsTable) => tx.insertInto('webhook_endpoints').values(row).execute(),
  insertSecret: (tx: Executor, row: WebhookSecretsTable) => tx.insertInto('webhook_secrets').values(row).execute(),

  endpoint: (ex: Executor, orgId: string, id: string) =>
    ex
      .selectFrom('webhook_endpoints')
      .selectAll()
      .where('org_id', '=', orgId)
      .where('id', '=', id)
      .where('deleted_at', 'is', null)
      .executeTakeFirst(),
  endpointAnyOrg: async (ex: Executor, id: string): Promise<WebhookEndpointsTable | undefined> => {
    const q = once(ex, 'endpointAnyOrg', 1, ([id_]) =>
      ex
        .selectFrom('webhook_endpoints')
        .selectAll()
        .where('id', '=', id_ as string),
    );
    return (await ex.executeQuery(q(id))).rows[0];
  },
  endpoints: (ex: Executor, orgId: string) =>
    ex.selectFrom('webhook_endpoints').selectAll().where('org_id', '=', orgId).where('deleted_at', 'is', null).orderBy('id').execute(),
  activeEndpoints: (ex: Executor, orgId: string) =>
    ex
      .selectFrom('webhook_endpoints')
      .selectAll()
      .where('org_id', '=', orgId)
      .where('status', '=', 'active')
      .where('deleted_at', 'is', null)
      .execute(),
  /** Organisations with at least one active endpoint (the dispatcher's first pass after start). */
  orgsWithActiveEndpoints: async (ex: Executor) =>
    (
      await ex
        .selectFrom('webhook_endpoints')
        .select('org_id')
        .distinct()
        .where('status', '=', 'active')
        .where('deleted_at', 'is', null)
        .execute()
    ).map((r) => r.org_id),

  updateEndpoint: async (tx: Executor, id: string, set: Partial<WebhookEndpointsTable>) =>
    Number((await tx.updateTable('webhook_endpoints').set(set).where('id', '=', id).executeTakeFirst()).numUpdatedRows),

  /** Compare-and-set of an endpoint's cursor: false when another dispatcher moved it first (its fan-out wins). */
  advanceCursor: async (tx: Executor, id: string, from: number, to: number) => {
    const q = once(tx, 'advanceCursor', 4, ([to_, id_, from_, leasedUpTo]) =>
      tx
        .updateTable('webhook_endpoints')
        .set({ cursor: to_ as number })
        .where('id', '=', id_ as string)
        .where('cursor', '=', from_ as number)
        .where('status', '=', 'active')
        // Not while a worker holds (or a dead one held) first attempts of this endpoint (0045): that range is its.
        .where('leased_by', 'is', null)
        .where('leased_to', '<=', leasedUpTo as number),
    );
    return Number((await tx.executeQuery(q(to, id, from, from))).numAffectedRows ?? 0) === 1;
  },

  /**
   * Range leases (migration 0045; src/webhooks/webhook-worker.ts): the compare-and-set that takes or extends an
   * endpoint's lease on its first attempts. `mine` extends this worker's lease (the row still names it and its
   * `leased_to` is the one it knows); otherwise the lease is taken from the holder, and until, that were read
   * (null: nobody's), with the cursor and `leased_to` read. Sets `leased_to` and a fresh `lease_until`; false
   * when the row moved (another worker's take, a takeover, a disabling). `moveCursor`: nothing of the lease is in
   * flight or taken now (events its filter skips, or a dead holder's range found recorded): the cursor moves there.
   */
  takeRange: async (
    tx: Executor,
    r: { id: string; workerId: string; leaseUntil: string; to: number; cursor: number; fromTo: number; moveCursor: number | null },
    held: { by: string; until: string | null } | null,
  ) => {
    const shape = held === null ? 'free' : held.until === null ? 'by' : 'byUntil';
    const move = r.moveCursor !== null;
    /*
     * Extending this worker's own lease compares `leased_to` and the holder, not the cursor: while the lease is
     * this worker's only its own outcome commits move the cursor (recordRange, and recordAndTakeRangePg on
     * PostgreSQL), and one of those may commit between this take's read of the row and its update, on another
     * connection; compared, the cursor then failed the take and this worker gave up a lease that was still its
     * own. `moveCursor` is only set when nothing of the lease is in flight, so no outcome commit races it.
     */
    const extend = held !== null && held.by === r.workerId;
    // Values in statement order: the set list, then the conditions (each shape binds exactly what it reads).
    const args: unknown[] = [
      r.to,
      r.workerId,
      r.leaseUntil,
      ...(move ? [r.moveCursor] : []),
      r.id,
      ...(extend ? [] : [r.cursor]),
      r.fromTo,
    ];
    if (held) args.push(held.by);
    if (held?.until) args.push(held.until);
    const q = once(tx, `takeRange:${shape}:${move}:${extend}`, args.length, (v) => {
      let i = 0;
      const next = () => v[i++];
      const set = { leased_to: next() as number, leased_by: next() as string, lease_until: next() as string };
      let u = tx
        .updateTable('webhook_endpoints')
        .set(move ? { ...set, cursor: next() as number } : set)
        .where('id', '=', next() as string);
      if (!extend) u = u.where('cursor', '=', next() as number);
      u = u.where('leased_to', '=', next() as number).where('status', '=', 'active');
      u = shape === 'free' ? u.where('leased_by', 'is', null) : u.where('leased_by', '=', next() as string);
      if (shape === 'byUntil') u = u.where('lease_until', '=', next() as string);
      return u;
    });
    return Number((await tx.executeQuery(q(...args))).numAffectedRows ?? 0) === 1;
  },
  /**
   * Records first attempts' progress under this worker's range lease: moves the cursor and, with successes among
   * them, the endpoint's success note. False when the lease is no longer this worker's (taken over after it ran
   * out): then nothing of those attempts may be recorded. On PostgreSQL the row stays locked to the commit, so a
   * takeover waits for it and then sees what it recorded.
   */
  recordRange: async (tx: Executor, id: string, workerId: string, cursor: number, successAt: string | null) => {
    const q = once(tx, `recordRange:${successAt !== null}`, successAt !== null ? 4 : 3, (v) =>
      tx
        .updateTable('webhook_endpoints')
        .set(
          successAt !== null
            ? { cursor: v[0] as number, last_success_at: v[3] as string, consecutive_failures: 0 }
            : { cursor: v[0] as number },
        )
        .where('id', '=', v[1] as string)
        .where('leased_by', '=', v[2] as string),
    );
    const args: unknown[] = [cursor, id, workerId];
    if (successAt !== null) args.push(successAt);
    return Number((await tx.executeQuery(q(...args))).numAffectedRows ?? 0) === 1;
  },
  /**
   * PostgreSQL only: an outcome commit of first attempts under this worker's range lease on one endpoint, and the
   * refill's take of its next events, as one autocommit statement (one round trip and one commit instead of BEGIN,
   * recordRange, the log's inserts, the take's four statements and COMMIT: on PostgreSQL every statement is a round
   * trip to the server, and node-postgres sends one at a time). Data-modifying CTEs (PostgreSQL docs 7.8.4) run
   * once and to completion, all on the statement's one snapshot, and commit or fail together:
   * - `up` is recordRange's compare-and-set (the row still names this worker: otherwise nothing is recorded), and
   *   moves the cursor forward (never back: a take without outcomes passes 0, and under one holder the cursor only
   *   grows), notes a success and, when the take applies, moves `leased_to` past the events taken;
   * - `ins` writes the successes' delivery-log rows only when `up` matched (the unique (delivery id, attempt) index
   *   of 0045 still refuses a second first attempt);
   * - `ep` says whether the take applies: asked for, the lease's `leased_to` as this worker knows it, the endpoint
   *   active and unfiltered (a filtered endpoint, whose take bounds its scan by the head and may move the cursor
   *   past events it skips, is taken by `takeRange` as before);
   * - `ev` reads the next `limit` events after `after`.
   * Returns the endpoint's row as updated with the events taken (`events`, seq order), whether the take applied
   * (`took`) and a key of the endpoint's live secrets (ids and expiry, in liveSecretsOf's order) for the caller to
   * compare with the secrets it read at its last take; undefined when the lease is no longer this worker's.
   */
  recordAndTakeRangePg: async (
    ex: Executor,
    r: {
      id: string;
      workerId: string;
      take: boolean;
      knownTo: number;
      orgId: string;
      after: number;
      limit: number;
      cursor: number;
      successAt: string | null;
      leaseUntil: string;
      secretsAt: string;
    },
    attempts: readonly WebhookAttemptsTable[],
  ): Promise<(WebhookEndpointsTable & { took: boolean; events: DomainEventJson[] | null; secrets_key: string | null }) | undefined> => {
    const col = <K extends keyof WebhookAttemptsTable>(k: K) => attempts.map((a) => a[k]);
    // Records nothing (cursor 0 is never past a real cursor: `greatest`): a take only, committed asynchronously (TAKE_ONLY_PG).
    const takeOnly = attempts.length === 0 && r.successAt === null && r.cursor === 0;
    const q = CompiledQuery.raw(takeOnly ? TAKE_ONLY_PG : RECORD_AND_TAKE_PG, [
      r.id,
      r.workerId,
      r.take,
      r.knownTo,
      r.orgId,
      r.after,
      r.limit,
      r.cursor,
      r.successAt,
      r.leaseUntil,
      r.secretsAt,
      col('id'),
      col('org_id'),
      col('endpoint_id'),
      col('delivery_id'),
      col('event_id'),
      col('attempt'),
      col('at'),
      col('outcome'),
      col('status_code'),
      col('latency_ms'),
      col('error'),
    ]);
    const rows = (await ex.executeQuery(q)).rows as (WebhookEndpointsTable & {
      took: boolean;
      events: DomainEventJson[] | null;
      secrets_key: string | null;
    })[];
    return rows[0];
  },
  /**
   * PostgreSQL only: the rest of this transaction commits without waiting for its WAL flush (SET LOCAL: the
   * connection's setting is back once it ends). For transactions that only take work, never for one that records
   * an outcome (TAKE_ONLY_PG says why a take may, and src/webhooks/webhook-worker.ts where it is used).
   */
  commitAsynchronouslyPg: async (tx: Executor) => {
    await sql`set local synchronous_commit = off`.execute(tx);
  },
  /** Extends this worker's range leases. */
  renewRanges: (ex: Executor, workerId: string, until: string) =>
    ex.updateTable('webhook_endpoints').set({ lease_until: until }).where('leased_by', '=', workerId).execute(),
  /** Gives up this worker's range leases (a stopping worker whose attempts have all come back). */
  releaseRanges: (ex: Executor, workerId: string) =>
    ex.updateTable('webhook_endpoints').set({ leased_by: null, lease_until: null }).where('leased_by', '=', workerId).execute(),
  /** Endpoints whose range lease ran out (a dead worker's), other than this worker's own. */
  expiredRanges: async (ex: Executor, workerId: string, now: string) =>
    (
      await ex
        .selectFrom('webhook_endpoints')
        .select('id')
        .where('leased_by', 'is not', null)
        .where('lease_until', '<', now)
        .where('leased_by', '<>', workerId)
        .where('status', '=', 'active')
        .where('deleted_at', 'is', null)
        .execute()
    ).map((r) => r.id),
  /** Which of these deliveries have their first attempt in the delivery log (one probe each of 0045's index). */
  recordedFirstAttempts: async (ex: Executor, deliveryIds: readonly string[]) =>
    deliveryIds.length === 0
      ? []
      : (
          await ex
            .selectFrom('webhook_attempts')
            .select('delivery_id')
            .where('delivery_id', 'in', [...deliveryIds])
            .where('attempt', '=', 1)
            .execute()
        ).map((r) => r.delivery_id),

  /** Disables an active endpoint (compare-and-set on the status); true when this call disabled it. */
  disableEndpoint: async (tx: Executor, id: string, reason: string, at: string) =>
    Number(
      (
        await tx
          .updateTable('webhook_endpoints')
          .set({ status: 'disabled', disabled_reason: reason, updated_at: at })
          .where('id', '=', id)
          .where('status', '=', 'active')
          .executeTakeFirst()
      ).numUpdatedRows,
    ) === 1,

  noteResult: async (tx: Executor, id: string, ok: boolean, at: string) => {
    const q = once(tx, `noteResult:${ok}`, 2, ([at_, id_]) =>
      tx
        .updateTable('webhook_endpoints')
        .set(
          ok
            ? { last_success_at: at_ as string, consecutive_failures: 0 }
            : { last_failure_at: at_ as string, consecutive_failures: sql<number>`consecutive_failures + 1` },
        )
        .where('id', '=', id_ as string),
    );
    await tx.executeQuery(q(at, id));
  },

  endpointsByIds: async (ex: Executor, ids: readonly string[]): Promise<WebhookEndpointsTable[]> => {
    if (ids.length === 0) return [];
    const list = paddedIn(ids);
    const q = once(ex, `endpointsByIds:${list.length}`, list.length, (v) =>
      ex
        .selectFrom('webhook_endpoints')
        .selectAll()
        .where('id', 'in', v as readonly string[]),
    );
    return (await ex.executeQuery(q(...list))).rows;
  },
  /** Secrets of these endpoints valid at `at`, newest first. */
  liveSecretsOf: async (ex: Executor, endpointIds: readonly string[], at: string): Promise<WebhookSecretsTable[]> => {
    if (endpointIds.length === 0) return [];
    const list = paddedIn(endpointIds);
    const q = once(ex, `liveSecretsOf:${list.length}`, list.length + 1, (v) =>
      ex
        .selectFrom('webhook_secrets')
        .selectAll()
        .where('endpoint_id', 'in', v.slice(0, list.length) as readonly string[])
        .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', v[list.length] as string)]))
        .orderBy('created_at', 'desc')
        .orderBy('id', 'desc'),
    );
    return (await ex.executeQuery(q(...list, at))).rows;
  },
  /** Ends every live secret of an endpoint at `until` (a rotation's overlap; `until` = now ends them at once). */
  expireSecrets: (tx: Executor, endpointId: string, until: string) =>
    tx
      .updateTable('webhook_secrets')
      .set({ expires_at: until })
      .where('endpoint_id', '=', endpointId)
      .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', until)]))
      .execute(),

  /** Many delivery jobs in a few compiled statements (a fan-out page or a replay: src/store/batch.ts). */
  insertDeliveries: batchInsert('webhook_deliveries', [
    'id',
    'org_id',
    'endpoint_id',
    'event_id',
    'event_seq',
    'is_replay',
    'status',
    'attempts',
    'next_attempt_at',
    'first_attempt_at',
    'lease_until',
    'claimed_by',
    'last_status_code',
    'last_error',
    'created_at',
    'updated_at',
  ]),

  /**
   * When the next job that is not due yet becomes due (the job worker's `nextDue`): the earliest waiting retry
   * (webhook_deliveries_pending_idx), another worker's delivery lease (webhook_deliveries_leased_idx) or range lease
   * (webhook_endpoints_leased_idx) running out, which claimDeliveries and expiredRanges take over. One statement.
   */
  nextDue: async (db: Executor, workerId: string): Promise<Date | null> => {
    const row = await db
      .selectNoFrom((eb) => [
        eb
          .selectFrom('webhook_deliveries')
          .select((e) => e.fn.min('next_attempt_at').as('at'))
          .where('status', '=', 'pending')
          .as('retry'),
        eb
          .selectFrom('webhook_deliveries')
          .select((e) => e.fn.min('lease_until').as('at'))
          .where('status', '=', 'sending')
          .where('claimed_by', '<>', workerId)
          .as('lease'),
        eb
          .selectFrom('webhook_endpoints')
          .select((e) => e.fn.min('lease_until').as('at'))
          .where('leased_by', 'is not', null)
          .where('leased_by', '<>', workerId)
          .where('status', '=', 'active')
          .where('deleted_at', 'is', null)
          .as('range'),
      ])
      .executeTakeFirst();
    return earliestDue([row?.retry, row?.lease, row?.range]);
  },

  /**
   * Claims up to `limit` due jobs: waiting ones first (read in index order: no sort of every waiting job),
   * then (unless `expired` is false) jobs whose lease ran out (a dead worker's), each in one statement.
   */
  claimDeliveries: async (db: Executor, dialect: Dialect, workerId: string, now: Date, leaseMs: number, limit: number, expired = true) => {
    const at = now.toISOString();
    const take = async (kind: 'pending' | 'expired', n: number) => {
      const q = once(db, `claim:${kind}:${dialect}`, 6, ([worker, lease, firstAt, updatedAt, dueAt, max]) => {
        let due = db.selectFrom('webhook_deliveries').select('id');
        due =
          kind === 'pending'
            ? due
                .where('status', '=', 'pending')
                .where('next_attempt_at', '<=', dueAt as string)
                .orderBy('next_attempt_at')
            : due
                .where('status', '=', 'sending')
                .where('lease_until', '<', dueAt as string)
                .orderBy('lease_until');
        due = due.limit(max as number);
        if (dialect === 'postgres') due = due.forUpdate().skipLocked();
        return db
          .updateTable('webhook_deliveries')
          .set({
            status: 'sending',
            claimed_by: worker as string,
            lease_until: lease as string,
            attempts: sql<number>`attempts + 1`,
            first_attempt_at: sql<string>`coalesce(first_attempt_at, ${firstAt})`,
            updated_at: updatedAt as string,
          })
          .where('id', 'in', due)
          .returningAll();
      });
      return (await db.executeQuery(q(workerId, new Date(now.getTime() + leaseMs).toISOString(), at, at, at, n))).rows;
    };
    const jobs = await take('pending', limit);
    return jobs.length < limit && expired ? [...jobs, ...(await take('expired', limit - jobs.length))] : jobs;
  },

  renewLeases: async (db: Executor, dialect: Dialect, workerId: string, leaseUntil: string) => {
    let mine = db.selectFrom('webhook_deliveries').select('id').where('claimed_by', '=', workerId).where('status', '=', 'sending');
    if (dialect === 'postgres') mine = mine.forUpdate().skipLocked();
    await db.updateTable('webhook_deliveries').set({ lease_until: leaseUntil }).where('id', 'in', mine).execute();
  },

  /** Records an attempt's outcome on its job, only while this worker holds it; false when the lease was lost. */
  recordOutcome: async (
    tx: Executor,
    job: { id: string; workerId: string },
    set: Pick<WebhookDeliveriesTable, 'status' | 'next_attempt_at' | 'last_status_code' | 'last_error' | 'updated_at'>,
  ) =>
    Number(
      (
        await tx
          .updateTable('webhook_deliveries')
          .set({ ...set, lease_until: null, claimed_by: null })
          .where('id', '=', job.id)
          .where('status', '=', 'sending')
          .where('claimed_by', '=', job.workerId)
          .executeTakeFirst()
      ).numUpdatedRows,
    ) === 1,

  /**
   * Records many successful attempts of this worker at once (group commit of the common case); returns the
   * ids it recorded (a job whose lease another worker took over is left to that worker).
   */
  recordDelivered: async (tx: Executor, workerId: string, ids: readonly string[], statusCode: number, at: string): Promise<string[]> => {
    if (ids.length === 0) return [];
    const list = paddedIn(ids);
    const q = once(tx, `recordDelivered:${list.length}`, list.length + 3, (v) =>
      tx
        .updateTable('webhook_deliveries')
        .set({
          status: 'done',
          last_status_code: v[0] as number,
          last_error: null,
          updated_at: v[1] as string,
          lease_until: null,
          claimed_by: null,
        })
        .where('id', 'in', v.slice(3) as readonly string[])
        .where('status', '=', 'sending')
        .where('claimed_by', '=', v[2] as string)
        .returning('id'),
    );
    return (await tx.executeQuery(q(statusCode, at, workerId, ...list))).rows.map((r) => r.id);
  },

  /** Rows of the delivery log in a few compiled statements (an outcome group). */
  insertAttempts: batchInsert('webhook_attempts', [
    'id',
    'org_id',
    'endpoint_id',
    'delivery_id',
    'event_id',
    'attempt',
    'at',
    'outcome',
    'status_code',
    'latency_ms',
    'error',
  ]),

  cancelPending: async (tx: Executor, endpointId: string, at: string) =>
    Number(
      (
        await tx
          .updateTable('webhook_deliveries')
          .set({ status: 'cancelled', updated_at: at, lease_until: null, claimed_by: null })
          .where('endpoint_id', '=', endpointId)
          .where('status', '=', 'pending')
          .executeTakeFirst()
      ).numUpdatedRows,
    ),

  insertAttempt: (tx: Executor, row: WebhookAttemptsTable) => tx.insertInto('webhook_attempts').values(row).execute(),

  /** The delivery log of an endpoint, newest first, keyed by attempt id (UUIDv7: time order). */
  attempts: (ex: Executor, endpointId: string, before: string | undefined, limit: number, eventId?: string) => {
    let q = ex.selectFrom('webhook_attempts').selectAll().where('endpoint_id', '=', endpointId);
    if (before) q = q.where('id', '<', before);
    if (eventId) q = q.where('event_id', '=', eventId);
    return q.orderBy('id', 'desc').limit(limit).execute();
  },

  mailboxesOf: async (ex: Executor, orgId: string, agentId: string) =>
    (await ex.selectFrom('mailboxes').select('id').where('org_id', '=', orgId).where('agent_id', '=', agentId).execute()).map((r) => r.id),
  mailboxesIn: async (ex: Executor, orgId: string, ids: readonly string[]) =>
    ids.length === 0
      ? []
      : (
          await ex
            .selectFrom('mailboxes')
            .select('id')
            .where('org_id', '=', orgId)
            .where('id', 'in', [...ids])
            .execute()
        ).map((r) => r.id),
};

export type WebhooksRepo = typeof webhooksRepo;
