import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testDialects } from './support/dialects.js';
import { runCli } from './support/processes.js';
import { createTestApp, seedAgent, type TestApp } from './support/test-app.js';

/** RFC 6962 2.1.1 inclusion check written here, independent of src/audit/merkle.ts. */
const sha = (...parts: Buffer[]) => createHash('sha256').update(Buffer.concat(parts)).digest();
const rootFromPath = (leafIndex: number, treeSize: number, leaf: Buffer, path: Buffer[]): Buffer | null => {
  let fn = leafIndex;
  let sn = treeSize - 1;
  let r = leaf;
  for (const p of path) {
    if (sn === 0) return null;
    if (fn % 2 === 1 || fn === sn) {
      r = sha(Buffer.from([1]), p, r);
      while (fn % 2 === 0 && fn !== 0) {
        fn >>= 1;
        sn >>= 1;
      }
    } else r = sha(Buffer.from([1]), r, p);
    fn >>= 1;
    sn >>= 1;
  }
  return sn === 0 ? r : null;
};

for (const dialect of testDialects()) {
  describe(`mailward compliance report (${dialect})`, () => {
    let t: TestApp;
    beforeAll(async () => {
      t = await createTestApp(dialect);
      await t.call('POST', '/v1/humans', t.adminKey, { name: 'Rev', email: 'rev@hospital.example', roles: ['reviewer'] });
      expect((await t.call('GET', '/v1/audit/checkpoint', t.adminKey)).status).toBe(200);
      expect((await t.call('GET', '/v1/audit/verify', t.adminKey)).status).toBe(200);
      await t.call('POST', '/v1/audit/legal-holds', t.adminKey, { matter: 'Smith v. General Hospital' });
    }, 60_000);
    afterAll(async () => {
      await t?.close();
    });

    it('reports key ages, MFA coverage, the last verification and checkpoint, retention and holds, signed through the audit log', async () => {
      const r = await runCli(['compliance', 'report', '--json'], t.env);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      const out = JSON.parse(r.stdout);
      const rep = out.report;
      expect(rep.encryption_at_rest.key_encryption_keys.map((k: any) => k.age_days)).toEqual([0]);
      expect(rep.encryption_at_rest.signing_keys.some((k: any) => k.purpose === 'audit-ed25519')).toBe(true);
      expect(rep.encryption_at_rest.sealed_values_by_version.length).toBeGreaterThan(0);
      const org = rep.organizations.find((o: any) => o.org_id === t.orgId);
      expect(org.mfa.active_humans).toBeGreaterThanOrEqual(2);
      expect(org.mfa.with_second_factor).toBe(0);
      expect(org.retention.message_retention_days).toBeGreaterThan(0);
      expect(org.legal_holds.audit).toBe(1);
      expect(rep.audit.last_verification.outcome).toBe('success');
      expect(rep.audit.last_checkpoint.tree_size).toBeGreaterThan(0);
      expect(rep.backup).toBeNull();
      expect(r.stdout).not.toContain('rev@hospital.example');

      // The signature: the report's hash is in an audit event, whose leaf is in the signed checkpoint.
      const hash = createHash('sha256').update(JSON.stringify(rep)).digest('hex');
      expect(out.signature.report_sha256).toBe(hash);
      // A store-wide event (no organisation): read from the log itself.
      const e = (await t.c.audit.get(out.signature.seq, null)) as any;
      expect(e.action).toBe('compliance.reported');
      expect(e.details.report_sha256).toBe(hash);
      expect(e.hash).toBe(out.signature.event_hash);
      const leaf = sha(Buffer.from([0]), Buffer.from(e.hash, 'hex'));
      const root = rootFromPath(
        out.signature.seq - 1,
        out.signature.checkpoint.tree_size,
        leaf,
        out.signature.audit_path.map((h: string) => Buffer.from(h, 'hex')),
      );
      expect(root?.toString('hex')).toBe(out.signature.checkpoint.root_hash);
      // A changed report no longer matches.
      expect(
        createHash('sha256')
          .update(JSON.stringify({ ...rep, backup: { last_at: 'x' } }))
          .digest('hex'),
      ).not.toBe(hash);

      const text = await runCli(['compliance', 'report'], t.env);
      expect(text.stdout).toContain('Last audit verification:');
      expect(text.stdout).toContain('MFA: 0 of');
    }, 60_000);

    it("serves a privacy officer their organisation's pack over REST, signed in their name; reviewers and agents get 404", async () => {
      const officer = await t.call('POST', '/v1/humans', t.adminKey, {
        name: 'Pat',
        email: 'pat@hospital.example',
        roles: ['privacy_officer'],
      });
      const officerKey = (await t.call('POST', `/v1/humans/${officer.body.id}/api-keys`, t.adminKey, {})).body.key;
      const r = await t.call('GET', '/v1/compliance/report', officerKey);
      expect(r.status).toBe(200);
      const rep = r.body.report;
      expect(rep.scope).toEqual({ org_id: t.orgId });
      expect(rep.organizations.map((o: any) => o.org_id)).toEqual([t.orgId]);
      expect(rep.organizations[0].legal_holds.audit).toBe(1);
      // A store-wide count is left out of an organisation's report.
      expect(rep.encryption_at_rest.sealed_values_by_version).toBeNull();
      expect(rep.encryption_at_rest.key_encryption_keys.length).toBeGreaterThan(0);
      expect(rep.encryption_at_rest.signing_keys.every((k: any) => k.org_id === null || k.org_id === t.orgId)).toBe(true);
      expect(rep.audit.last_verification.outcome).toBe('success');
      expect(JSON.stringify(r.body)).not.toContain('rev@hospital.example');

      // Signed like the CLI's, and the audit event names the officer.
      const hash = createHash('sha256').update(JSON.stringify(rep)).digest('hex');
      expect(r.body.signature.report_sha256).toBe(hash);
      const e = (await t.c.audit.get(r.body.signature.seq, t.orgId)) as any;
      expect(e).toMatchObject({ action: 'compliance.reported', outcome: 'success' });
      expect(e.actor_id ?? e.actor?.id).toBe(officer.body.id);
      expect(e.details.report_sha256).toBe(hash);
      const leaf = sha(Buffer.from([0]), Buffer.from(e.hash, 'hex'));
      const root = rootFromPath(
        r.body.signature.seq - 1,
        r.body.signature.checkpoint.tree_size,
        leaf,
        r.body.signature.audit_path.map((h: string) => Buffer.from(h, 'hex')),
      );
      expect(root?.toString('hex')).toBe(r.body.signature.checkpoint.root_hash);
      // The admin may too.
      expect((await t.call('GET', '/v1/compliance/report', t.adminKey)).status).toBe(200);

      const reviewer = await t.call('POST', '/v1/humans', t.adminKey, { name: 'Ray', email: 'ray@hospital.example', roles: ['reviewer'] });
      const reviewerKey = (await t.call('POST', `/v1/humans/${reviewer.body.id}/api-keys`, t.adminKey, { scopes: ['reviewer'] })).body.key;
      const agent = await seedAgent(t, 'Evidence Probe');
      await t.c.audit.sync();
      const before = await t.c.store.db.selectFrom('audit_events').select('seq').where('action', '=', 'compliance.reported').execute();
      for (const key of [reviewerKey, agent.agentKey]) {
        const x = await t.call('GET', '/v1/compliance/report', key);
        expect(x.status).toBe(404);
        expect(JSON.stringify(x.body)).not.toContain('encryption_at_rest');
      }
      await t.c.audit.sync(); // the denials are sequenced by the integrator
      const after = await t.c.store.db
        .selectFrom('audit_events')
        .select(['outcome'])
        .where('action', '=', 'compliance.reported')
        .where('seq', '>', Math.max(...before.map((b) => Number(b.seq))))
        .execute();
      expect(after.map((a) => a.outcome)).toEqual(['denied', 'denied']);
    }, 60_000);
  });
}
