import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { GENESIS_HASH, recomputeRowHash } from '../src/audit/audit-chain.js';
import { eventRows, selectEventRows } from '../src/audit/event-rows.js';
import type { Store } from '../src/store/db.js';
import { testDialects } from './support/dialects.js';
import { migratedDatabase } from './support/migration-store.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

type Child = { proc: ChildProcessWithoutNullStreams; out: () => string; until: (line: string) => Promise<void> };

/** Starts test/support/audit-leader-child.ts with the integrator's intervals (`intervalMs followerMs`). */
const startChild = (env: NodeJS.ProcessEnv, intervalMs: number, followerMs: number): Child => {
  const proc = spawn(process.execPath, ['--import', 'tsx', 'test/support/audit-leader-child.ts', String(intervalMs), String(followerMs)], {
    cwd: repoRoot,
    env,
  });
  let out = '';
  let err = '';
  proc.stdout.on('data', (b: Buffer) => {
    out += b.toString();
  });
  proc.stderr.on('data', (b: Buffer) => {
    err += b.toString();
  });
  const until = async (line: string) => {
    const end = Date.now() + 60_000;
    while (!out.split('\n').includes(line)) {
      if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`child ended before "${line}": ${out} ${err}`);
      if (Date.now() > end) throw new Error(`no "${line}" from the child: ${out} ${err}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  return { proc, out: () => out, until };
};

const killed = (c: Child) =>
  new Promise<void>((resolve) => {
    if (c.proc.exitCode !== null || c.proc.signalCode !== null) return resolve();
    c.proc.once('exit', () => resolve());
    c.proc.kill('SIGKILL');
  });

for (const dialect of testDialects()) {
  describe(`audit integrator leadership with two processes (${dialect})`, () => {
    let store: Store | undefined;
    let drop: (() => Promise<void>) | undefined;
    const children: Child[] = [];
    afterEach(async () => {
      await Promise.all(children.splice(0).map(killed));
      await store?.destroy();
      await drop?.();
    });

    const pending = async () => (await store!.db.selectFrom('audit_pending').select('pid').execute()).length;
    /** Polls (never a fixed sleep) until nothing is pending, with a deadline well below the follower's safety net. */
    const drained = async () => {
      const end = Date.now() + 30_000;
      while ((await pending()) > 0) {
        if (Date.now() > end) throw new Error(`${await pending()} events still pending`);
        await new Promise((r) => setTimeout(r, 50));
      }
    };

    it('integrates on one leader only, and a follower takes over at once when the leader is killed with SIGKILL, losing nothing', async () => {
      const fresh = await migratedDatabase(dialect);
      ({ store, drop } = fresh);
      const env = fresh.env;

      // A leads, with a pass interval far longer than the test: it integrates only when it takes over.
      const a = startChild(env, 60_000, 60_000);
      children.push(a);
      await a.until('ready');
      await a.until('leader');
      // B integrates within 100 ms when it leads; as a follower its safety net waits 60 s.
      const b = startChild(env, 100, 60_000);
      children.push(b);
      await b.until('ready');

      b.proc.stdin.write('commit 3 b1\n');
      await b.until('committed b1');
      a.proc.stdin.write('commit 4 a1\n');
      await a.until('committed a1');
      if (dialect === 'postgres') {
        // One leader per installation: B heard A's and its own commits but does not integrate them.
        expect(b.out()).not.toContain('leader');
        expect(await pending()).toBe(7);
      }

      // A dies without integrating; B takes the leadership over and integrates what A left at once.
      await killed(a);
      await b.until('leader');
      await drained();
      b.proc.stdin.write('commit 5 b2\n');
      await b.until('committed b2');
      await drained();

      const rows = await eventRows(selectEventRows(store.db).orderBy('e.seq'));
      expect(rows.map((r) => Number(r.seq))).toEqual(Array.from({ length: 12 }, (_, i) => i + 1));
      const tags = rows.map((r) => JSON.parse(r.details).tag as string);
      expect(tags.filter((t) => t === 'a1').length).toBe(4);
      expect(tags.filter((t) => t === 'b1').length).toBe(3);
      expect(tags.filter((t) => t === 'b2').length).toBe(5);
      let prev = GENESIS_HASH;
      for (const r of rows) {
        expect(r.prev_hash).toBe(prev);
        expect(recomputeRowHash(r, r.prev_hash)).toBe(r.hash);
        prev = r.hash;
      }
    }, 120_000);

    // PostgreSQL only: on SQLite every process leads (the writer lock serialises them), so there is no follower.
    it.skipIf(dialect !== 'postgres')(
      'integrates through the follower when the leader is alive but not integrating (the safety-net pass)',
      async () => {
        const fresh = await migratedDatabase(dialect);
        ({ store, drop } = fresh);
        const env = fresh.env;

        // A leads and stays alive, but its passes wait 60 s; B follows with a safety net of 300 ms.
        const a = startChild(env, 60_000, 60_000);
        children.push(a);
        await a.until('leader');
        const b = startChild(env, 60_000, 300);
        children.push(b);
        await b.until('ready');
        b.proc.stdin.write('commit 3 b1\n');
        a.proc.stdin.write('commit 2 a1\n');
        await b.until('committed b1');
        await a.until('committed a1');
        await drained();
        expect(b.out()).not.toContain('leader');
        const rows = await eventRows(selectEventRows(store.db).orderBy('e.seq'));
        expect(rows.map((r) => Number(r.seq))).toEqual([1, 2, 3, 4, 5]);
      },
      120_000,
    );
  });
}
