import { execFile } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { sql } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import { chainHash } from '../src/audit/audit-chain.js';
import { chainedOfRow } from '../src/audit/audit-chain.js';
import { storedOfHex, storedOfId } from '../src/audit/audit-columns.js';
import { eventRows, selectEventRows } from '../src/audit/event-rows.js';
import { canonicalJson } from '../src/audit/canonical.js';
import { systemActor } from '../src/identity/principal.js';
import type { Dialect } from '../src/store/db.js';
import { EVENT_ROWS, setKindIdOf, setKindOf } from './support/audit-rows.js';
import { testDialects } from './support/dialects.js';
import { createTestApp, type TestApp } from './support/test-app.js';

const run = promisify(execFile);
const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** Appends `n` events straight through the audit service (as every domain does). */
const append = async (t: TestApp, n: number) => {
  for (let i = 0; i < n; i++) {
    await t.c.audit.recordAlone({
      action: 'test.event',
      actor: { ...systemActor(t.orgId), chain: [{ type: 'organization', id: t.orgId, name: 'General Hospital' }] },
      target: { type: 'thing', id: `thing_${i}` },
      details: { n: i, z: 'last', a: ['first', { y: 1, b: null }] },
      contentHash: i % 3 === 0 ? 'ab'.repeat(32) : null,
    });
  }
  // Sequenced before the test reads or rewrites rows (events commit unsequenced, integrator.ts).
  await t.c.audit.sync();
};

/**
 * The append-only triggers stand in the way of a tamperer with DB access; the test plays one. The stored rows are
 * `audit_event_rows` and the kinds `audit_kinds` (migration 0048; `audit_events` is a view of them).
 */
const dropTriggers = async (t: TestApp) => {
  if (t.dialect === 'sqlite') {
    for (const name of ['audit_events_no_update', 'audit_events_no_delete', 'audit_kinds_no_update', 'audit_kinds_no_delete'])
      await sql`drop trigger ${sql.raw(name)}`.execute(t.c.store.db);
  } else {
    await sql`alter table audit_event_rows disable trigger audit_events_append_only`.execute(t.c.store.db);
    await sql`alter table audit_kinds disable trigger audit_kinds_append_only`.execute(t.c.store.db);
  }
};

const cli = async (t: TestApp, args: string[]) => {
  try {
    const r = await run(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], {
      cwd: repoRoot,
      env: { ...process.env, ...t.env },
    });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
};

/** Verifies on one thread and on worker threads (ranges of 16 events), which must agree. */
const verify = async (t: TestApp) => {
  const one = await t.c.auditLog.verify();
  const many = await t.c.auditLog.verify(undefined, { parallelFrom: 0, chunkSize: 16 });
  if (one.last_seq > 16) expect(many.threads).toBeGreaterThan(1);
  expect(one.threads).toBe(1);
  expect(many.ok).toBe(one.ok);
  expect(many.first_bad_seq).toBe(one.first_bad_seq);
  expect(many.problems.map((p) => p.code)).toEqual(one.problems.map((p) => p.code));
  if (one.ok) expect(many.root_hash).toBe(one.root_hash);
  if (one.ok) expect(many.checkpoints.roots_checked).toBe(one.checkpoints.roots_checked);
  return one;
};

