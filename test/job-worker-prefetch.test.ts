import { describe, expect, it } from 'vitest';
import { createLogger } from '../src/kernel/log.js';
import { createJobWorker } from '../src/queue/job-worker.js';
import { waitFor } from './support/wait.js';

/** An in-memory queue: `due` jobs are claimed in order; each run waits for the test to release it. */
const memoryQueue = (total: number) => {
  const due = Array.from({ length: total }, (_, i) => i);
  const claims: number[] = [];
  const ran: number[] = [];
  const waiting = new Map<number, () => void>();
  let running = 0;
  let most = 0;
  return {
    claims,
    ran,
    waiting,
    due,
    most: () => most,
    queue: {
      name: 'memory',
      id: (j: number) => String(j),
      claim: async (_w: string, n: number) => {
        const jobs = due.splice(0, n);
        claims.push(jobs.length);
        return jobs;
      },
      renew: async () => {},
      run: (j: number) =>
        new Promise<void>((resolve) => {
          running++;
          most = Math.max(most, running);
          waiting.set(j, () => {
            running--;
            ran.push(j);
            waiting.delete(j);
            resolve();
          });
        }),
    },
  };
};

const options = {
  concurrency: 4,
  prefetch: 4,
  pollMs: 50,
  leaseMs: 60_000,
  logger: createLogger({ level: 'silent' }),
  now: () => new Date(),
};

describe('job worker with prefetch', () => {
  it('runs at most `concurrency` jobs, holds the prefetched ones, and still runs every held job when stopped', async () => {
    const m = memoryQueue(20);
    const w = createJobWorker(m.queue, options);
    w.start();
    // Eight claimed at once (concurrency + prefetch), four of them running.
    expect(await waitFor(() => m.waiting.size === 4)).toBe(true);
    expect(m.claims[0]).toBe(8);
    const stopped = w.stop();
    // Stopping claims nothing more, but the four held jobs run after the four in flight.
    while (m.ran.length < 8) {
      expect(await waitFor(() => m.waiting.size > 0)).toBe(true);
      for (const release of [...m.waiting.values()]) release();
    }
    await stopped;
    expect(m.ran.sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(m.most()).toBe(4);
    expect(m.due.length).toBe(12);
  });

  it('lets the queue claim in a commit of its own (reserve, fill) and runs what it hands over, never beyond capacity', async () => {
    const m = memoryQueue(0);
    const w = createJobWorker(m.queue, options);
    w.start();
    // Nothing due: the loop's claim found none, so a refill is not worth a statement until a kick.
    expect(await waitFor(() => m.claims.length >= 1)).toBe(true);
    expect(w.reserve(0)).toBeNull();
    w.kick();
    await waitFor(() => m.claims.length >= 2);
    m.due.push(100, 101, 102);
    w.kick();
    expect(await waitFor(() => m.waiting.size === 3)).toBe(true);
    // That claim found fewer than it asked for: no refill until new work is announced.
    expect(w.reserve(0)).toBeNull();
    w.kick();
    // Three in flight of a capacity of eight: five more may be claimed, plus the slots a commit frees.
    const r = w.reserve(2)!;
    expect(r.n).toBe(7);
    // While reserved, a second refill gets only what is left.
    expect(w.reserve(0)).toBeNull();
    r.fill([200, 201]);
    expect(await waitFor(() => m.waiting.size === 4)).toBe(true);
    while (m.ran.length < 5) {
      expect(await waitFor(() => m.waiting.size > 0)).toBe(true);
      for (const release of [...m.waiting.values()]) release();
    }
    expect(m.ran).toContain(201);
    expect(m.most()).toBe(4);
    await w.stop();
    expect(w.reserve(0)).toBeNull();
  });
});
