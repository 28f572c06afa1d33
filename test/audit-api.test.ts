import { execFile } from 'node:child_process';
import { createHash, createPublicKey, verify as edVerify } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyExportLines } from '../src/audit/audit-verify.js';
import { verifyConsistency } from '../src/audit/merkle.js';
import { systemActor } from '../src/identity/principal.js';
import { fixedClock } from '../src/kernel/clock.js';
import { testDialects } from './support/dialects.js';
import { createTestApp, seedAgent, type TestApp } from './support/test-app.js';
import { EVENT_ROWS } from './support/audit-rows.js';

const run = promisify(execFile);
const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/**
 * An independent RFC 6962 inclusion check, written from section 2.1.1 (the
 * recursive PATH definition) rather than RFC 9162's bit-walking loop that
 * src/audit/merkle.ts uses.
 */
const sha = (...parts: Buffer[]) => createHash('sha256').update(Buffer.concat(parts)).digest();
const rootFromPath = (m: number, n: number, leaf: Buffer, path: Buffer[]): Buffer => {
  if (n === 1) {
    if (path.length !== 0) throw new Error('path too long');
    return leaf;
  }
  let k = 1;
  while (k * 2 < n) k *= 2;
  const last = path.at(-1);
  if (!last) throw new Error('path too short');
  const rest = path.slice(0, -1);
  return m < k
    ? sha(Buffer.from([1]), rootFromPath(m, k, leaf, rest), last)
    : sha(Buffer.from([1]), last, rootFromPath(m - k, n - k, leaf, rest));
};

/** Checks a checkpoint's note with the Ed25519 key from /.well-known/jwks.json and nothing else. */
const checkNote = (cp: { note: string; key_id: string; tree_size: number; root_hash: string; origin: string }, jwks: { keys: any[] }) => {
  const jwk = jwks.keys.find((k) => k.kid === cp.key_id);
  expect(jwk?.crv).toBe('Ed25519');
  const [text, sigLine] = cp.note.split('\n\n') as [string, string];
  expect(text).toBe(`${cp.origin}\n${cp.tree_size}\n${Buffer.from(cp.root_hash, 'hex').toString('base64')}`);
  const sig = Buffer.from(sigLine.trim().split(' ')[2]!, 'base64').subarray(4);
  const key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: jwk.x }, format: 'jwk' });
  expect(edVerify(null, Buffer.from(`${text}\n`), key, sig)).toBe(true);
};

const hexes = (a: string[]) => a.map((h) => Buffer.from(h, 'hex'));

