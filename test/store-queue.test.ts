import { afterEach, describe, expect, it } from 'vitest';
import { createFairLock, isStoreBusy, StoreBusyError } from '../src/store/db.js';
import { waitFor } from './support/wait.js';
import { testDialects } from './support/dialects.js';
import { createTestApp, type TestApp } from './support/test-app.js';

describe('the fair lock on the SQLite connection', () => {
  it('hands the connection to waiters in arrival order, refuses one beyond the limit and ends a wait at its deadline', async () => {
    const lock = createFairLock({ limit: 3, waitMs: 60_000 });
    await lock.acquire();
    const order: number[] = [];
    const waits = [0, 1, 2].map((i) => lock.acquire().then(() => order.push(i)));
    // The fourth waiter is refused at once: the queue is bounded.
    const refused = await lock.acquire().catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(StoreBusyError);
    expect(isStoreBusy(refused)).toBe(true);
    expect(lock.waiting()).toBe(3);
    for (let i = 0; i < 3; i++) {
      lock.release();
      await waits[i];
    }
    expect(order).toEqual([0, 1, 2]);
    lock.release();

    const short = createFairLock({ limit: 10, waitMs: 20 });
    await short.acquire();
    const late = await short.acquire().catch((e: unknown) => e);
    expect(late).toBeInstanceOf(StoreBusyError);
    expect(short.waiting()).toBe(0);
    short.release();
    // Free again: the next caller gets it at once.
    await short.acquire();
  });
});

// The queue guards SQLite's single connection; PostgreSQL callers wait for a pooled connection instead.
for (const dialect of testDialects().filter((d) => d === 'sqlite')) {
  describe(`many concurrent writers (${dialect})`, () => {
    let t: TestApp | undefined;
    afterEach(async () => {
      await t?.close();
      t = undefined;
    });

    it('answers writers beyond the queue limit 503 store_busy with Retry-After, and every other writer succeeds', async () => {
      t = await createTestApp(dialect, { env: { MAILWARD_SQLITE_QUEUE_LIMIT: '4', MAILWARD_RATE_LIMIT_PER_MINUTE: '100000' } });
      const app = t;
      // Hold the one connection, so every writer either waits in the queue (at most 4) or is refused at once;
      // then let the waiting ones through. Deterministic whatever the machine's speed.
      let open!: () => void;
      const gate = new Promise<void>((r) => {
        open = r;
      });
      const holder = app.c.store.db.transaction().execute(async () => {
        await gate;
      });
      let settled = 0;
      const pending = Array.from({ length: 60 }, (_, i) =>
        app.call('POST', '/v1/departments', app.adminKey, { name: `Ward ${i}` }).finally(() => {
          settled++;
        }),
      );
      await waitFor(() => settled >= 56, { timeoutMs: 20_000 });
      expect(settled).toBe(56);
      open();
      await holder;
      const results = await Promise.all(pending);
      const busy = results.filter((r) => r.status === 503);
      expect(results.filter((r) => r.status !== 201 && r.status !== 503)).toEqual([]);
      expect(busy.length).toBeGreaterThan(0);
      expect(results.filter((r) => r.status === 201).length).toBe(4);
      expect(busy.length).toBe(56);
      for (const r of busy) {
        expect(r.body).toMatchObject({ code: 'store_busy', temporary: true });
        expect(r.headers['retry-after']).toBe('1');
      }
      // Nothing is left waiting: the store serves the next caller at once.
      expect((await app.call('POST', '/v1/departments', app.adminKey, { name: 'After' })).status).toBe(201);
    });

    it('serves concurrent transactions in the order they asked for the connection', async () => {
      t = await createTestApp(dialect);
      const db = t.c.store.db;
      const order: number[] = [];
      await Promise.all(
        Array.from({ length: 50 }, (_, i) =>
          db.transaction().execute(async (tx) => {
            order.push(i);
            await tx.selectFrom('organizations').select('id').execute();
          }),
        ),
      );
      expect(order).toEqual(Array.from({ length: 50 }, (_, i) => i));
    });
  });
}
