import path from 'node:path';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appendEvent } from '../src/events/events-log.js';
import { createCommitBatcher } from '../src/inbound/commit-batcher.js';
import { migrateToLatest } from '../src/store/migrate.js';
import { openStore, type Store, type Tx } from '../src/store/db.js';
import { freshDatabase, testDialects } from './support/dialects.js';

for (const dialect of testDialects()) {
  describe(`inbound group commit (${dialect})`, () => {
    let store: Store;
    let drop: () => Promise<void>;
    beforeAll(async () => {
      const db = await freshDatabase(dialect);
      drop = db.drop;
      store =
        dialect === 'sqlite'
          ? openStore({ kind: 'sqlite', file: path.join(db.dataDir, 'batcher.db'), checkpointEveryMs: 0 })
          : openStore({ kind: 'postgres', url: db.url! });
      await migrateToLatest(store);
    }, 60_000);
    afterAll(async () => {
      await store?.destroy();
      await drop?.();
    });

    /** A caller's work: notes the transaction it ran in and reads through it. */
    const work = (seen: Tx[]) => async (tx: Tx) => {
      seen.push(tx);
      await sql`select 1 as one`.execute(tx);
      return tx;
    };
    const settled = async (p: Promise<unknown>) => {
      let done = false;
      void p.then(
        () => {
          done = true;
        },
        () => {
          done = true;
        },
      );
      for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
      return done;
    };

    it('holds a caller while others are still on their way, then commits them together, none acknowledged before', async () => {
      let arriving = 1;
      // A long bound: only the last arrival may release the batch here.
      const commit = createCommitBatcher(store.db, { arriving: () => arriving, gatherMs: 60_000 });
      const seen: Tx[] = [];
      const first = commit(work(seen));
      expect(await settled(first)).toBe(false);
      expect(seen).toHaveLength(0); // not even begun
      arriving = 0;
      const second = commit(work(seen));
      const [a, b] = await Promise.all([first, second]);
      expect(a).toBe(b); // one transaction
      expect(seen).toHaveLength(2);
    });

    it('commits a lone caller once the wait is over when the others never arrive', async () => {
      const commit = createCommitBatcher(store.db, { arriving: () => 1, gatherMs: 20 });
      const seen: Tx[] = [];
      await commit(work(seen));
      expect(seen).toHaveLength(1);
    });

    it('commits at once when the batch is full or nobody else is coming', async () => {
      const full = createCommitBatcher(store.db, { arriving: () => 5, gatherMs: 60_000, maxBatch: 2 });
      const seen: Tx[] = [];
      const [a, b] = await Promise.all([full(work(seen)), full(work(seen))]);
      expect(a).toBe(b);
      const alone = createCommitBatcher(store.db, { arriving: () => 0, gatherMs: 60_000 });
      await alone(work(seen));
      expect(seen).toHaveLength(3);
    });

    it("writes a batch's domain events once, just before its COMMIT, numbered in order with no gap; a failed batch's with it", async () => {
      const org = `org_batch_${dialect}`;
      const events = () =>
        store.db.selectFrom('domain_events').select(['seq', 'email_id']).where('org_id', '=', org).orderBy('seq').execute();
      let arriving = 2;
      const commit = createCommitBatcher(store.db, { arriving: () => arriving, gatherMs: 60_000 });
      const visibleInside: number[] = [];
      const append = (email: string) => async (tx: Tx) => {
        await appendEvent(tx, { orgId: org, type: 'email.received', at: new Date().toISOString(), emailId: email });
        // Deferred to the commit (src/store/db.ts deferToCommit): not yet written while the batch's work runs.
        visibleInside.push(
          (await tx.selectFrom('domain_events').select('seq').where('org_id', '=', org).where('email_id', '=', email).execute()).length,
        );
      };
      const a = commit(append('msg_a'));
      arriving = 1;
      const b = commit(append('msg_b'));
      arriving = 0;
      const c = commit(append('msg_c'));
      await Promise.all([a, b, c]);
      expect(visibleInside).toEqual([0, 0, 0]);
      expect(await events()).toEqual([
        { seq: 1, email_id: 'msg_a' },
        { seq: 2, email_id: 'msg_b' },
        { seq: 3, email_id: 'msg_c' },
      ]);
      // A batch that fails: its good callers' events are written once each when they run alone, the bad one's never.
      arriving = 1;
      const good = commit(append('msg_d'));
      const bad = commit(async (tx) => {
        await appendEvent(tx, { orgId: org, type: 'email.received', at: new Date().toISOString(), emailId: 'msg_bad' });
        await sql`select no_such_column from no_such_table`.execute(tx);
      });
      arriving = 0;
      const last = commit(append('msg_e'));
      await expect(bad).rejects.toBeTruthy();
      await Promise.all([good, last]);
      expect((await events()).map((e) => [Number(e.seq), e.email_id])).toEqual([
        [1, 'msg_a'],
        [2, 'msg_b'],
        [3, 'msg_c'],
        [4, 'msg_d'],
        [5, 'msg_e'],
      ]);
    });

    it('runs each caller of a failed batch alone: the bad one fails, the others commit', async () => {
      let arriving = 2;
      const commit = createCommitBatcher(store.db, { arriving: () => arriving, gatherMs: 60_000 });
      const seen: Tx[] = [];
      const good = commit(work(seen));
      arriving = 1;
      const bad = commit(async (tx) => {
        await sql`select no_such_column from no_such_table`.execute(tx);
      });
      arriving = 0;
      const last = commit(work(seen));
      await expect(bad).rejects.toBeTruthy();
      const [g, l] = await Promise.all([good, last]);
      expect(g).not.toBe(l); // retried alone, each in its own transaction
    });
  });
}