for (const dialect of testDialects()) {
  describe(`audit log tamper evidence (${dialect})`, () => {
    let t: TestApp | undefined;
    const fresh = async (d: Dialect, events = 40) => {
      t = await createTestApp(d);
      await append(t, events);
      return t;
    };
    afterEach(async () => {
      await t?.close();
      t = undefined;
    });

    it('verifies the untouched log, through the service and the real CLI', async () => {
      const app = await fresh(dialect);
      await app.c.auditLog.checkpoints.current();
      await append(app, 5);
      const r = await verify(app);
      expect(r.problems).toEqual([]);
      expect(r.ok).toBe(true);
      expect(r.events_checked).toBe(r.last_seq);
      expect(r.checkpoints.signatures_checked).toBe(1);
      const out = await cli(app, ['audit', 'verify', '--json']);
      expect(out.code, out.stderr).toBe(0);
      expect(JSON.parse(out.stdout)).toMatchObject({ ok: true, first_bad_seq: null });
    });

    it('refuses UPDATE and DELETE on audit rows through its triggers', async () => {
      const app = await fresh(dialect, 3);
      const db = app.c.store.db;
      await expect(db.updateTable(EVENT_ROWS).set({ details: '{}' }).where('seq', '=', 2).execute()).rejects.toThrow(/append-only/);
      await expect(db.deleteFrom(EVENT_ROWS).where('seq', '=', 2).execute()).rejects.toThrow(/append-only/);
      await expect(db.updateTable('audit_kinds').set({ action: 'x' }).execute()).rejects.toThrow(/append-only/);
      await expect(db.deleteFrom('audit_kinds').execute()).rejects.toThrow(/append-only/);
      // The view the readers use writes nothing.
      await expect(sql`update audit_events set details = '{}' where seq = 2`.execute(db)).rejects.toThrow();
      await expect(sql`delete from audit_events where seq = 2`.execute(db)).rejects.toThrow();
      await app.c.auditLog.checkpoints.current();
      await expect(app.c.store.db.deleteFrom('audit_checkpoints').execute()).rejects.toThrow(/append-only/);
      expect((await verify(app)).ok).toBe(true);
    });

    it('names the edited event when a field is changed, and the CLI exits 1', async () => {
      const app = await fresh(dialect);
      await dropTriggers(app);
      await setKindOf(app.c.store.db, 17, { action: 'email.read.innocent' });
      const r = await verify(app);
      expect(r.ok).toBe(false);
      expect(r.first_bad_seq).toBe(17);
      expect(r.problems[0]!.code).toBe('hash_mismatch');
      const out = await cli(app, ['audit', 'verify', '--json']);
      expect(out.code).toBe(1);
      expect(JSON.parse(out.stdout).first_bad_seq).toBe(17);
      const human = await cli(app, ['audit', 'verify']);
      expect(human.code).toBe(1);
      expect(human.stdout).toContain('first bad seq 17');
    });

    it('stops its worker threads without aborting the process when the first range fails while others still load', async () => {
      // A log edited at event 2 fails the first range at once, often before the other worker has loaded its native
      // driver; terminating a thread inside an addon's registration aborted the whole process (CI: "FATAL ERROR:
      // Error::New napi_get_last_error_info" in this file). Repeated, since the race is a matter of timing.
      const app = await fresh(dialect, 64);
      await dropTriggers(app);
      await setKindOf(app.c.store.db, 2, { action: 'email.read.innocent' });
      for (let i = 0; i < 20; i++) {
        const r = await app.c.auditLog.verify(undefined, { parallelFrom: 0, chunkSize: 16 });
        expect(r.threads).toBeGreaterThan(1);
        expect([r.ok, r.first_bad_seq]).toEqual([false, 2]);
      }
    });

    it('names the first event of a kind when the shared kind row is changed, and an event whose kind row is missing', async () => {
      const app = await fresh(dialect);
      await dropTriggers(app);
      const db = app.c.store.db;
      // Action, actor type, target type, outcome and at_text are stored once per kind (migration 0048).
      const kind = (await db.selectFrom('audit_events').select('kind_id').where('seq', '=', 20).executeTakeFirstOrThrow()).kind_id;
      const first = await db
        .selectFrom('audit_events')
        .select(sql<number>`min(seq)`.as('s'))
        .where('kind_id', '=', kind)
        .executeTakeFirstOrThrow();
      for (const change of [{ outcome: 'denied' as const }, { actor_type: 'human' }, { target_type: null }, { at_text: '=x' }]) {
        const orig = await db.selectFrom('audit_kinds').selectAll().where('id', '=', kind).executeTakeFirstOrThrow();
        await db.updateTable('audit_kinds').set(change).where('id', '=', kind).execute();
        const r = await verify(app);
        expect(r.first_bad_seq, JSON.stringify(change)).toBe(Number(first.s));
        expect(r.problems[0]!.code).toBe('hash_mismatch');
        await db.updateTable('audit_kinds').set(orig).where('id', '=', kind).execute();
      }
      expect((await verify(app)).ok).toBe(true);
      await setKindIdOf(db, 23, 30_000);
      const r = await verify(app);
      expect(r.first_bad_seq).toBe(23);
      expect(r.problems[0]!.code).toBe('hash_mismatch');
    });

    it('names the edited event when a stored id is changed, to another id or to bytes of no known form', async () => {
      const app = await fresh(dialect);
      await dropTriggers(app);
      const db = app.c.store.db;
      // Ids are stored as bytes (migration 0042): another valid id, and bytes that decode to no id at all.
      const original = (await db.selectFrom('audit_events').select('target_id').where('seq', '=', 9).executeTakeFirstOrThrow()).target_id;
      await db
        .updateTable(EVENT_ROWS)
        .set({ target_id: storedOfId('msg_0190f0f0f0f0f0f0f0f0f0f0f0f0f0f0') })
        .where('seq', '=', 9)
        .execute();
      let r = await verify(app);
      expect(r.first_bad_seq).toBe(9);
      expect(r.problems[0]!.code).toBe('hash_mismatch');
      await db
        .updateTable(EVENT_ROWS)
        .set({ target_id: Buffer.from('x', 'utf8') })
        .where('seq', '=', 9)
        .execute();
      r = await verify(app);
      expect(r.first_bad_seq).toBe(9);
      if (app.dialect === 'sqlite') {
        // SQLite keeps any type in any column: the same bytes as a text (workers read blobs as quote() text) fail too.
        await db.updateTable(EVENT_ROWS).set({ target_id: original }).where('seq', '=', 9).execute();
        await sql`update audit_event_rows set target_id = cast(target_id as text) where seq = 9`.execute(db);
        r = await verify(app);
        expect(r.first_bad_seq).toBe(9);
        expect(r.problems[0]!.code).toBe('hash_mismatch');
      }
      // Changing the stored hash of one row breaks that row, and the next one chains from it (no prev_hash is stored).
      await db.updateTable(EVENT_ROWS).set({ target_id: original }).where('seq', '=', 9).execute();
      expect((await verify(app)).ok).toBe(true);
      await db
        .updateTable(EVENT_ROWS)
        .set({ hash: Buffer.alloc(32, 7) })
        .where('seq', '=', 25)
        .execute();
      r = await verify(app);
      expect(r.first_bad_seq).toBe(25);
      expect(r.problems[0]!.code).toBe('hash_mismatch');
    });

    it('names the edited event when a stored time is changed, in either of its columns', async () => {
      const app = await fresh(dialect);
      await dropTriggers(app);
      const db = app.c.store.db;
      // `at` is stored as milliseconds with `at_text` '' (migration 0046): a millisecond later, the same time kept as
      // text (which would let the time index be moved without changing the hashed text), and a kept text beside other
      // milliseconds all fail verification. `at_text` is stored with the event's kind (migration 0048).
      const orig = await db.selectFrom('audit_events').select(['at', 'at_text', 'kind_id']).where('seq', '=', 11).executeTakeFirstOrThrow();
      const ms = Number(orig.at);
      const text = new Date(ms).toISOString();
      expect(orig.at_text).toBe('');
      for (const change of [
        { at: ms + 1, at_text: '' },
        { at: ms, at_text: `=${text}` },
        { at: ms - 86_400_000, at_text: `=${text}` },
        { at: ms, at_text: text },
      ]) {
        await db.updateTable(EVENT_ROWS).set({ at: change.at }).where('seq', '=', 11).execute();
        await setKindIdOf(db, 11, orig.kind_id);
        if (change.at_text !== '') await setKindOf(db, 11, { at_text: change.at_text });
        const r = await verify(app);
        expect(r.first_bad_seq, JSON.stringify(change)).toBe(11);
        expect(r.problems[0]!.code).toBe('hash_mismatch');
      }
      await db.updateTable(EVENT_ROWS).set({ at: ms }).where('seq', '=', 11).execute();
      await setKindIdOf(db, 11, orig.kind_id);
      expect((await verify(app)).ok).toBe(true);
    });

    it('names the gap when a row is deleted', async () => {
      const app = await fresh(dialect);
      await dropTriggers(app);
      await app.c.store.db.deleteFrom(EVENT_ROWS).where('seq', '=', 12).execute();
      const r = await verify(app);
      expect(r.first_bad_seq).toBe(12);
      expect(r.problems[0]!.code).toBe('missing_event');
    });

    it('names the first of two swapped rows', async () => {
      const app = await fresh(dialect);
      await dropTriggers(app);
      const db = app.c.store.db;
      await db.updateTable(EVENT_ROWS).set({ seq: -1 }).where('seq', '=', 20).execute();
      await db.updateTable(EVENT_ROWS).set({ seq: 20 }).where('seq', '=', 21).execute();
      await db.updateTable(EVENT_ROWS).set({ seq: 21 }).where('seq', '=', -1).execute();
      const r = await verify(app);
      expect(r.ok).toBe(false);
      expect(r.first_bad_seq).toBe(20);
    });

    it('notices a truncated tail, even when the head row is rewound to match', async () => {
      const app = await fresh(dialect);
      await app.c.auditLog.checkpoints.current();
      const head = await app.c.auditLog.tree.headSeq();
      await dropTriggers(app);
      await app.c.store.db
        .deleteFrom(EVENT_ROWS)
        .where('seq', '>', head - 5)
        .execute();
      let r = await verify(app);
      expect(r.first_bad_seq).toBe(head - 4);
      expect(r.problems[0]!.code).toBe('truncated');
      // A careful tamperer also rewinds the head: the signed checkpoint still remembers.
      await app.c.store.db
        .updateTable('audit_head')
        .set({ seq: head - 5 })
        .where('id', '=', 1)
        .execute();
      r = await verify(app);
      expect(r.first_bad_seq).toBe(head - 4);
      expect(r.problems.map((p) => p.code)).toContain('truncated');
    });

    it('catches an edit whose chain was recomputed, through the signed checkpoint', async () => {
      const app = await fresh(dialect);
      await app.c.auditLog.checkpoints.current();
      await dropTriggers(app);
      const db = app.c.store.db;
      const rows = await eventRows(selectEventRows(db).where('e.seq', '>=', 30).orderBy('e.seq'));
      let prev = rows[0]!.prev_hash;
      for (const r of rows) {
        const details = r.seq === 30 ? canonicalJson({ rewritten: true }) : r.details;
        const hash = chainHash(prev, chainedOfRow({ ...r, details }));
        await db
          .updateTable(EVENT_ROWS)
          .set({ details, hash: storedOfHex(hash) })
          .where('seq', '=', r.seq)
          .execute();
        prev = hash;
      }
      await db.updateTable('audit_head').set({ hash: prev }).where('id', '=', 1).execute();
      const r = await verify(app);
      expect(r.ok).toBe(false);
      expect(r.problems[0]!.code).toBe('checkpoint_mismatch');
      // The hashes published with the checkpoint name the edited event, not the start of the signed range.
      expect(r.first_bad_seq).toBe(30);
      // Nothing new is signed over the rewritten history.
      await append(app, 20);
      await expect(app.c.auditLog.checkpoints.current()).rejects.toThrow();
    });
  });
}