for (const dialect of testDialects()) {
  describe(`audit API (${dialect})`, () => {
    let t: TestApp;
    let auditorKey: string;
    let seeded: Awaited<ReturnType<typeof seedAgent>>;
    beforeAll(async () => {
      t = await createTestApp(dialect);
      seeded = await seedAgent(t);
      const auditor = await t.call('POST', '/v1/humans', t.adminKey, {
        name: 'Ines Auditor',
        email: 'auditor@hospital.example',
        roles: ['auditor'],
      });
      auditorKey = (await t.call('POST', `/v1/humans/${auditor.body.id}/api-keys`, t.adminKey, {})).body.key;
      for (let i = 0; i < 37; i++) await t.c.audit.recordAlone({ action: 'test.event', actor: systemActor(t.orgId), details: { i } });
    });
    afterAll(async () => {
      await t?.close();
    });

    it('records every action with its chain, and refusals as denied', async () => {
      const r = await t.call('GET', '/v1/audit/events', seeded.agentKey);
      expect(r.status).toBe(404);
      const events = (await t.call('GET', '/v1/audit/events?limit=500', auditorKey)).body.events;
      const actions = events.map((e: any) => e.action);
      for (const a of ['organization.created', 'human.created', 'agent.created', 'api_key.created']) expect(actions).toContain(a);
      const denied = events.find((e: any) => e.action === 'audit.events.read' && e.outcome === 'denied');
      expect(denied.actor).toEqual({ id: seeded.agent.id, type: 'agent' });
      expect(denied.delegation_chain.at(-1)).toMatchObject({ type: 'agent', id: seeded.agent.id });
      // The chain is installation-wide: consecutive seqs of this organization link directly.
      for (let i = 1; i < events.length; i++)
        if (events[i].seq === events[i - 1].seq + 1) expect(events[i].prev_hash).toBe(events[i - 1].hash);
    });

    it('serves a signed checkpoint that verifies against the published JWKS', async () => {
      const cp = (await t.call('GET', '/v1/audit/checkpoint', auditorKey)).body;
      expect(cp.tree_size).toBeGreaterThan(40);
      const jwks = (await t.call('GET', '/.well-known/jwks.json', null)).body;
      checkNote(cp, jwks);
      expect(cp.note).toMatch(/^hospital\.example\/mailward-audit\n/);
      expect((await t.call('GET', '/v1/audit/checkpoint', seeded.agentKey)).status).toBe(404);
    });

    it('gives inclusion proofs that an independent RFC 6962 implementation accepts', async () => {
      const cp = (await t.call('GET', '/v1/audit/checkpoint', auditorKey)).body;
      const events = (await t.call('GET', '/v1/audit/events?limit=500', auditorKey)).body.events;
      for (const e of events.filter((x: any) => x.seq <= cp.tree_size)) {
        const p = await t.call('GET', `/v1/audit/events/${e.seq}/proof?tree_size=${cp.tree_size}`, auditorKey);
        expect(p.status, JSON.stringify(p.body)).toBe(200);
        expect(p.body.leaf_hash).toBe(sha(Buffer.from([0]), Buffer.from(e.hash, 'hex')).toString('hex'));
        const root = rootFromPath(e.seq - 1, cp.tree_size, Buffer.from(p.body.leaf_hash, 'hex'), hexes(p.body.audit_path));
        expect(root.toString('hex')).toBe(cp.root_hash);
        expect(p.body.checkpoint.tree_size).toBe(cp.tree_size);
      }
    });

    it('proves later trees consistent with earlier checkpoints', async () => {
      const first = (await t.call('GET', '/v1/audit/checkpoint', auditorKey)).body;
      for (let i = 0; i < 23; i++) await t.c.audit.recordAlone({ action: 'test.more', actor: systemActor(t.orgId) });
      const second = (await t.call('GET', '/v1/audit/checkpoint', auditorKey)).body;
      expect(second.tree_size).toBeGreaterThan(first.tree_size);
      const c = await t.call('GET', `/v1/audit/consistency?first=${first.tree_size}&second=${second.tree_size}`, auditorKey);
      expect(c.status).toBe(200);
      expect(() =>
        verifyConsistency(
          first.tree_size,
          second.tree_size,
          Buffer.from(first.root_hash, 'hex'),
          Buffer.from(second.root_hash, 'hex'),
          hexes(c.body.proof),
        ),
      ).not.toThrow();
      const latest = await t.call('GET', `/v1/audit/events/${second.tree_size}/proof`, auditorKey);
      expect(latest.status).toBe(200);
    });

    it("answers 404 for another organization's event and 422 for a bad tree size", async () => {
      const other = await t.c.init({ orgName: 'Other Clinic', domain: 'other.example' });
      const mine = (await t.call('GET', '/v1/audit/events?limit=1', auditorKey)).body.events[0];
      expect((await t.call('GET', `/v1/audit/events/${mine.seq}/proof`, other!.admin_api_key)).status).toBe(404);
      expect((await t.call('GET', `/v1/audit/events/${mine.seq}/proof?tree_size=99999999`, auditorKey)).status).toBe(422);
      expect((await t.call('GET', '/v1/audit/events/abc/proof', auditorKey)).status).toBe(400);
      expect((await t.call('GET', '/v1/audit/consistency?first=0', auditorKey)).status).toBe(400);
    });

    it('lets an auditor verify the whole log over REST', async () => {
      const r = await t.call('GET', '/v1/audit/verify', auditorKey);
      expect(r.status).toBe(200);
      expect(r.body).toMatchObject({ ok: true, first_bad_seq: null, problems: [] });
      expect(r.body.checkpoints.signatures_checked).toBeGreaterThanOrEqual(2);
      const recorded = await t.call('GET', '/v1/audit/events?action=audit.verified', auditorKey);
      expect(recorded.body.events.at(-1)).toMatchObject({ outcome: 'success', details: { ok: true } });
      expect((await t.call('GET', '/v1/audit/verify', seeded.agentKey)).status).toBe(404);
      const paths = Object.keys((await t.call('GET', '/openapi.json', null)).body.paths);
      expect(paths).toEqual(
        expect.arrayContaining([
          '/v1/audit/checkpoint',
          '/v1/audit/events/{seq}/proof',
          '/v1/audit/consistency',
          '/v1/audit/verify',
          '/v1/audit/legal-holds',
        ]),
      );
    });

    it('exports JSONL that a third party verifies with only the file and the JWKS, and names an edited line', async () => {
      const file = path.join(t.dataDir, 'export.jsonl');
      const jwksFile = path.join(t.dataDir, 'jwks.json');
      fs.writeFileSync(jwksFile, JSON.stringify((await t.call('GET', '/.well-known/jwks.json', null)).body));
      const ex = await run(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'audit', 'export', '--out', file], {
        cwd: repoRoot,
        env: { ...process.env, ...t.env },
      });
      expect(ex.stderr).toContain('exported');
      const lines = fs.readFileSync(file, 'utf8').trim().split('\n');
      expect(JSON.parse(lines[0]!).type).toBe('header');
      expect(JSON.parse(lines.at(-1)!).type).toBe('checkpoint');
      const ok = await run(
        process.execPath,
        ['--import', 'tsx', 'src/cli/main.ts', 'audit', 'verify', '--json', '--file', file, '--key', jwksFile],
        { cwd: repoRoot, env: { PATH: process.env.PATH } },
      );
      expect(JSON.parse(ok.stdout)).toMatchObject({ ok: true, key_pinned: true });

      const edited = lines.map((l) => (l.includes('"seq":9,') ? l.replace('"action":"', '"action":"x') : l));
      const bad = await verifyExportLines(() => edited, fs.readFileSync(jwksFile, 'utf8'));
      expect(bad.ok).toBe(false);
      expect(bad.first_bad_seq).toBe(9);
      const cut = await verifyExportLines(() => lines.slice(0, -3), fs.readFileSync(jwksFile, 'utf8'));
      expect(cut.ok).toBe(false);
      const part = lines.filter((l) => !l.startsWith('{"type":"event"') || JSON.parse(l).seq > 0);
      expect((await verifyExportLines(() => part, undefined)).key_pinned).toBe(false);
    });
  });

  describe(`audit retention (${dialect})`, () => {
    let t: TestApp;
    const clock = fixedClock('2019-01-01T00:00:00Z');
    beforeAll(async () => {
      t = await createTestApp(dialect, { clock });
      for (let i = 0; i < 70; i++) await t.c.audit.recordAlone({ action: 'test.old', actor: systemActor(t.orgId), details: { i } });
      await t.c.auditLog.checkpoints.current();
      clock.advance(2000 * 86_400_000);
      for (let i = 0; i < 10; i++) await t.c.audit.recordAlone({ action: 'test.recent', actor: systemActor(t.orgId) });
      clock.advance(400 * 86_400_000);
    });
    afterAll(async () => {
      await t?.close();
    });

    it('refuses to purge under a legal hold and records the refusal', async () => {
      const hold = await t.call('POST', '/v1/audit/legal-holds', t.adminKey, { matter: 'OCR inquiry 2025-17' });
      expect(hold.status).toBe(201);
      await expect(t.c.auditLog.retention.purge(systemActor())).rejects.toMatchObject({ code: 'legal_hold_active' });
      await t.c.audit.sync();
      const events = (await t.c.store.db.selectFrom('audit_events').selectAll().where('action', '=', 'audit.purge').execute()).map(
        (e) => e.outcome,
      );
      expect(events).toEqual(['denied']);
      const released = await t.call('POST', `/v1/audit/legal-holds/${hold.body.id}/release`, t.adminKey, {});
      expect(released.status).toBe(200);
      expect((await t.call('POST', `/v1/audit/legal-holds/${hold.body.id}/release`, t.adminKey, {})).status).toBe(409);
    });

    it('purges only past retention, audits the purge, and leaves the rest verifiable against a checkpoint', async () => {
      const before = await t.c.auditLog.tree.headSeq();
      const r = await t.c.auditLog.retention.purge(systemActor());
      expect(r.purged).toBe(true);
      expect(r.through_seq % 16).toBe(0);
      // The purge's own event commits unsequenced: read the rows once it is integrated.
      await t.c.audit.sync();
      const oldest = await t.c.store.db
        .selectFrom('audit_events')
        .select(['seq', 'action'])
        .orderBy('seq')
        .limit(1)
        .executeTakeFirstOrThrow();
      expect(oldest.seq).toBe(r.through_seq + 1);
      const purged = await t.c.store.db
        .selectFrom('audit_events')
        .selectAll()
        .where('action', '=', 'audit.purged')
        .executeTakeFirstOrThrow();
      expect(JSON.parse(purged.details)).toMatchObject({ through_seq: r.through_seq, deleted: r.deleted });
      expect(purged.seq).toBeGreaterThan(before);
      const v = await t.c.auditLog.verify();
      expect(v.problems).toEqual([]);
      expect(v.purged_through).toBe(r.through_seq);
      // Events kept are still provable in a fresh checkpoint.
      const cp = await t.c.auditLog.checkpoints.current();
      const p = await t.c.auditLog.tree.inclusionProof(r.through_seq, cp.tree_size);
      const leaf = sha(Buffer.from([0]), Buffer.from((await t.c.audit.get(r.through_seq + 1, null))!.hash, 'hex'));
      expect(rootFromPath(r.through_seq, cp.tree_size, leaf, p).toString('hex')).toBe(cp.root_hash);
      // The trigger still refuses deleting anything the purge did not cover.
      await expect(
        t.c.store.db
          .deleteFrom(EVENT_ROWS)
          .where('seq', '=', r.through_seq + 1)
          .execute(),
      ).rejects.toThrow(/append-only/);
      // An export after the purge still verifies from its prefix.
      const lines: string[] = [];
      await t.c.auditLog.exporter.exportLog({ write: (l) => void lines.push(l) });
      expect((await verifyExportLines(() => lines)).problems).toEqual([]);
    });
  });
}
