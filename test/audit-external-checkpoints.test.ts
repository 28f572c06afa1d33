import { execFile } from 'node:child_process';
import { createHash, generateKeyPairSync, sign } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { sql } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import { chainedOfRow, chainHash } from '../src/audit/audit-chain.js';
import { hexOfStored, storedOfHex } from '../src/audit/audit-columns.js';
import { eventRows, selectEventRows } from '../src/audit/event-rows.js';
import { canonicalJson } from '../src/audit/canonical.js';
import { systemActor } from '../src/identity/principal.js';
import { fixedClock } from '../src/kernel/clock.js';
import type { Dialect } from '../src/store/db.js';
import { freshDatabase, tempDir, testDialects } from './support/dialects.js';
import { createTestApp, type TestApp } from './support/test-app.js';
import { EVENT_ROWS } from './support/audit-rows.js';

const run = promisify(execFile);
const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

const append = async (t: TestApp, n: number) => {
  for (let i = 0; i < n; i++) {
    await t.c.audit.recordAlone({
      action: 'test.event',
      actor: systemActor(t.orgId),
      target: { type: 'thing', id: `thing_${i}` },
      details: { n: i },
    });
  }
  // Sequenced before the test reads or rewrites rows (events commit unsequenced, integrator.ts).
  await t.c.audit.sync();
};

/** An insider with database access: the append-only triggers are dropped first. */
const dropTriggers = async (t: TestApp) => {
  const db = t.c.store.db;
  if (t.dialect === 'sqlite') {
    for (const name of ['audit_events_no_update', 'audit_events_no_delete', 'audit_checkpoints_no_delete'])
      await sql`drop trigger ${sql.raw(name)}`.execute(db);
  } else {
    await sql`alter table audit_event_rows disable trigger audit_events_append_only`.execute(db);
    await sql`alter table audit_checkpoints disable trigger audit_checkpoints_append_only`.execute(db);
  }
};

/** Cuts the log after `seq` as a careful insider would: events, checkpoints, head and Merkle index all rewound. */
const cutAfter = async (t: TestApp, seq: number) => {
  const db = t.c.store.db;
  await db.deleteFrom(EVENT_ROWS).where('seq', '>', seq).execute();
  await db.deleteFrom('audit_checkpoints').where('tree_size', '>', seq).execute();
  const last = await db.selectFrom('audit_events').select('hash').where('seq', '=', seq).executeTakeFirstOrThrow();
  await db
    .updateTable('audit_head')
    .set({ seq, hash: hexOfStored(last.hash) })
    .where('id', '=', 1)
    .execute();
  await db
    .updateTable('audit_tree_state')
    .set({ size: Math.floor(seq / 16) * 16 })
    .where('id', '=', 1)
    .execute();
};

/** Edits the event at `seq`, recomputes the chain after it and deletes the checkpoints it would contradict. */
const rewriteFrom = async (t: TestApp, seq: number) => {
  const db = t.c.store.db;
  const rows = await eventRows(selectEventRows(db).where('e.seq', '>=', seq).orderBy('e.seq'));
  let prev = rows[0]!.prev_hash;
  for (const r of rows) {
    const details = Number(r.seq) === seq ? canonicalJson({ rewritten: true }) : r.details;
    const hash = chainHash(prev, chainedOfRow({ ...r, details }));
    await db
      .updateTable(EVENT_ROWS)
      .set({ details, hash: storedOfHex(hash) })
      .where('seq', '=', r.seq)
      .execute();
    prev = hash;
  }
  await db.updateTable('audit_head').set({ hash: prev }).where('id', '=', 1).execute();
  await db.deleteFrom('audit_checkpoints').where('tree_size', '>=', seq).execute();
};

const publishedDir = (t: TestApp) => path.join(t.dataDir, 'checkpoints');

const cli = (t: TestApp, args: string[]) => cliEnv(t.env, args);

const cliEnv = async (env: Record<string, string>, args: string[]) => {
  try {
    const r = await run(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], {
      cwd: repoRoot,
      env: { ...process.env, ...env },
    });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
};

const codes = (ps: { code: string }[]) => ps.map((p) => p.code);

