import { createHash } from 'node:crypto';
import { sql } from 'kysely';
import type { Logger } from '../kernel/log.js';
import { batchInsert, paddedIn } from '../store/batch.js';
import type { Db, Dialect, Tx } from '../store/db.js';
import type { Lead } from '../store/notify.js';
import type { AuditEventRowsTable, AuditKindsTable, AuditPendingTable } from '../store/schema.js';
import { canonicalOfRow, type EventRow } from './audit-chain.js';
import {
  type EventKind,
  hexOfStored,
  idOfStored,
  KIND_COLUMNS,
  kindKey,
  MAX_KINDS,
  STORED_EVENT_COLUMNS,
  STORED_EVENT_TABLE,
  storedOfAt,
  storedOfContentHash,
  storedOfHex,
  storedOfId,
  storedOfIdOrNull,
} from './audit-columns.js';
import { canonicalJson } from './canonical.js';
import { idIn } from './event-rows.js';

/**
 * The audit log's integrator (the sequencer of a transparency log, as Trillian and Tessera have one).
 *
 * Writers commit their event UNSEQUENCED into `audit_pending`, in the transaction of the change they
 * describe ("no audit record, no action"), and take no shared lock. The integrator moves pending rows
 * into the log (`audit_event_rows`, read through the `audit_events` view) in batches, in one transaction per batch: it locks the chain head, gives each row
 * the next sequence number, chains its hash (SHA-256(prev_hash || RFC 8785 event), as before), inserts the
 * events, deletes their pending rows and moves the head. A crash mid-batch rolls the whole batch back;
 * the pending rows are still there and the next pass (of any process) integrates them: an event cannot be
 * lost between commit and integration, nor be integrated twice (the batch and its deletion commit together,
 * under the chain head's lock; the index on `audit_events.id` is a key index, not unique, since migration 0046).
 *
 * One integrator at a time per installation: on PostgreSQL the head row lock serialises passes (the periodic
 * pass takes it with SKIP LOCKED, so a pass that finds it held skips that round; the lock ends with the
 * connection, so a crashed process needs no lease to expire); on SQLite the database's one writer lock (BEGIN
 * IMMEDIATE). The lock keeps the chain correct whoever integrates; which process runs the periodic passes is
 * decided by leadership (`Store.lead`, a session advisory lock on PostgreSQL; every SQLite process leads): only
 * the leader integrates on wake-ups, so the background work per audit commit does not grow with the number of
 * processes (every process used to run a pass for every other process's commits). A process that is not the
 * leader integrates only when it must: `sync` (a reader that needs sequence numbers, and `stop`), and a slow
 * safety-net pass `followerMs` after a wake-up, which bounds the delay to inclusion even when the leader is alive
 * but not integrating. A leader killed with SIGKILL loses its session and its lock at once: the next process takes
 * over and runs a pass immediately (test/audit-leadership.test.ts).
 */

/** The advisory lock key of the integrator's leadership (beside migrate.ts's PG_MIGRATION_LOCK, 7_466_115_001). */
export const AUDIT_INTEGRATOR_ROLE = 7_466_115_002;

/** A placeholder in an event's details for the chain hash of another event (by id), resolved at integration. */
export const EVENT_HASH_REF = '$audit_event_hash';
export type EventHashRef = { [EVENT_HASH_REF]: string };
export const eventHashRef = (eventId: string): EventHashRef => ({ [EVENT_HASH_REF]: eventId });

const isRef = (v: unknown): v is EventHashRef =>
  typeof v === 'object' &&
  v !== null &&
  !Array.isArray(v) &&
  Object.keys(v).length === 1 &&
  typeof (v as Record<string, unknown>)[EVENT_HASH_REF] === 'string';

/** Rows per pass: bounded, so one pass's transaction stays short. */
export const INTEGRATE_BATCH = 2048;
/**
 * Values per `IN (...)` list. Lists are padded to a power of two (paddedIn) and inserts go in power-of-two row
 * counts (batchInsert): on SQLite every distinct SQL text is a prepared statement the statement cache keeps
 * (src/store/db.ts), and a 1,000-row insert of this table is about 1.7 MB of native memory. With a text per batch
 * size, a long run at a varying rate kept hundreds of them (the soak's RSS growth); with these, a few.
 */
