import { randomUUID } from 'node:crypto';
import type { Logger } from '../kernel/log.js';

/**
 * The earliest of the due times a queue's `nextDue` statement read (ISO text, or null where nothing waits), or null
 * when there is none.
 */
export const earliestDue = (times: readonly (string | null | undefined)[]): Date | null => {
  const ms = times.filter((t): t is string => typeof t === 'string').map((t) => Date.parse(t));
  return ms.length === 0 ? null : new Date(Math.min(...ms));
};

/**
 * A job queue's adapter: how to claim due jobs with a lease (SKIP LOCKED on PostgreSQL, one atomic UPDATE on
 * SQLite: see outbox-repo.ts), renew the leases of jobs in flight, and run one job (recording its outcome and
 * next attempt, whose delay comes from a retry schedule kept as data: `retryDelay`).
 */
export type JobQueue<J> = {
  /**
   * Claims up to `n` jobs for `workerId` (lease until `leaseUntil`). `due` is false when the last look for due
   * jobs found fewer than it asked for and nothing was kicked since: a queue with work of its own (`hasFresh`)
   * may then skip that look.
   */
  claim: (workerId: string, n: number, leaseUntil: Date, due: boolean) => Promise<J[]>;
  /** Extends the leases of this worker's jobs in flight. */
  renew: (workerId: string, leaseUntil: Date) => Promise<void>;
  /** Runs one claimed job to its recorded outcome; a throw is logged (the job's lease runs out and it is claimed again). */
  run: (job: J, workerId: string) => Promise<void>;
  /** A short label for logs (no data). */
  name: string;
  id: (job: J) => string;
  /**
   * The earliest time a job that is not due now becomes due (a retry's next attempt, another worker's lease
   * running out), or null when none waits: one cheap read. With it, a worker with nothing due sleeps until then
   * (or a wake-up, or `idleMs`) instead of claiming every `pollMs`; without it the loop polls as before.
   */
  nextDue?: () => Promise<Date | null>;
};

export type JobWorkerOptions = {
  /** This worker's claim owner id (default: a new random one). */
  workerId?: string;
  concurrency: number;
  /**
   * Jobs claimed ahead of free slots and held here (leased, and renewed like the jobs in flight) until a
   * slot frees: claims then come in batches of at least half of `concurrency + prefetch`, so the claim
   * statements per job fall. 0 (the default) claims only for free slots. Held jobs still run at stop.
   */
  prefetch?: number;
  /**
   * With nothing due, how long the loop sleeps unless kicked, when the queue has no `nextDue`. With `nextDue`:
   * how long it sleeps while slots are busy, and when a job read as due was not claimable (another worker's
   * claim in flight), so the loop never spins.
   */
  pollMs: number;
  /**
   * A queue with `nextDue`: the longest sleep with nothing due, the safety net for a wake-up that was lost
   * (a dropped LISTEN connection, another process's retry or a dead worker's lease this one was not told of).
   * Default: the lease, between `pollMs` and 30 s.
   */
  idleMs?: number;
  leaseMs: number;
  logger: Logger;
  now: () => Date;
  /**
   * Chores run by `runOnce` (expiring approvals), and by the loop at most once a second when the queue has no
   * `nextDue`. A queue with `nextDue` sleeps for long stretches, so its chores run elsewhere (`mailward serve`
   * runs the approvals sweep on the sweeps leader: approvals-service.ts startExpirySweeper).
   */
  sweep?: () => Promise<unknown>;
  /** Wake-ups from outside (the domain-event feed): called with `kick`; returns an unsubscribe. */
  wakeOn?: (kick: () => void) => () => void;
  /**
   * Whether the queue knows of work that is not a due job yet (the webhook worker's events past an endpoint's
   * cursor, taken under range leases by its claim): the loop and `reserve` then claim even when no job was due.
   */
  hasFresh?: () => boolean;
};

/** Seconds before attempt `attempts + 1` from a schedule kept as data, or null when the schedule is exhausted. */
export const retryDelay = (schedule: readonly number[], attempts: number): number | null =>
  attempts >= 1 && attempts <= schedule.length ? schedule[attempts - 1]! : null;

/**
 * The general job worker (delivery now, webhook deliveries next): up to `concurrency` jobs in flight; free
 * slots are refilled as jobs finish (claims of at least a quarter of the slots, so claim statements stay few
 * under load), a job is claimed only when a slot is free to run it at once (short leases), leases of jobs in
 * flight are renewed every third of the lease while this process lives (a slow job never loses its lease to
 * another worker, which would run it twice), and with nothing due the loop sleeps until the next due time the
 * queue reports (`nextDue`: see `sleepFor`), or `pollMs` without one, or until kicked.
 */