/** c2sp.org/tlog-cosignature, written here from the spec (not with the code under test): a witness cosigns `note`. */
const witness = (name: string) => {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const pub = publicKey.export({ format: 'der', type: 'spki' }).subarray(-32);
  const keyId = createHash('sha256')
    .update(Buffer.concat([Buffer.from(`${name}\n`), Buffer.from([0x04]), pub]))
    .digest()
    .subarray(0, 4);
  const vkey = `${name}+${keyId.toString('hex')}+${Buffer.concat([Buffer.from([0x04]), pub]).toString('base64')}`;
  const cosign = (note: string) => {
    const text = note.slice(0, note.lastIndexOf('\n\n') + 1);
    const time = Buffer.alloc(8);
    time.writeBigUInt64BE(1_767_225_600n);
    const sig = sign(null, Buffer.from(`cosignature/v1\ntime 1767225600\n${text}`), privateKey);
    return `${note}\u2014 ${name} ${Buffer.concat([keyId, time, sig]).toString('base64')}\n`;
  };
  return { vkey, cosign };
};

for (const dialect of testDialects()) {
  describe(`audit verify against checkpoints kept outside the store (${dialect})`, () => {
    let t: TestApp | undefined;
    const fresh = async (d: Dialect, opts: Parameters<typeof createTestApp>[1] = {}) => {
      t = await createTestApp(d, opts);
      return t;
    };
    afterEach(async () => {
      await t?.close();
      t = undefined;
    });

    it('publishes every checkpoint as it is made, write-once, with the event hashes since the one before', async () => {
      const app = await fresh(dialect);
      await append(app, 20);
      const first = await app.c.auditLog.checkpoints.current();
      await append(app, 5);
      const second = await app.c.auditLog.checkpoints.current();
      const dir = publishedDir(app);
      expect(fs.readFileSync(path.join(dir, `${first.tree_size}.note`), 'utf8')).toBe(first.note);
      expect(fs.readFileSync(path.join(dir, `${second.tree_size}.note`), 'utf8')).toBe(second.note);
      expect(fs.statSync(path.join(dir, `${second.tree_size}.note`)).mode & 0o777).toBe(0o644);
      const hashes = fs
        .readFileSync(path.join(dir, `${second.tree_size}.hashes`), 'utf8')
        .trim()
        .split('\n');
      expect(hashes[0]).toBe(`mailward-audit-hashes/v1 ${first.tree_size + 1} ${second.tree_size}`);
      const stored = await app.c.store.db
        .selectFrom('audit_events')
        .select('hash')
        .where('seq', '>', first.tree_size)
        .where('seq', '<=', second.tree_size)
        .orderBy('seq')
        .execute();
      expect(hashes.slice(1)).toEqual(stored.map((r) => hexOfStored(r.hash)));
      const r = await app.c.auditLog.verify();
      expect(r.problems).toEqual([]);
      expect(r.warnings).toEqual([]);
      expect(r.coverage).toMatchObject({
        signed_through: second.tree_size,
        unsigned_events: 0,
        external: { checked: 2, newest_size: second.tree_size },
      });
      // A different note at a published size means one of them was forged: nothing is overwritten.
      fs.writeFileSync(path.join(dir, `${second.tree_size + 3}.note`), first.note);
      await append(app, 3);
      await expect(app.c.auditLog.checkpoints.current()).rejects.toMatchObject({ code: 'audit_inconsistent' });
      expect(fs.readFileSync(path.join(dir, `${second.tree_size + 3}.note`), 'utf8')).toBe(first.note);
    });

    it('catches events deleted after the last stored checkpoint against a note given as a URL, and only warns with nothing outside the store (exit 3 with --strict)', async () => {
      const app = await fresh(dialect);
      await append(app, 30);
      const kept = await app.c.auditLog.checkpoints.current();
      await append(app, 12);
      const later = await app.c.auditLog.checkpoints.current();
      await dropTriggers(app);
      await cutAfter(app, kept.tree_size);

      // Against the published directory: the cut tail and the deleted checkpoint are both named.
      let r = await app.c.auditLog.verify();
      expect(r.ok).toBe(false);
      expect(r.first_bad_seq).toBe(kept.tree_size + 1);
      expect(codes(r.problems)).toEqual(expect.arrayContaining(['truncated', 'checkpoint_missing']));

      // The directory is gone too: the store alone looks whole, which verify says it cannot rule out.
      fs.rmSync(publishedDir(app), { recursive: true, force: true });
      r = await app.c.auditLog.verify();
      expect(r.ok).toBe(true);
      expect(codes(r.warnings)).toContain('no_external_checkpoint');
      expect(r.coverage.external.checked).toBe(0);

      // A note the operator kept off-box, served over HTTP, catches it through the real CLI.
      const server = http.createServer((_req, res) => res.writeHead(200, { 'content-type': 'text/plain' }).end(later.note));
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      try {
        const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/checkpoint`;
        const out = await cli(app, ['audit', 'verify', '--json', '--checkpoint', url]);
        expect(out.code, out.stderr).toBe(1);
        const report = JSON.parse(out.stdout);
        expect(report.first_bad_seq).toBe(kept.tree_size + 1);
        expect(codes(report.problems)).toContain('truncated');
      } finally {
        server.close();
      }
      // Without anything kept outside the store the cut cannot be proven: a warning (exit 0, CONTRACT), exit 3 with --strict.
      const bare = await cli(app, ['audit', 'verify']);
      expect(bare.code, bare.stderr).toBe(0);
      expect(bare.stdout).toContain('warning no_external_checkpoint');
      const strict = await cli(app, ['audit', 'verify', '--strict']);
      expect(strict.code, strict.stderr).toBe(3);
    }, 240_000);

    it('catches the last 30 events deleted, against the published directory or a note file', async () => {
      const app = await fresh(dialect);
      await append(app, 50);
      const cp = await app.c.auditLog.checkpoints.current();
      const noteFile = path.join(tempDir('mw-note'), 'checkpoint.note');
      fs.writeFileSync(noteFile, cp.note);
      await dropTriggers(app);
      await cutAfter(app, cp.tree_size - 30);

      let r = await app.c.auditLog.verify();
      expect(r.ok).toBe(false);
      expect(r.first_bad_seq).toBe(cp.tree_size - 29);
      expect(codes(r.problems)).toEqual(expect.arrayContaining(['truncated', 'checkpoint_missing']));

      r = await app.c.auditLog.verify(undefined, {
        external: { dir: null, notes: [{ source: noteFile, text: fs.readFileSync(noteFile, 'utf8') }] },
      });
      expect(r.ok).toBe(false);
      expect(r.first_bad_seq).toBe(cp.tree_size - 29);

      r = await app.c.auditLog.verify(undefined, { external: { dir: null } });
      expect(r.ok).toBe(true);
      expect(codes(r.warnings)).toContain('no_external_checkpoint');

      // A less careful insider leaves the Merkle index as it was: it still remembers how far the log went.
      await app.c.store.db
        .updateTable('audit_tree_state')
        .set({ size: Math.floor(cp.tree_size / 16) * 16 })
        .where('id', '=', 1)
        .execute();
      r = await app.c.auditLog.verify(undefined, { external: { dir: null } });
      expect(r.ok).toBe(false);
      expect(r.first_bad_seq).toBe(cp.tree_size - 29);
      expect(codes(r.problems)).toEqual(['truncated']);
    });

    it('names the first edited event after a rewrite that recomputed the chain and deleted later checkpoints', async () => {
      const app = await fresh(dialect);
      await append(app, 40);
      await app.c.auditLog.checkpoints.createAt(20);
      const cp = await app.c.auditLog.checkpoints.current();
      await dropTriggers(app);
      await rewriteFrom(app, 27);

      // Many threads and one must agree on the named event.
      for (const opts of [{}, { parallelFrom: 0, chunkSize: 16 }]) {
        const r = await app.c.auditLog.verify(undefined, opts);
        expect(r.ok).toBe(false);
        expect(r.first_bad_seq).toBe(27);
        expect(codes(r.problems)).toEqual(expect.arrayContaining(['external_mismatch', 'checkpoint_missing']));
      }

      // Only the note (no published hashes): the damage is bounded by the last checkpoint that still matches.
      let r = await app.c.auditLog.verify(undefined, { external: { dir: null, notes: [{ source: 'note', text: cp.note }] } });
      expect(r.ok).toBe(false);
      expect(r.first_bad_seq).toBe(21);
      expect(codes(r.problems)).toContain('external_mismatch');

      r = await app.c.auditLog.verify(undefined, { external: { dir: null } });
      expect(r.ok).toBe(true);
      expect(r.coverage.unsigned_events).toBe(r.last_seq - 20);
      expect(codes(r.warnings)).toContain('no_external_checkpoint');
    });

    it('catches deleted checkpoints against the published directory, and warns without it once they are overdue', async () => {
      const clock = fixedClock('2026-03-01T08:00:00Z');
      const app = await fresh(dialect, { clock });
      await append(app, 30);
      await app.c.auditLog.checkpoints.current();
      await dropTriggers(app);
      await app.c.store.db.deleteFrom('audit_checkpoints').execute();

      let r = await app.c.auditLog.verify();
      expect(r.ok).toBe(false);
      expect(codes(r.problems)).toContain('checkpoint_missing');

      fs.rmSync(publishedDir(app), { recursive: true, force: true });
      clock.advance(10 * 60_000);
      r = await app.c.auditLog.verify();
      expect(r.ok).toBe(true);
      expect(r.coverage).toMatchObject({ signed_through: 0, unsigned_events: r.last_seq, newest_checkpoint_at: null });
      expect(codes(r.warnings)).toEqual(expect.arrayContaining(['checkpoint_overdue', 'no_external_checkpoint']));
    });

    it('warns of checkpoints missing against the cadence and reports the unsigned events over REST', async () => {
      const clock = fixedClock('2026-03-01T08:00:00Z');
      const app = await fresh(dialect, { clock });
      await append(app, 5);
      const first = await app.c.auditLog.checkpoints.current();
      await append(app, 5);
      clock.advance(20 * 60_000);
      const second = await app.c.auditLog.checkpoints.current();
      await append(app, 3);
      clock.advance(10 * 60_000);
      const r = await app.c.auditLog.verify();
      expect(r.ok).toBe(true);
      expect(r.coverage).toMatchObject({ signed_through: second.tree_size, unsigned_events: 3 });
      const gap = r.warnings.find((w) => w.code === 'checkpoint_gap');
      expect(gap).toMatchObject({ seq: first.tree_size + 1, tree_size: second.tree_size });
      expect(codes(r.warnings)).toContain('checkpoint_overdue');
      const rest = await app.call('GET', '/v1/audit/verify', app.adminKey);
      expect(rest.status).toBe(200);
      expect(rest.body.ok).toBe(true);
      expect(rest.body.coverage.signed_through).toBe(second.tree_size);
      expect(rest.body.coverage.unsigned_events).toBeGreaterThanOrEqual(3);
      expect(codes(rest.body.warnings)).toContain('checkpoint_overdue');
    });

    it('signs and publishes the first checkpoint at init, so a fresh install verifies with exit 0', async () => {
      const db = await freshDatabase(dialect);
      try {
        const env = { ...db.env, MAILWARD_LOG_LEVEL: 'silent' };
        const init = await cliEnv(env, ['init', '--org', 'St. Example Hospital', '--domain', 'st-example.org', '--json']);
        expect(init.code, init.stderr).toBe(0);
        const notes = fs.readdirSync(path.join(db.dataDir, 'checkpoints')).filter((f) => f.endsWith('.note'));
        expect(notes).toHaveLength(1);
        const out = await cliEnv(env, ['audit', 'verify', '--json']);
        expect(out.code, out.stdout).toBe(0);
        expect(JSON.parse(out.stdout)).toMatchObject({
          ok: true,
          warnings: [],
          coverage: { unsigned_events: 0, external: { checked: 1 } },
        });
      } finally {
        await db.drop();
      }
    }, 240_000);

    it('accepts a witness-cosigned note and refuses one the required witness did not cosign', async () => {
      const app = await fresh(dialect);
      await append(app, 10);
      const cp = await app.c.auditLog.checkpoints.current();
      const w = witness('witness.example/w1');
      const cosigned = w.cosign(cp.note);
      let r = await app.c.auditLog.verify(undefined, {
        external: { dir: null, notes: [{ source: 'witness', text: cosigned }], witnessKeys: [w.vkey] },
      });
      expect(r.problems).toEqual([]);
      expect(r.coverage.external.checked).toBe(1);
      r = await app.c.auditLog.verify(undefined, {
        external: { dir: null, notes: [{ source: 'plain', text: cp.note }], witnessKeys: [w.vkey] },
      });
      expect(r.ok).toBe(false);
      expect(codes(r.problems)).toEqual(['external_invalid']);
      const forged = cosigned.replace(`\n${cp.tree_size}\n`, `\n${cp.tree_size - 1}\n`);
      r = await app.c.auditLog.verify(undefined, { external: { dir: null, notes: [{ source: 'forged', text: forged }] } });
      expect(codes(r.problems)).toEqual(['external_invalid']);
    });
  });
}
