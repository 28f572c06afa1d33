import path from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEventFeed } from '../src/events/event-feed.js';
import { appendEvents, type DomainEvent, readEvents } from '../src/events/events-log.js';
import { inGroupCommit, openStore, type Store, type Tx, transact } from '../src/store/db.js';
import { migrateToLatest } from '../src/store/migrate.js';
import { freshDatabase, testDialects } from './support/dialects.js';
import { waitFor } from './support/wait.js';

const ORGS = ['org_a', 'org_b'];

/** Everything an organisation's log holds, from cursor `after`, paged as a consumer would read it. */
const readAll = async (store: Store, orgId: string, after = 0, page = 7): Promise<DomainEvent[]> => {
  const out: DomainEvent[] = [];
  let cursor = after;
  for (;;) {
    const got = await readEvents(store.db, { orgId, after: cursor, limit: page });
    out.push(...got);
    if (got.length < page) return out;
    cursor = got.at(-1)!.seq;
  }
};

for (const dialect of testDialects()) {
  describe(`domain-event log (${dialect})`, () => {
    let drop: () => Promise<void>;
    // Two stores on one database: two connections (pools) writing at once, as two processes would.
    let one: Store;
    let two: Store;
    const open = (db: Awaited<ReturnType<typeof freshDatabase>>) =>
      dialect === 'sqlite'
        ? openStore({ kind: 'sqlite', file: path.join(db.dataDir, 'mailward.db') })
        : openStore({ kind: 'postgres', url: db.url! });

    beforeAll(async () => {
      const db = await freshDatabase(dialect);
      drop = db.drop;
      one = open(db);
      await migrateToLatest(one);
      two = open(db);
    });
    afterAll(async () => {
      await one?.destroy();
      await two?.destroy();
      await drop?.();
    });

    it('returns every committed event exactly once, in order, from any cursor, under concurrent writers that sometimes roll back', async () => {
      // Each writer: an organisation, how many events, whether it rolls back, and a pause inside its transaction.
      const writer = fc.record({
        org: fc.constantFrom(...ORGS),
        count: fc.integer({ min: 1, max: 4 }),
        rollback: fc.boolean(),
        pauseMs: fc.integer({ min: 0, max: 3 }),
        // plain: numbered at once (db.transaction); transact and group: numbered just before COMMIT (src/store/db.ts
        // deferToCommit), a group caller in a savepoint of a transaction shared with the other group writers.
        mode: fc.constantFrom('plain', 'transact', 'group'),
      });
      let run = 0;
      await fc.assert(
        fc.asyncProperty(
          fc.array(writer, { minLength: 1, maxLength: 24 }),
          fc.integer({ min: 0, max: 40 }),
          async (writers, cursorPick) => {
            run++;
            const before = new Map<string, number>();
            for (const org of ORGS) before.set(org, (await readAll(one, org)).length);
            // A consumer follows each organisation's log with its own cursor while the writers run.
            const followed = new Map<string, DomainEvent[]>(ORGS.map((o) => [o, []]));
            const cursors = new Map<string, number>(ORGS.map((o) => [o, (before.get(o) ?? 0) as number]));
            let writing = true;
            const follow = (async () => {
              while (writing) {
                for (const org of ORGS) {
                  const got = await readEvents(two.db, { orgId: org, after: cursors.get(org)!, limit: 5 });
                  if (got.length) cursors.set(org, got.at(-1)!.seq);
                  followed.get(org)!.push(...got);
                }
                await new Promise((r) => setTimeout(r, 1));
              }
            })();
            const results = await Promise.allSettled(
              // PostgreSQL: writers on both pools at once. SQLite has one writer per file, and two connections in one process would
              // wait on each other's lock with the event loop blocked: there writers share one handle, as they do in a process.
              writers.map((w, i) => {
                const db = (i % 2 && dialect === 'postgres' ? one : two).db;
                const exec = (fn: (tx: Tx) => Promise<void>) =>
                  w.mode === 'plain' ? db.transaction().execute(fn) : w.mode === 'transact' ? transact(db, fn) : inGroupCommit(db, fn);
                return exec(async (tx) => {
                  await appendEvents(
                    tx,
                    Array.from({ length: w.count }, (_, k) => ({
                      orgId: w.org,
                      type: 'email.received' as const,
                      at: new Date().toISOString(),
                      data: { run, writer: i, k },
                    })),
                  );
                  await new Promise((r) => setTimeout(r, w.pauseMs));
                  if (w.rollback) throw new Error('rolled back on purpose');
                });
              }),
            );
            writing = false;
            await follow;
            for (const [i, r] of results.entries()) expect(r.status === 'rejected').toBe(writers[i]!.rollback);

            for (const org of ORGS) {
              const all = await readAll(one, org);
              // Gapless: 1..n, each number once.
              expect(all.map((e) => e.seq)).toEqual(all.map((_, i) => i + 1));
              const mine = all.filter((e) => e.data.run === run);
              const committed = writers.flatMap((w, i) =>
                w.org === org && !w.rollback ? Array.from({ length: w.count }, (_, k) => `${i}:${k}`) : [],
              );
              // Exactly the committed writers' events, nothing of a rolled-back one.
              expect(mine.map((e) => `${e.data.writer}:${e.data.k}`).sort()).toEqual(committed.sort());
              // A writer's events are consecutive and in its order.
              for (const w of new Set(mine.map((e) => e.data.writer))) {
                const seqs = mine.filter((e) => e.data.writer === w).map((e) => e.seq);
                expect(seqs).toEqual(seqs.map((_, k) => seqs[0]! + k));
              }
              // The consumer that read while they wrote, plus one last read, saw each event once, in order, none skipped.
              const tail = await readEvents(two.db, { orgId: org, after: cursors.get(org)!, limit: 1000 });
              const seen = [...followed.get(org)!, ...tail];
              expect(seen.map((e) => e.id)).toEqual(all.slice(before.get(org)).map((e) => e.id));
              // From any cursor: exactly what lies above it.
              const k = Math.min(cursorPick, all.length);
              expect((await readAll(two, org, k, 3)).map((e) => e.id)).toEqual(all.slice(k).map((e) => e.id));
            }
          },
        ),
        { numRuns: 15 },
      );
    }, 120_000);

    it('numbers the events of a deferring transaction just before its COMMIT, in the order they were appended', async () => {
      const event = (k: number) => ({ orgId: 'org_b', type: 'email.queued' as const, at: new Date().toISOString(), data: { deferred: k } });
      const before = (await readAll(one, 'org_b')).length;
      await transact(one.db, async (tx) => {
        for (let k = 0; k < 5; k++) await appendEvents(tx, [event(k)]);
        // Nothing numbered or written yet inside the transaction: the head and the log are as before.
        const head = await tx.selectFrom('event_heads').select('seq').where('org_id', '=', 'org_b').executeTakeFirst();
        expect(Number(head?.seq ?? 0)).toBe(before);
        expect(await tx.selectFrom('domain_events').select('id').where('org_id', '=', 'org_b').execute()).toHaveLength(before);
        if (dialect === 'postgres') {
          // The head is not held yet: a writer on another connection numbers its event without waiting for this one.
          await two.db.transaction().execute((t2) => appendEvents(t2, [event(99)]));
        }
      });
      const got = (await readAll(one, 'org_b')).slice(before);
      const expected = dialect === 'postgres' ? [99, 0, 1, 2, 3, 4] : [0, 1, 2, 3, 4];
      expect(got.map((e) => e.data.deferred)).toEqual(expected);
      expect(got.map((e) => e.seq)).toEqual(expected.map((_, i) => before + i + 1));
    });

    it('drops the events of a group caller that failed with its savepoint and numbers the others once, gapless', async () => {
      const before = (await readAll(one, 'org_a')).length;
      const results = await Promise.allSettled(
        [0, 1, 2, 3].map((c) =>
          inGroupCommit(one.db, async (tx) => {
            await appendEvents(tx, [
              { orgId: 'org_a', type: 'email.delivered', at: new Date().toISOString(), data: { caller: c, k: 0 } },
              { orgId: 'org_a', type: 'email.delivered', at: new Date().toISOString(), data: { caller: c, k: 1 } },
            ]);
            if (c === 1) throw new Error('caller 1 fails');
          }),
        ),
      );
      expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
      const got = (await readAll(one, 'org_a')).slice(before);
      expect(got.map((e) => `${e.data.caller}:${e.data.k}`)).toEqual(['0:0', '0:1', '2:0', '2:1', '3:0', '3:1']);
      expect(got.map((e) => e.seq)).toEqual(got.map((_, i) => before + i + 1));
    });

    it('wakes a listener on another connection after the commit, never for a rollback, and reading then finds the event', async () => {
      const feed = createEventFeed(two);
      const wakes: string[] = [];
      const stop = feed.subscribe((w) => wakes.push(w === '*' ? '*' : `${w.orgId} ${w.type} ${w.mailboxId}`));
      // PostgreSQL: the LISTEN connection opens and says `*` once it listens.
      if (dialect === 'postgres') expect(await waitFor(() => wakes.includes('*'))).toBe(true);
      wakes.length = 0;
      const head = await feed.head('org_a');
      await one.db
        .transaction()
        .execute((tx) => appendEvents(tx, [{ orgId: 'org_a', type: 'email.held', at: new Date().toISOString(), mailboxId: 'mbx_x' }]))
        .catch(() => {});
      await expect(
        one.db.transaction().execute(async (tx) => {
          await appendEvents(tx, [{ orgId: 'org_a', type: 'email.rejected', at: new Date().toISOString(), mailboxId: 'mbx_x' }]);
          throw new Error('no');
        }),
      ).rejects.toThrow('no');
      // SQLite: another connection hears `*` through the doorbell file; PostgreSQL names the event.
      expect(await waitFor(() => wakes.length > 0)).toBe(true);
      // No second wake follows (the rolled-back transaction announces nothing): polled, failing as soon as one comes.
      expect(await waitFor(() => wakes.length > 1, { timeoutMs: 200 })).toBe(false);
      expect(wakes).toEqual(dialect === 'postgres' ? ['org_a email.held mbx_x'] : ['*']);
      const got = await feed.read({ orgId: 'org_a', after: head, limit: 10 });
      expect(got.map((e) => e.type)).toEqual(['email.held']);
      stop();
    });
  });
}
