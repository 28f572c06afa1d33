import { execFileSync } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/app/config.js';
import { openStore, type Store } from '../src/store/db.js';
import { NOTIFY_CHANNEL, notifyOnCommit } from '../src/store/notify.js';
import { freshDatabase, testDialects } from './support/dialects.js';

/** Polls (no fixed sleep) until `ok()`, with a deadline. */
const until = async (ok: () => boolean, what: string) => {
  const end = Date.now() + 20_000;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
};

/** The LISTEN connection opens at the first listen: marker commits until one is heard show it is up. */
const listening = async (store: Store, heard: string[]) => {
  const end = Date.now() + 20_000;
  while (!heard.includes('ready')) {
    if (Date.now() > end) throw new Error('the listener never heard a commit');
    await notifyOnCommit(store.db, 'ready');
    await new Promise((r) => setTimeout(r, 20));
  }
};

for (const dialect of testDialects()) {
  describe(`store notifications (${dialect})`, () => {
    const stores: Store[] = [];
    let drop: (() => Promise<void>) | undefined;
    afterEach(async () => {
      for (const s of stores.splice(0)) await s.destroy();
      await drop?.();
    });

    it('announces a payload to listeners once its transaction commits, never for one that rolled back', async () => {
      const db = await freshDatabase(dialect);
      drop = db.drop;
      const store = openStore(loadConfig({ ...process.env, DATABASE_URL: '', ...db.env }).database);
      stores.push(store);
      const heard: string[] = [];
      store.listen((p) => {
        if (p !== '*') heard.push(p);
      });
      // The LISTEN connection is opened at the first listen; a marker commit shows it is up.
      await listening(store, heard);
      await store.db
        .transaction()
        .execute(async (tx) => {
          await notifyOnCommit(tx, 'rolled-back');
          throw new Error('roll back');
        })
        .catch(() => undefined);
      await store.db.transaction().execute((tx) => notifyOnCommit(tx, 'committed'));
      await until(() => heard.includes('committed'), 'the committed payload');
      expect(heard).not.toContain('rolled-back');
    }, 60_000);

    // PostgreSQL: notifications of other processes arrive on the LISTEN connection, many in one socket read.
    it.skipIf(dialect !== 'postgres')(
      'hands notifications that arrive together to listeners once per payload (coalesced), losing none',
      async () => {
        const db = await freshDatabase(dialect);
        drop = db.drop;
        const store = openStore(loadConfig({ ...process.env, ...db.env }).database);
        stores.push(store);
        const heard: string[] = [];
        store.listen((p) => {
          if (p !== '*') heard.push(p);
        });
        await listening(store, heard);
        heard.length = 0;
        // Another process commits 40 transactions, each announcing `a` or `b`, while this event loop is blocked
        // (execFileSync): every notification is waiting on the socket when the loop resumes.
        const statements = Array.from(
          { length: 40 },
          (_, i) => `begin; select pg_notify('${NOTIFY_CHANNEL}', '${i % 2 ? 'a' : 'b'}'); commit;`,
        ).join('\n');
        execFileSync('psql', ['-q', '-X', '-v', 'ON_ERROR_STOP=1', db.url!, '-c', statements], { stdio: 'ignore' });
        // The listening backend sends its notifications on its own schedule after those commits: keep the loop
        // blocked a little longer so they are all on the socket (without this, a loaded machine split them in two).
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 500);
        await until(() => heard.includes('a') && heard.includes('b'), 'both payloads');
        await notifyOnCommit(store.db, 'last');
        await until(() => heard.includes('last'), 'the last payload');
        // One wake-up per payload and socket read: 20 each without coalescing; 2 at most if the socket was still
        // read in two pieces.
        expect(heard.filter((p) => p === 'a').length).toBeLessThanOrEqual(2);
        expect(heard.filter((p) => p === 'b').length).toBeLessThanOrEqual(2);
      },
      60_000,
    );
  });
}
