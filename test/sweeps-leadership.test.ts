import { afterEach, describe, expect, it } from 'vitest';
import { createPostgresLead, SWEEPS_ROLE, sqliteLead, whileLeading } from '../src/store/notify.js';
import { freshDatabase, testDialects } from './support/dialects.js';
import { waitFor } from './support/wait.js';

/** What `whileLeading` began and ended, per contender. */
const sweeps = () => {
  let running = 0;
  let begun = 0;
  return {
    begin: () => {
      running++;
      begun++;
      return () => {
        running--;
      };
    },
    running: () => running,
    begun: () => begun,
  };
};

describe('the periodic sweeps run on one leader (whileLeading)', () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  it('SQLite: every process leads, so the sweeps begin at once and end when given up', async () => {
    const s = sweeps();
    const stop = whileLeading(sqliteLead, SWEEPS_ROLE, s.begin);
    expect(await waitFor(() => s.running() === 1)).toBe(true);
    stop();
    expect(s.running()).toBe(0);
  });

  it('without leadership the sweeps simply run', () => {
    const s = sweeps();
    const stop = whileLeading(undefined, SWEEPS_ROLE, s.begin);
    expect(s.running()).toBe(1);
    stop();
    expect(s.running()).toBe(0);
  });

  if (testDialects().includes('postgres'))
    it('PostgreSQL: of two processes only one runs the sweeps; when it gives up, the other takes over at once', async () => {
      const db = await freshDatabase('postgres');
      cleanups.push(db.drop);
      // Two processes' leaderships: each its own advisory-lock session, as two `mailward serve` processes have.
      const a = createPostgresLead(db.url!);
      const b = createPostgresLead(db.url!);
      cleanups.push(a.close, b.close);
      const sa = sweeps();
      const sb = sweeps();
      const stopA = whileLeading(a.lead, SWEEPS_ROLE, sa.begin);
      expect(await waitFor(() => sa.running() === 1)).toBe(true);
      const stopB = whileLeading(b.lead, SWEEPS_ROLE, sb.begin);
      // b waits inside PostgreSQL for the lock: polled for a while, it never begins.
      expect(await waitFor(() => sb.running() > 0, { timeoutMs: 1000 })).toBe(false);
      stopA();
      expect(sa.running()).toBe(0);
      expect(await waitFor(() => sb.running() === 1)).toBe(true);
      expect(sa.begun() + sb.begun()).toBe(2);
      stopB();
      expect(sb.running()).toBe(0);
    });
});
