import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { GENESIS_HASH, recomputeRowHash } from '../src/audit/audit-chain.js';
import { createAuditService } from '../src/audit/audit-service.js';
import { createTreeStore } from '../src/audit/tree-store.js';
import { systemClock } from '../src/kernel/clock.js';
import type { Store } from '../src/store/db.js';
import { eventRows, selectEventRows } from '../src/audit/event-rows.js';
import { testDialects } from './support/dialects.js';
import { migratedDatabase } from './support/migration-store.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** Runs the crash child until it prints `mid-batch`, then kills it with SIGKILL (no cleanup runs). */
const runAndKill = (env: NodeJS.ProcessEnv, args: string[]) =>
  new Promise<string>((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'test/support/audit-integrator-crash.ts', ...args], { cwd: repoRoot, env });
    let out = '';
    let err = '';
    child.stdout.on('data', (b: Buffer) => {
      out += b.toString();
      if (out.includes('mid-batch\n')) child.kill('SIGKILL');
    });
    child.stderr.on('data', (b: Buffer) => {
      err += b.toString();
    });
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      if (signal === 'SIGKILL') resolve(out);
      else reject(new Error(`child ended (${code}) before it was killed: ${out} ${err}`));
    });
  });

for (const dialect of testDialects()) {
  describe(`audit integrator (${dialect})`, () => {
    let store: Store | undefined;
    let drop: (() => Promise<void>) | undefined;
    afterEach(async () => {
      await store?.destroy();
      await drop?.();
    });

    it('loses no committed event when the integrator is killed mid-batch: the next one resumes, gapless and chained', async () => {
      const fresh = await migratedDatabase(dialect);
      ({ store, drop } = fresh);
      const env = fresh.env;

      // 12 events committed unsequenced; batches of 5; killed after writing the second batch, before its commit.
      const out = await runAndKill(env, ['12', '5', '2']);
      expect(out).toContain('committed\n');
      expect(out).not.toContain('finished');
      const head = await store.db.selectFrom('audit_head').select('seq').executeTakeFirstOrThrow();
      expect(Number(head.seq)).toBe(5);
      expect((await store.db.selectFrom('audit_events').select('seq').execute()).length).toBe(5);
      expect((await store.db.selectFrom('audit_pending').select('pid').execute()).length).toBe(7);

      // Another process's integrator takes over.
      const audit = createAuditService({ db: store.db, dialect: store.dialect, clock: systemClock });
      await audit.sync();
      const rows = await eventRows(selectEventRows(store.db).orderBy('e.seq'));
      expect(rows.map((r) => Number(r.seq))).toEqual(Array.from({ length: 12 }, (_, i) => i + 1));
      expect(new Set(rows.map((r) => r.id)).size).toBe(12);
      expect(rows.map((r) => JSON.parse(r.details).i as number).sort((a, b) => a - b)).toEqual(Array.from({ length: 12 }, (_, i) => i));
      let prev = GENESIS_HASH;
      for (const r of rows) {
        expect(r.prev_hash).toBe(prev);
        expect(recomputeRowHash(r, r.prev_hash)).toBe(r.hash);
        prev = r.hash;
      }
      expect((await store.db.selectFrom('audit_head').select('hash').executeTakeFirstOrThrow()).hash).toBe(prev);
      expect(await audit.pendingCount()).toBe(0);
      // The tree indexer re-checks the chain before it stores subtrees (it throws on a broken chain).
      const tree = createTreeStore({ db: store.db, dialect: store.dialect });
      expect((await tree.rootAt(12)).length).toBe(32);
    }, 120_000);
  });
}
