import { describe, expect, it } from 'vitest';
import { createLogger } from '../src/kernel/log.js';
import { createJobWorker, type JobQueue } from '../src/queue/job-worker.js';
import { waitFor } from './support/wait.js';

/**
 * An in-memory queue with due times: a job is claimable once its time has come. Counts the claim statements and
 * the reads of the next due time, the two statements an idle worker could run.
 */
const timedQueue = () => {
  const jobs = new Map<string, number>();
  const ran: string[] = [];
  // How many reads of the next due time had run when each job was claimed.
  const readsBefore = new Map<string, number>();
  let claims = 0;
  let reads = 0;
  // A job's run may schedule its own retry (as a deferral does), reported to the worker like the real workers do.
  let onRun: (id: string) => void = () => {};
  const queue: JobQueue<string> = {
    name: 'timed',
    id: (j) => j,
    claim: async (_w, n) => {
      claims++;
      const now = Date.now();
      const due = [...jobs].filter(([, at]) => at <= now).slice(0, n);
      for (const [id] of due) {
        jobs.delete(id);
        readsBefore.set(id, reads);
      }
      return due.map(([id]) => id);
    },
    renew: async () => {},
    run: async (j) => {
      ran.push(j);
      onRun(j);
    },
    nextDue: async () => {
      reads++;
      const times = [...jobs.values()];
      return times.length === 0 ? null : new Date(Math.min(...times));
    },
  };
  return {
    queue,
    jobs,
    ran,
    readsBefore,
    claims: () => claims,
    reads: () => reads,
    onRun: (fn: (id: string) => void) => {
      onRun = fn;
    },
  };
};

const options = {
  concurrency: 2,
  pollMs: 20,
  leaseMs: 60_000,
  // The safety net far beyond the test: any claim seen while idle came from a due time or a wake-up.
  idleMs: 600_000,
  logger: createLogger({ level: 'silent' }),
  now: () => new Date(),
};

/** Real time passing (the worker's timers are real): the quiet window the counts are compared across. */
const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('job worker with nothing due', () => {
  it('runs no claim and no read for seconds while idle, yet claims a job when it is notified (kick)', async () => {
    const m = timedQueue();
    const w = createJobWorker(m.queue, options);
    w.start();
    try {
      // The first look: one claim (nothing due) and one read of the next due time (none).
      expect(await waitFor(() => m.claims() >= 1 && m.reads() >= 1)).toBe(true);
      const claims = m.claims();
      const reads = m.reads();
      // pollMs is 20: a polling loop would claim about a hundred times in this window.
      await pause(2000);
      expect(m.claims()).toBe(claims);
      expect(m.reads()).toBe(reads);
      m.jobs.set('new', Date.now());
      w.kick();
      expect(await waitFor(() => m.ran.includes('new'))).toBe(true);
    } finally {
      await w.stop();
    }
  });

  it('wakes by itself for a retry that was waiting when it looked (nextDue), with no wake-up', async () => {
    const m = timedQueue();
    m.jobs.set('retry', Date.now() + 1500);
    const w = createJobWorker(m.queue, options);
    w.start();
    try {
      expect(await waitFor(() => m.claims() >= 1 && m.reads() >= 1)).toBe(true);
      const claims = m.claims();
      await pause(500);
      // Still sleeping towards the retry's time: not polling.
      expect(m.claims()).toBe(claims);
      expect(m.ran).toEqual([]);
      expect(await waitFor(() => m.ran.includes('retry'), { timeoutMs: 10_000 })).toBe(true);
    } finally {
      await w.stop();
    }
  });

  it('wakes for a retry its own job scheduled (dueAt), without reading the due time again', async () => {
    const m = timedQueue();
    const w = createJobWorker(m.queue, options);
    // The first attempt defers: the retry is stored and reported, as the delivery and webhook workers do.
    m.onRun((id) => {
      if (id !== 'job') return;
      const at = new Date(Date.now() + 1000);
      m.jobs.set('job-retry', at.getTime());
      w.dueAt(at);
    });
    w.start();
    try {
      expect(await waitFor(() => m.claims() >= 1 && m.reads() >= 1)).toBe(true);
      m.jobs.set('job', Date.now());
      w.kick();
      expect(await waitFor(() => m.ran.includes('job'))).toBe(true);
      const reads = m.reads();
      expect(await waitFor(() => m.ran.includes('job-retry'), { timeoutMs: 10_000 })).toBe(true);
      // The retry's time came from the job itself: no read before its claim.
      expect(m.readsBefore.get('job-retry')).toBe(reads);
    } finally {
      await w.stop();
    }
  });

  it('without nextDue, polls every pollMs as before', async () => {
    const m = timedQueue();
    const { nextDue: _none, ...polling } = m.queue;
    const w = createJobWorker(polling, options);
    w.start();
    try {
      m.jobs.set('later', Date.now() + 300);
      expect(await waitFor(() => m.ran.includes('later'))).toBe(true);
      expect(m.claims()).toBeGreaterThan(2);
      expect(m.reads()).toBe(0);
    } finally {
      await w.stop();
    }
  });
});