const IN_CHUNK = 512;

const insertEvents = batchInsert(STORED_EVENT_TABLE, STORED_EVENT_COLUMNS);
const insertChains = batchInsert('audit_chains', ['id', 'chain']);
const insertKinds = batchInsert('audit_kinds', ['id', ...KIND_COLUMNS]);

type Deps = {
  db: Db;
  dialect: Dialect;
  /** Milliseconds between periodic passes (MAILWARD_AUDIT_INTEGRATE_MS): the bound on the delay to inclusion. */
  intervalMs: number;
  batch?: number;
  logger?: Logger;
  /** Leadership among the processes sharing the store (`Store.lead`); without it this process always leads. */
  lead?: Lead;
  /** A process that does not lead: milliseconds from a wake-up to its safety-net pass (default 10x `intervalMs`, at least 1 s). */
  followerMs?: number;
  /** Tests only: runs after a batch is written, before its commit (test/audit-integrator.test.ts kills the process there). */
  beforeCommit?: (rows: number) => Promise<void>;
};

export type Integrated = Map<string, { seq: number; hash: string }>;

/**
 * A committed batch of the chain: seq `from` onwards, chained from `prev` (the hash of seq `from - 1`), as the
 * integrator computed them. Told to `onIntegrated` listeners after the batch's commit, never before.
 */
export type IntegratedRun = { from: number; prev: string; hashes: string[] };

