import { execFile } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testDialects } from './support/dialects.js';
import { createTestApp, type TestApp } from './support/test-app.js';

const run = promisify(execFile);
const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

// CONTRACT.md: several processes may share one PostgreSQL database.
describe.skipIf(!testDialects().includes('postgres'))('audit appends from several processes (postgres)', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp('postgres');
  });
  afterAll(async () => {
    await t?.close();
  });

  it('leaves one gapless chain that verifies when two processes append thousands of events at once', async () => {
    // The app's own events (setup) are integrated first, so `before` counts them.
    await t.c.audit.sync();
    const before = await t.c.auditLog.tree.headSeq();
    const child = (label: string) =>
      run(process.execPath, ['--import', 'tsx', 'test/support/audit-appender.ts', '2000', '4', label], {
        cwd: repoRoot,
        env: { ...process.env, ...t.env },
      });
    const out = await Promise.all([child('a'), child('b')]);
    expect(out.map((o) => o.stdout.trim())).toEqual(['a done', 'b done']);
    expect(await t.c.audit.pendingCount()).toBe(0);
    const seqs = (await t.c.store.db.selectFrom('audit_events').select('seq').orderBy('seq').execute()).map((r) => Number(r.seq));
    expect(seqs.length).toBe(before + 4000);
    expect(seqs.every((s, i) => s === i + 1)).toBe(true);
    const r = await t.c.auditLog.verify();
    expect(r.problems).toEqual([]);
    expect(r.ok).toBe(true);
    expect(r.checkpoints.signatures_checked).toBeGreaterThan(2);
    expect(r.checkpoints.roots_checked).toBe(r.checkpoints.total);
  }, 120_000);
});