export const createJobWorker = <J>(queue: JobQueue<J>, o: JobWorkerOptions) => {
  const workerId = o.workerId ?? `wrk_${randomUUID()}`;
  let running = false;
  let loop: Promise<void> | null = null;
  let unsubscribe: (() => void) | null = null;

  /*
   * Idle sleep with `queue.nextDue` (a process with nothing due runs no statements: README, "Two PostgreSQL
   * processes"): the loop sleeps until `knownDue`, the earliest due time it knows of, or `idleMs` after its last
   * look, unless woken. `knownDue` is read from the store when the loop is idle and `dueStale` (at start, and
   * after every timed wake-up: the claim took what was due, or another worker did), and lowered by `dueAt`, the
   * retries this worker's own outcomes schedule, so a burst of jobs costs no read per job. New jobs are due at
   * once and wake the loop (`kick`); what no wake-up reaches (another process's retries, a dead worker's lease)
   * is in the next read, at worst one `idleMs` late. At-least-once delivery is kept: every job is still claimed
   * by the same statements, only the time of the next look changed.
   */
  let knownDue: number | null = null;
  let dueStale = true;
  let readingDue = false;
  let dueWhileReading: number | null = null;
  let lastLook = 0;
  const idleMs = o.idleMs ?? Math.min(30_000, Math.max(o.pollMs, o.leaseMs));
  const minDue = (a: number | null, b: number | null) => (a === null ? b : b === null ? a : Math.min(a, b));
  /** A job this worker recorded (a retry) becomes due at `at`: the idle loop wakes for it without a read. */
  const dueAt = (at: Date) => {
    const t = at.getTime();
    knownDue = minDue(knownDue, t);
    if (readingDue) dueWhileReading = minDue(dueWhileReading, t);
    notify();
  };
  const readDue = async () => {
    if (!queue.nextDue) return;
    readingDue = true;
    dueWhileReading = null;
    try {
      const next = await queue.nextDue();
      dueStale = false;
      knownDue = minDue(next ? next.getTime() : null, dueWhileReading);
    } catch (e) {
      // Fail toward looking: the next sleep is `pollMs`'s, and the read is tried again after it.
      knownDue = o.now().getTime();
      o.logger.error({ err: { type: (e as Error)?.name } }, `${queue.name}: reading the next due time failed`);
    } finally {
      readingDue = false;
    }
  };
  /** How long the loop sleeps now, and whether that is an idle sleep (nothing due: a timed wake-up then reads `nextDue`). */
  const sleepFor = async (): Promise<{ ms: number; idle: boolean }> => {
    if (!queue.nextDue || !drained || hasFresh()) return { ms: o.pollMs, idle: false };
    // Read only with nothing in flight: a finished job reports its retry (`dueAt`), so a busy worker reads nothing.
    if (dueStale && inFlight.size + held.length + reserved === 0) await readDue();
    let ms = lastLook + idleMs - Date.now();
    if (knownDue !== null) {
      const until = knownDue - o.now().getTime();
      ms = Math.min(ms, until > 0 ? until : o.pollMs);
    }
    return { ms: Math.max(0, ms), idle: true };
  };

  let lastSweep = 0;
  const sweepIfDue = async (force: boolean) => {
    // Expiry needs no sub-second precision: at most one sweep a second keeps the loop cheap.
    if (!o.sweep || (!force && Date.now() - lastSweep < 1000)) return;
    lastSweep = Date.now();
    await o.sweep();
  };

  const leaseUntil = () => new Date(o.now().getTime() + o.leaseMs);
  const claim = (n: number, due = true) => queue.claim(workerId, n, leaseUntil(), due);
  const hasFresh = () => o.hasFresh?.() ?? false;

  // Wakes the loop: a commit queued work (kick) or an in-flight job finished (a slot is free).
  let signal: (() => void) | null = null;
  let signalled = false;
  const notify = () => {
    if (signal) signal();
    else signalled = true;
  };
  /** Waits for `notify` or `ms`; true when woken by the timer. */
  const wait = (ms: number) =>
    new Promise<boolean>((resolve) => {
      if (signalled) {
        signalled = false;
        resolve(false);
        return;
      }
      const t = setTimeout(() => {
        signal = null;
        resolve(true);
      }, ms);
      signal = () => {
        clearTimeout(t);
        signal = null;
        resolve(false);
      };
    });

  const inFlight = new Set<Promise<void>>();
  // Claimed jobs waiting for a free slot (prefetch).
  const held: J[] = [];
  const runLogged = (job: J) =>
    queue
      .run(job, workerId)
      .catch((e) => o.logger.error({ job: queue.id(job), err: { type: (e as Error)?.name } }, `${queue.name}: job failed`));
  const track = (job: J) => {
    const p = runLogged(job).finally(() => {
      inFlight.delete(p);
      notify();
    });
    inFlight.add(p);
  };
  // Nothing was due at the last claim: only a kick or the poll timer claims again, not every finished job.
  let drained = false;
  const prefetch = o.prefetch ?? 0;
  const capacity = o.concurrency + prefetch;
  // Jobs being claimed now (by the loop, or by a refill: see `reserve`), counted as held.
  let reserved = 0;

  /** Starts held jobs while slots are free. */
  const pump = () => {
    while (held.length > 0 && inFlight.size < o.concurrency) track(held.shift()!);
  };

  let renewing = false;
  const renewLeases = async () => {
    if (renewing || inFlight.size + held.length === 0) return;
    renewing = true;
    try {
      await queue.renew(workerId, leaseUntil());
    } catch (e) {
      o.logger.error({ err: { type: (e as Error)?.name } }, `${queue.name}: renewing leases failed`);
    } finally {
      renewing = false;
    }
  };
  let renewTimer: NodeJS.Timeout | null = null;

  // Kicks counted, so one that arrives while a claim is running is not undone by that claim's "nothing due"
  // (the claim may have read before the kicking commit): the loop claims once more.
  let kicks = 0;
  /** Wakes the loop at once (after a commit that queued work). */
  const kick = () => {
    kicks++;
    drained = false;
    notify();
  };

  /** Starts the loop (idempotent). */
  const start = () => {
    if (running) return;
    running = true;
    dueStale = true;
    const chunk = Math.max(1, prefetch > 0 ? Math.ceil(capacity / 2) : Math.ceil(o.concurrency / 4));
    renewTimer = setInterval(() => void renewLeases(), Math.max(100, Math.floor(o.leaseMs / 3)));
    renewTimer.unref();
    unsubscribe = o.wakeOn?.(kick) ?? null;
    loop = (async () => {
      while (running) {
        try {
          if (!queue.nextDue) await sweepIfDue(false);
          pump();
          const busy = inFlight.size + held.length + reserved;
          const free = capacity - busy;
          if ((!drained || hasFresh()) && free > 0 && (free >= chunk || busy === 0)) {
            const seen = kicks;
            reserved += free;
            lastLook = Date.now();
            // What was known to come due by now is being claimed (here or by another worker): read again when idle.
            if (knownDue !== null && knownDue <= o.now().getTime()) {
              knownDue = null;
              dueStale = true;
            }
            let jobs: J[];
            try {
              jobs = await claim(free, !drained);
            } finally {
              reserved -= free;
            }
            drained = jobs.length < free && kicks === seen;
            held.push(...jobs);
            pump();
            if (jobs.length > 0) continue;
          }
        } catch (e) {
          o.logger.error({ err: { type: (e as Error)?.name } }, `${queue.name}: loop pass failed`);
        }
        if (!running) break;
        let sleep: { ms: number; idle: boolean };
        try {
          sleep = await sleepFor();
        } catch {
          sleep = { ms: o.pollMs, idle: false };
        }
        if (!running) break;
        if (await wait(sleep.ms)) {
          drained = false;
          if (sleep.idle) dueStale = true;
        }
      }
      // Held jobs are leased to this worker: run them rather than leave them to wait out their lease.
      while (held.length > 0 || inFlight.size > 0) {
        pump();
        await Promise.race(inFlight);
      }
    })();
  };

  /** Stops claiming; jobs in flight finish and record their outcome. */
  const stop = async () => {
    running = false;
    unsubscribe?.();
    unsubscribe = null;
    notify();
    await loop;
    loop = null;
    if (renewTimer) clearInterval(renewTimer);
    renewTimer = null;
  };

  /**
   * A refill: lets the queue claim jobs in a transaction of its own making (the webhook worker claims in the
   * commit that records outcomes, one commit for both) and hand them over. `freeing` is how many jobs in
   * flight that commit will finish. Returns how many to claim, whether due jobs may be waiting (`due`, as
   * for `claim`), and `fill` (call it once, with the claimed jobs, or with none when the claim rolled back and
   * `rolledBack`; `dueShort` says whether the look for due jobs found fewer than it asked for, when the
   * queue knows better than the count of jobs handed over), or null when the worker is stopped, nothing was
   * due at the last claim and the queue has no fresh work (`fresh`, default `hasFresh`), or no slot would be free.
   */
  const reserve = (
    freeing: number,
    fresh = hasFresh(),
  ): { n: number; due: boolean; fill: (jobs: J[], rolledBack?: boolean, dueShort?: boolean) => void } | null => {
    const n = capacity - (inFlight.size + held.length + reserved) + freeing;
    if (!running || (drained && !fresh) || n <= 0) return null;
    const seen = kicks;
    const due = !drained;
    reserved += n;
    let filled = false;
    return {
      n,
      due,
      fill: (jobs, rolledBack = false, dueShort = jobs.length < n) => {
        if (filled) return;
        filled = true;
        reserved -= n;
        if (!rolledBack && dueShort && kicks === seen) drained = true;
        held.push(...jobs);
        // Stopped meanwhile: the loop's last pass still runs held jobs, or a later start does.
        if (running) pump();
        notify();
      },
    };
  };

  /** One pass (tests drive a worker with it): sweep, claim due jobs, run them. Returns how many jobs it ran. */
  const runOnce = async (): Promise<number> => {
    await sweepIfDue(true);
    const jobs = await claim(o.concurrency);
    await Promise.all(jobs.map(runLogged));
    return jobs.length;
  };

  return { start, stop, runOnce, kick, reserve, dueAt, workerId };
};

export type JobWorker = ReturnType<typeof createJobWorker>;