export const createIntegrator = ({
  db,
  dialect,
  intervalMs,
  batch = INTEGRATE_BATCH,
  logger,
  beforeCommit,
  lead,
  followerMs = Math.max(1000, 10 * intervalMs),
}: Deps) => {
  const headQuery = (tx: Tx, wait: boolean) => {
    const q = tx.selectFrom('audit_head').select(['seq', 'hash']).where('id', '=', 1);
    if (dialect !== 'postgres') return q;
    return wait ? q.forUpdate() : q.forUpdate().skipLocked();
  };

  /** Resolves the hash placeholders of a details column (only when it holds one: the common case parses nothing). */
  const resolveRefs = async (tx: Tx, details: string, known: Integrated): Promise<string> => {
    if (!details.includes(EVENT_HASH_REF)) return details;
    const refs: string[] = [];
    const collect = (v: unknown): void => {
      if (isRef(v)) refs.push(v[EVENT_HASH_REF]);
      else if (Array.isArray(v)) v.forEach(collect);
      else if (typeof v === 'object' && v !== null) Object.values(v).forEach(collect);
    };
    const parsed = JSON.parse(details) as unknown;
    collect(parsed);
    const missing = refs.filter((id) => !known.has(id));
    if (missing.length) {
      const found: { id: Buffer; seq: number; hash: Buffer }[] = [];
      for (let i = 0; i < missing.length; i += IN_CHUNK) {
        found.push(
          ...(await tx
            .selectFrom('audit_events')
            .select(['id', 'seq', 'hash'])
            .where(idIn('id', missing.slice(i, i + IN_CHUNK)))
            .execute()),
        );
      }
      for (const f of found) known.set(idOfStored(f.id)!, { seq: Number(f.seq), hash: hexOfStored(f.hash) });
    }
    const replace = (v: unknown): unknown => {
      if (isRef(v)) {
        const hit = known.get(v[EVENT_HASH_REF]);
        // The referenced event committed before (or with) this one, so it is integrated by now: if not, fail the batch.
        if (!hit) throw new Error('audit: an event refers to an event that is not in the log');
        return hit.hash;
      }
      if (Array.isArray(v)) return v.map(replace);
      if (typeof v === 'object' && v !== null) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, replace(x)]));
      return v;
    };
    return canonicalJson(replace(parsed));
  };

  /**
   * Delegation chains (`audit_chains`, migration 0040) and event kinds (`audit_kinds`, 0048) are stored once each
   * and events refer to them by a small integer. Ids known to be committed are cached (both tables are append-only,
   * never changed or deleted); ids this process inserts join the cache only after their batch commits, so a
   * rolled-back batch leaves no stale id behind. New ids are max(id) + 1: the integrator holds the chain head (one
   * at a time), so that cannot race another integrator.
   */
  const dictionary = <V>(o: {
    key: (v: V) => string;
    /** The stored rows among `values` (chunks of at most IN_CHUNK). */
    find: (tx: Tx, values: V[]) => Promise<{ id: number; value: V }[]>;
    insert: (tx: Tx, rows: { id: number; value: V }[]) => Promise<void>;
    top: (tx: Tx) => Promise<number>;
    max: number;
    name: string;
  }) => {
    const known = new Map<string, number>();
    const idsOf = async (tx: Tx, values: V[], added: Map<string, number>): Promise<Map<string, number>> => {
      const out = new Map<string, number>();
      const missing = new Map<string, V>();
      for (const v of values) {
        const k = o.key(v);
        const id = known.get(k);
        if (id === undefined) missing.set(k, v);
        else out.set(k, id);
      }
      if (missing.size === 0) return out;
      const list = [...missing.values()];
      for (let i = 0; i < list.length; i += IN_CHUNK) {
        for (const f of await o.find(tx, list.slice(i, i + IN_CHUNK))) {
          const k = o.key(f.value);
          if (!missing.has(k)) continue;
          known.set(k, f.id);
          out.set(k, f.id);
        }
      }
      const fresh = [...missing].filter(([k]) => !out.has(k));
      if (fresh.length) {
        let next = await o.top(tx);
        if (next + fresh.length > o.max) throw new Error(`audit: more than ${o.max} distinct ${o.name}`);
        const rows = fresh.map(([k, value]) => ({ k, id: ++next, value }));
        await o.insert(tx, rows);
        for (const r of rows) {
          out.set(r.k, r.id);
          added.set(r.k, r.id);
        }
      }
      return out;
    };
    const commit = (added: Map<string, number>) => {
      for (const [k, id] of added) known.set(k, id);
    };
    return { idsOf, commit };
  };
  const chains = dictionary<string>({
    key: (c) => c,
    find: async (tx, cs) =>
      (await tx.selectFrom('audit_chains').select(['id', 'chain']).where('chain', 'in', paddedIn(cs)).execute()).map((r) => ({
        id: Number(r.id),
        value: r.chain,
      })),
    insert: (tx, rows) =>
      insertChains(
        tx,
        rows.map((r) => ({ id: r.id, chain: r.value })),
      ),
    top: async (tx) => Number((await tx.selectFrom('audit_chains').select(sql<number | null>`max(id)`.as('m')).executeTakeFirst())?.m ?? 0),
    max: Number.MAX_SAFE_INTEGER,
    name: 'delegation chains',
  });
  // The kinds of one action are few (its actor types, target types and outcomes): they are looked up by action.
  const kinds = dictionary<EventKind>({
    key: kindKey,
    find: async (tx, ks) =>
      (
        await tx
          .selectFrom('audit_kinds')
          .select(['id', ...KIND_COLUMNS])
          .where('action', 'in', paddedIn([...new Set(ks.map((k) => k.action))]))
          .execute()
      ).map(({ id, ...value }) => ({ id: Number(id), value })),
    insert: (tx, rows) =>
      insertKinds(
        tx,
        rows.map((r) => ({ id: r.id, ...r.value, outcome: r.value.outcome as AuditKindsTable['outcome'] })),
      ),
    top: async (tx) => Number((await tx.selectFrom('audit_kinds').select(sql<number | null>`max(id)`.as('m')).executeTakeFirst())?.m ?? 0),
    max: MAX_KINDS,
    name: 'audit event kinds (action, actor type, target type, outcome)',
  });

  /**
   * One batch in one transaction. `wait`: wait for the head (a caller that needs its events sequenced)
   * or skip when another process holds it (the periodic pass). Returns how many rows were integrated
   * (-1: skipped) and their sequence numbers and hashes.
   */
  const listeners: ((run: IntegratedRun) => void)[] = [];
  /** Calls `listener` with each batch this process integrates, after its commit (tree-store.ts's catch-up uses it). */
  const onIntegrated = (listener: (run: IntegratedRun) => void) => {
    listeners.push(listener);
  };

  const pass = async (wait: boolean): Promise<{ n: number; done: Integrated }> => {
    const addedChains = new Map<string, number>();
    const addedKinds = new Map<string, number>();
    let run: IntegratedRun | null = null;
    const result = await db.transaction().execute(async (tx) => {
      const head = await headQuery(tx, wait).executeTakeFirst();
      if (!head) {
        if (dialect === 'postgres' && !wait) return { n: -1, done: new Map() };
        throw new Error('audit: the chain head row is missing');
      }
      const pending = (await tx.selectFrom('audit_pending').selectAll().orderBy('pid').limit(batch).execute()) as AuditPendingTable[];
      const done: Integrated = new Map();
      if (pending.length === 0) return { n: 0, done };
      let seq = Number(head.seq);
      let prev = head.hash;
      const rows: EventRow[] = [];
      const chainIds = await chains.idsOf(
        tx,
        pending.map((p) => p.delegation_chain),
        addedChains,
      );
      const ats = pending.map((p) => storedOfAt(p.at));
      const kindsOf = pending.map(
        (p, i): EventKind => ({
          action: p.action,
          actor_type: p.actor_type,
          target_type: p.target_type,
          outcome: p.outcome,
          at_text: ats[i]!.at_text,
        }),
      );
      const kindIds = await kinds.idsOf(tx, kindsOf, addedKinds);
      const stored: AuditEventRowsTable[] = [];
      for (const [i, p] of pending.entries()) {
        seq += 1;
        const row: EventRow = {
          seq,
          id: p.id,
          at: p.at,
          org_id: p.org_id,
          action: p.action,
          actor_type: p.actor_type,
          actor_id: p.actor_id,
          delegation_chain: p.delegation_chain,
          target_type: p.target_type,
          target_id: p.target_id,
          outcome: p.outcome,
          request_id: p.request_id,
          client_ip: p.client_ip,
          content_hash: p.content_hash,
          details: await resolveRefs(tx, p.details, done),
          prev_hash: prev,
          hash: '',
        };
        // The columns are stored in RFC 8785 form, so the spliced text is the canonical event (audit-chain.ts).
        row.hash = createHash('sha256').update(prev, 'hex').update(canonicalOfRow(row), 'utf8').digest('hex');
        prev = row.hash;
        rows.push(row);
        stored.push({
          seq,
          at: ats[i]!.at,
          chain_id: chainIds.get(row.delegation_chain)!,
          kind_id: kindIds.get(kindKey(kindsOf[i]!))!,
          id: storedOfId(row.id),
          org_id: storedOfIdOrNull(row.org_id),
          actor_id: storedOfIdOrNull(row.actor_id),
          target_id: storedOfIdOrNull(row.target_id),
          request_id: storedOfIdOrNull(row.request_id),
          client_ip: row.client_ip,
          content_hash: storedOfContentHash(row.content_hash),
          details: row.details,
          hash: storedOfHex(row.hash),
        });
        done.set(row.id, { seq, hash: row.hash });
      }
      await insertEvents(tx, stored);
      const pids = pending.map((p) => p.pid);
      for (let i = 0; i < pids.length; i += IN_CHUNK) {
        await tx
          .deleteFrom('audit_pending')
          .where('pid', 'in', paddedIn(pids.slice(i, i + IN_CHUNK)))
          .execute();
      }
      await tx.updateTable('audit_head').set({ seq, hash: prev }).where('id', '=', 1).execute();
      if (beforeCommit) await beforeCommit(rows.length);
      run = { from: Number(head.seq) + 1, prev: head.hash, hashes: rows.map((r) => r.hash) };
      return { n: rows.length, done };
    });
    chains.commit(addedChains);
    kinds.commit(addedKinds);
    // Committed: only now may anyone rely on these hashes.
    const committed = run as IntegratedRun | null;
    if (committed) for (const l of listeners) l(committed);
    return result;
  };

  /** Passes until nothing is pending (as this process sees it); the sequence numbers of what it integrated. */
  const drain = async (wait: boolean): Promise<Integrated> => {
    const all: Integrated = new Map();
    for (;;) {
      const { n, done } = await pass(wait);
      for (const [k, v] of done) all.set(k, v);
      if (n < batch) return all;
    }
  };

  // Single flight: callers that arrive while a drain runs share the next one, which starts after it and so
  // sees every event they committed before calling.
  let running: Promise<Integrated> | null = null;
  let next: Promise<Integrated> | null = null;
  const run = (wait: boolean): Promise<Integrated> => {
    if (!running) {
      running = drain(wait).finally(() => {
        running = null;
      });
      return running;
    }
    if (!next) {
      next = running
        .catch(() => undefined)
        .then(() => {
          next = null;
          return run(true);
        });
    }
    return next;
  };

  /**
   * Resolves once every event committed before the call is integrated (by this process or another).
   * Readers that need sequence numbers call it first; never inside an open transaction (SQLite has one writer).
   */
  const sync = (): Promise<Integrated> => run(true);

  // Passes are woken, not polled: a commit that wrote audit events announces it (audit-service.ts, store
  // notifications, to every process sharing the store), and the leader integrates within `intervalMs`, so an idle
  // process runs no store query. A pass that failed, or left a full batch behind, schedules the next one.
  let timer: NodeJS.Timeout | null = null;
  let timerAt = 0;
  let started = false;
  let stopped = false;
  let leader = !lead;
  let giveUp: (() => void) | null = null;
  const tick = async () => {
    timer = null;
    let again = false;
    try {
      // A pass that integrated nothing may have found another process holding the head: look again until that
      // process has integrated what is pending, so no event waits for a later wake-up.
      const done = await run(false);
      again = done.size === 0 && (await pendingCount()) > 0;
    } catch (e) {
      // Logged by code only: no content of events. The next pass retries; nothing pending is lost.
      logger?.error({ code: 'audit_integrate_failed', err: e instanceof Error ? e.name : 'unknown' }, 'audit integration failed');
      again = true;
    }
    if (again) kick();
  };
  /** Schedules a pass within `ms` (one timer at a time; an earlier deadline replaces a later one). */
  const schedule = (ms: number) => {
    if (!started || stopped) return;
    const at = Date.now() + ms;
    if (timer) {
      if (timerAt <= at) return;
      clearTimeout(timer);
    }
    timerAt = at;
    timer = setTimeout(() => void tick(), ms);
    timer.unref();
  };
  /**
   * A commit wrote audit events: the leader integrates within `intervalMs`; another process only schedules its
   * safety-net pass, which finds nothing to do while the leader keeps up.
   */
  const kick = () => schedule(leader ? intervalMs : followerMs);

  /**
   * Starts integrating: one pass now (events a crashed process committed and never integrated) in the leader, then
   * a pass after each wake-up; a process that becomes the leader later runs a pass at once (what a dead leader left). A wake-up lost with a process that died between its commit and its announcement (SQLite's
   * doorbell is written after the commit) is made up by the next audit commit of any process, which drains
   * everything pending, and by every reader, which syncs first.
   */
  const start = () => {
    if (started || stopped) return;
    started = true;
    if (!lead) {
      schedule(intervalMs);
      return;
    }
    // The leader's first pass is the start pass; a follower has none (the leader, or whoever takes over, runs it).
    giveUp = lead(AUDIT_INTEGRATOR_ROLE, (isLeader) => {
      leader = isLeader;
      if (isLeader) schedule(0);
    });
  };

  /**
   * Stops the loop, gives leadership up (another process takes over at once) and integrates what this process
   * committed (a CLI's events do not wait for the server).
   */
  const stop = async () => {
    stopped = true;
    if (timer) clearTimeout(timer);
    timer = null;
    giveUp?.();
    giveUp = null;
    await sync().catch((e: unknown) => {
      logger?.error({ code: 'audit_integrate_failed', err: e instanceof Error ? e.name : 'unknown' }, 'audit integration failed');
    });
  };

  /** Whether this process runs the periodic passes now (tests and metrics). */
  const isLeader = () => leader;

  /** Events committed but not yet integrated. */
  const pendingCount = async (): Promise<number> => {
    const r = await db.selectFrom('audit_pending').select(sql<number>`count(*)`.as('n')).executeTakeFirstOrThrow();
    return Number(r.n);
  };

  return { sync, start, kick, stop, pendingCount, pass, isLeader, onIntegrated };
};

export type Integrator = ReturnType<typeof createIntegrator>;
