import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { CompiledQuery, sql } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import { createAuditService } from '../src/audit/audit-service.js';
import { systemActor } from '../src/identity/principal.js';
import { systemClock } from '../src/kernel/clock.js';
import { inGroupCommit, openStore, runCompiled, type Store } from '../src/store/db.js';
import { migrateToLatest } from '../src/store/migrate.js';
import { tempDir } from './support/dialects.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Writes about `pages` 4 KiB pages into a new table, one transaction. */
const writePages = async (store: Store, pages: number) => {
  await sql`create table filler (id integer primary key, blob text not null)`.execute(store.db);
  await store.db.transaction().execute(async (tx) => {
    for (let i = 0; i < pages; i++) await sql`insert into filler (blob) values (${'x'.repeat(4000)})`.execute(tx);
  });
};

describe('SQLite store specifics', () => {
  const dirs: string[] = [];
  const stores: Store[] = [];
  afterEach(async () => {
    for (const s of stores.splice(0)) await s.destroy();
    for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
  });
  const open = (checkpointEveryMs: number) => {
    const dir = tempDir('mw-store');
    dirs.push(dir);
    const file = path.join(dir, 'm.db');
    const store = openStore({ kind: 'sqlite', file, checkpointEveryMs });
    stores.push(store);
    return { store, file };
  };

  it('runs compiled statements on the transaction connection directly, and a rolled-back group caller leaves nothing', async () => {
    const { store } = open(0);
    await sql`create table t (id integer primary key, v text not null)`.execute(store.db);
    const ins = (v: string) => CompiledQuery.raw('insert into t (v) values (?)', [v]);
    // Inside a transaction the insert is better-sqlite3's own (a synchronous result), and the select sees it.
    const seen = await store.db.transaction().execute(async (tx) => {
      const r = runCompiled(tx, ins('a'));
      expect(r).not.toBeInstanceOf(Promise);
      return (await runCompiled(tx, CompiledQuery.raw('select v from t order by id'))).rows.map((x) => (x as { v: string }).v);
    });
    expect(seen).toEqual(['a']);
    // Outside a transaction it is Kysely's executor, as before.
    expect(runCompiled(store.db, CompiledQuery.raw('select 1'))).toBeInstanceOf(Promise);
    // Three callers share one transaction; the one that throws is rolled back to its savepoint, the others commit.
    const results = await Promise.allSettled(
      ['b', 'c', 'd'].map((v) =>
        inGroupCommit(store.db, async (tx) => {
          await runCompiled(tx, ins(v));
          if (v === 'c') throw new Error('refused');
          return v;
        }),
      ),
    );
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    const rows = await sql<{ v: string }>`select v from t order by id`.execute(store.db);
    expect(rows.rows.map((x) => x.v)).toEqual(['a', 'b', 'd']);
  });

  it('checkpoints the WAL into the database file from the background thread, not only inside commits', async () => {
    // 200 pages stay below SQLite's own automatic checkpoint (1,000 pages), so only the background thread moves them.
    for (const [every, grows] of [
      [50, true],
      [0, false],
    ] as const) {
      const { store, file } = open(every);
      await sql`select 1`.execute(store.db);
      const before = fs.statSync(file).size;
      await writePages(store, 200);
      await sleep(600);
      const after = fs.statSync(file).size;
      expect(after > before + 100 * 4096, `checkpointEveryMs=${every}: ${before} -> ${after}`).toBe(grows);
    }
  });

  it('begins transactions IMMEDIATE, so another process waits for the writer instead of failing on a stale snapshot', async () => {
    const { store, file } = open(0);
    await sql`create table t (id integer primary key, v integer not null)`.execute(store.db);
    await sql`insert into t (v) values (0)`.execute(store.db);
    // This process holds a write transaction for 300 ms; meanwhile another process reads, then writes.
    // With a deferred BEGIN its read snapshot is stale by the time it may write: SQLITE_BUSY_SNAPSHOT at once.
    const child = `
      import { CompiledQuery, sql } from 'kysely';
      import { openStore } from ${JSON.stringify(path.resolve('src/store/db.ts'))};
      const store = openStore({ kind: 'sqlite', file: process.argv[1], checkpointEveryMs: 0 });
      await sql\`select 1\`.execute(store.db);
      process.stdout.write('ready;');
      await new Promise((r) => process.stdin.once('data', r));
      process.stdin.destroy();
      try {
        await store.db.transaction().execute(async (tx) => {
          await sql\`select v from t\`.execute(tx);
          await sql\`update t set v = v + 1\`.execute(tx);
        });
        process.stdout.write('ok');
      } catch (e) {
        process.stdout.write(String(e.code ?? e));
      } finally {
        await store.destroy();
      }`;
    const proc = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', child, file], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    let out = '';
    const ready = new Promise<void>((resolve) => {
      proc.stdout.on('data', (d) => {
        out += d;
        if (out.startsWith('ready;')) resolve();
      });
    });
    const childDone = new Promise<string>((resolve) => proc.on('exit', () => resolve(out.slice('ready;'.length))));
    await ready;
    await store.db.transaction().execute(async (tx) => {
      await sql`select v from t`.execute(tx);
      proc.stdin.end('go\n');
      await sleep(300);
      await sql`update t set v = v + 1`.execute(tx);
    });
    expect(await childDone).toBe('ok');
    const { rows } = await sql<{ v: number }>`select v from t`.execute(store.db);
    expect(rows[0]!.v).toBe(2);
  });

  it('bounds the statement cache by the length of its SQL texts, so statements whose text varies cannot pile up', async () => {
    const { store } = open(0);
    // 300 distinct texts of about 4 KB: 1.2 M characters, over the cache's budget of 512 K.
    for (let n = 0; n < 300; n++) await sql.raw(`select ${n} as v -- ${'x'.repeat(4000)}`).execute(store.db);
    const stats = store.statementCache!();
    expect(stats.textChars).toBeLessThanOrEqual(512 * 1024);
    expect(stats.statements).toBeLessThan(300);
    // The most recent statements are the ones kept.
    const { rows } = await sql.raw<{ v: number }>(`select 299 as v -- ${'x'.repeat(4000)}`).execute(store.db);
    expect(rows[0]!.v).toBe(299);
    expect(store.statementCache!().statements).toBe(stats.statements);
  });

  it('integrates audit batches of every size with a few statement shapes (a prepared statement per batch size held native memory)', async () => {
    const { store } = open(0);
    await migrateToLatest(store);
    const audit = createAuditService({ db: store.db, dialect: store.dialect, clock: systemClock });
    const before = store.statementCache!().statements;
    for (let n = 1; n <= 120; n++) {
      await store.db.transaction().execute(async (tx) => {
        for (let i = 0; i < n; i++) await audit.record(tx, { action: 'test.batch', actor: systemActor(), orgId: null, details: { n, i } });
      });
      await audit.sync();
    }
    const events = await store.db.selectFrom('audit_events').select('seq').execute();
    expect(events.length).toBe((120 * 121) / 2);
    expect(await audit.pendingCount()).toBe(0);
    // Power-of-two inserts and padded IN lists: a handful of texts each, not one per batch size (240 and more).
    expect(store.statementCache!().statements - before).toBeLessThan(40);
  });
});
