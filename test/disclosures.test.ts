import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir, testDialects } from './support/dialects.js';
import { rotateKeys } from '../src/app/key-rotation.js';
import { SEALED_COLUMNS } from '../src/app/sealed-columns.js';
import { consoleClient, oathtoolCode } from './support/console-client.js';
import { runCli } from './support/processes.js';
import { waitFor } from './support/wait.js';
import { drainDeliveries, relayEnv, type Sink, seedMailbox, startSink } from './support/outbound-sink.js';
import { createTestApp, type TestApp } from './support/test-app.js';

/** An RFC 6962 (section 2.1.1) inclusion check written here, independent of src/audit/merkle.ts. */
const sha = (...parts: Buffer[]) => createHash('sha256').update(Buffer.concat(parts)).digest();
const rootFromPath = (leafIndex: number, treeSize: number, leaf: Buffer, path: Buffer[]): Buffer | null => {
  if (leafIndex >= treeSize) return null;
  let fn = leafIndex;
  let sn = treeSize - 1;
  let r = leaf;
  for (const p of path) {
    if (sn === 0) return null;
    if (fn % 2 === 1 || fn === sn) {
      r = sha(Buffer.from([1]), p, r);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn >>= 1;
          sn >>= 1;
        }
      }
    } else r = sha(Buffer.from([1]), r, p);
    fn >>= 1;
    sn >>= 1;
  }
  return sn === 0 ? r : null;
};

const consentPath = (email: string) => `/v1/contacts/${encodeURIComponent(email)}/consent`;

for (const dialect of testDialects()) {
  describe(`accounting of disclosures (${dialect})`, () => {
    let t: TestApp;
    let sink: Sink;
    let officerKey: string;
    let reviewerKey: string;
    let agentKey: string;
    let mailboxId: string;
    const patients = [1, 2, 3, 4, 5].map((i) => `patient${i}@clinic.example`);
    const sentTo = new Map<string, string[]>();

    beforeAll(async () => {
      sink = await startSink(tempDir('mw-disc-sink'));
      t = await createTestApp(dialect, { env: relayEnv(sink) });
      const officer = await t.call('POST', '/v1/humans', t.adminKey, {
        name: 'Pat Privacy',
        email: 'privacy@hospital.example',
        roles: ['privacy_officer'],
      });
      officerKey = (await t.call('POST', `/v1/humans/${officer.body.id}/api-keys`, t.adminKey, {})).body.key;
      for (const p of patients) {
        const r = await t.call('PUT', consentPath(p), officerKey, {
          electronic: true,
          categories: ['appointment', 'results'],
          source: 'paper_form',
        });
        expect(r.status).toBe(200);
      }
      const gated = await seedMailbox(t, 'gated_all');
      agentKey = gated.agentKey;
      mailboxId = gated.mailbox.id;
      reviewerKey = (await t.call('POST', `/v1/humans/${gated.reviewer.id}/api-keys`, t.adminKey, { scopes: ['reviewer'] })).body.key;
      // 30 messages round-robin to five patients (patient 1 also once on cc of a message to patient 2).
      for (let i = 0; i < 30; i++) {
        const to = patients[i % 5]!;
        const cc = i === 6 ? [patients[0]!] : [];
        const r = await t.call('POST', `/v1/mailboxes/${gated.mailbox.id}/send`, agentKey, {
          to: [to],
          cc,
          subject: `Results ${i}`,
          text: `Patient: Maria Lopez, MRN: 48201${String(i).padStart(2, '0')}. Your lab results are ready.`,
          category: 'results',
        });
        expect(r.status).toBe(202);
        for (const a of [to, ...cc]) sentTo.set(a, [...(sentTo.get(a) ?? []), r.body.id]);
        const pending = await t.call('GET', '/v1/approvals?status=pending', reviewerKey);
        for (const a of pending.body.approvals ?? pending.body.items ?? []) {
          const ok = await t.call('POST', `/v1/approvals/${a.id}/approve`, reviewerKey, {});
          expect(ok.status).toBe(200);
        }
      }
      await drainDeliveries(t);
      await sink.waitFor(30);
    }, 120_000);
    afterAll(async () => {
      await t?.close();
      await sink?.close();
    });

    it("lists exactly one patient's messages with the fields, each proof verifying independently, and audits the read", async () => {
      const r = await t.call('GET', `/v1/disclosures?contact=${encodeURIComponent('Patient1@Clinic.example')}`, officerKey);
      expect(r.status).toBe(200);
      const ds = r.body.disclosures as any[];
      expect(ds.map((d) => d.email_id).sort()).toEqual([...sentTo.get(patients[0]!)!].sort());
      expect(ds).toHaveLength(7);
      for (const d of ds) {
        expect(d.recipient).toBe('patient1@clinic.example');
        expect(d.phi_types).toContain('mrn');
        expect(d.category).toBe('results');
        expect(d.agent?.name).toMatch(/^Agent gated_all/);
        expect(d.chain.length).toBeGreaterThan(0);
        expect(d.approved_by?.id).toMatch(/^hum_/);
        expect(d.part2_consents).toEqual([]);
        expect(d.at).toBeTruthy();
        // The proof's event is the message's email.delivered event, and it is in the tree independently of our code.
        const ev = await t.call('GET', `/v1/audit/events?target_id=${d.email_id}&action=email.delivered`, t.adminKey);
        expect(ev.body.events.map((e: any) => e.seq)).toEqual([d.proof.seq]);
        expect(ev.body.events[0].hash).toBe(d.proof.event_hash);
        const leaf = sha(Buffer.from([0]), Buffer.from(d.proof.event_hash, 'hex'));
        expect(leaf.toString('hex')).toBe(d.proof.leaf_hash);
        const root = rootFromPath(
          d.proof.leaf_index,
          d.proof.tree_size,
          leaf,
          d.proof.audit_path.map((h: string) => Buffer.from(h, 'hex')),
        );
        expect(root?.toString('hex')).toBe(d.proof.root_hash);
        // A tampered path does not verify (the check can fail).
        if (d.proof.audit_path.length > 0) {
          const bad = [...d.proof.audit_path];
          bad[0] = bad[0].replace(/^./, (c: string) => (c === '0' ? '1' : '0'));
          expect(
            rootFromPath(
              d.proof.leaf_index,
              d.proof.tree_size,
              leaf,
              bad.map((h: string) => Buffer.from(h, 'hex')),
            )?.toString('hex'),
          ).not.toBe(d.proof.root_hash);
        }
      }
      const cp = await t.call('GET', '/v1/audit/checkpoint', t.adminKey);
      expect(cp.body.tree_size).toBeGreaterThanOrEqual(ds[0].proof.tree_size);
      const reads = await t.call('GET', '/v1/audit/events?action=disclosures.read', t.adminKey);
      expect(reads.body.events.at(-1).details.count).toBe(7);
      expect(reads.body.events.at(-1).target.id).toBe(r.body.contact_hash);
      expect(JSON.stringify(reads.body.events)).not.toContain('patient1@');

      const other = await t.call('GET', `/v1/disclosures?contact=${encodeURIComponent(patients[3]!)}`, t.adminKey);
      expect(other.body.disclosures).toHaveLength(6);
      const none = await t.call('GET', `/v1/disclosures?contact=nobody@clinic.example`, officerKey);
      expect(none.body.disclosures).toEqual([]);
      const future = await t.call('GET', `/v1/disclosures?contact=${patients[0]}&since=2999-01-01T00:00:00Z`, officerKey);
      expect(future.body.disclosures).toEqual([]);
      const csv = await t.app.inject({
        url: `/v1/disclosures/csv?contact=${patients[0]}`,
        headers: { authorization: `Bearer ${officerKey}` },
      });
      expect(csv.statusCode).toBe(200);
      expect(csv.headers['content-type']).toMatch(/text\/csv/);
      expect(csv.body.trim().split('\r\n')).toHaveLength(8);
      expect((await t.call('GET', '/v1/disclosures?contact=not-an-address', officerKey)).status).toBe(400);
    });

    it('stores no address in the index and answers 404 to a reviewer and an agent on every route', async () => {
      const rows = await t.c.store.db.selectFrom('recipient_index').selectAll().execute();
      expect(rows.length).toBeGreaterThanOrEqual(61);
      expect(JSON.stringify(rows)).not.toMatch(/clinic\.example|hospital\.example/);
      for (const key of [reviewerKey, agentKey]) {
        for (const url of [`/v1/disclosures?contact=${patients[0]}`, `/v1/disclosures/csv?contact=${patients[0]}`]) {
          const r = await t.call('GET', url, key);
          expect(r.status).toBe(404);
        }
      }
    });

    it('names the Part 2 consent that authorised a Part 2 disclosure', async () => {
      const to = 'patient6@clinic.example';
      expect(
        (await t.call('PUT', consentPath(to), officerKey, { electronic: true, categories: ['results'], source: 'paper_form' })).status,
      ).toBe(200);
      const c = await t.call('POST', '/v1/part2-consents', t.adminKey, {
        recipient_address: to,
        purpose: 'treatment',
        source: 'signed_form',
      });
      expect(c.status).toBe(201);
      const r = await t.call('POST', `/v1/mailboxes/${mailboxId}/send`, agentKey, {
        to: [to],
        subject: 'Program update',
        text: 'Your next session at the opioid treatment program is confirmed.',
      });
      expect(r.status).toBe(202);
      const pending = await t.call('GET', '/v1/approvals?status=pending', reviewerKey);
      for (const a of pending.body.approvals ?? pending.body.items ?? []) {
        expect((await t.call('POST', `/v1/approvals/${a.id}/approve`, reviewerKey, {})).status).toBe(200);
      }
      await drainDeliveries(t);
      const rep = await t.call('GET', `/v1/disclosures?contact=${to}`, officerKey);
      expect(rep.body.disclosures).toHaveLength(1);
      expect(rep.body.disclosures[0].part2_consents).toEqual([c.body.id]);
    }, 60_000);

    it('the console shows a printable report to a privacy officer and 404 to a reviewer', async () => {
      let n = 0;
      const signedIn = async (roles: string[]) => {
        const h = await t.call('POST', '/v1/humans', t.adminKey, {
          name: `Person ${++n}`,
          email: `c${n}.${dialect}@hospital.example`,
          roles,
        });
        const inv = await t.call('POST', `/v1/humans/${h.body.id}/invitations`, t.adminKey);
        const path = new URL(inv.body.url).pathname;
        const b = consoleClient(t.app);
        await b.request('GET', path);
        const pw = 'correct horse battery staple 42';
        await b.request('POST', path, { form: { csrf: b.csrf(), password: pw, password_confirm: pw } });
        const page = await b.request('GET', '/console/enrol');
        const secret = /id="totp-secret">([A-Z2-7]+)</.exec(page.body)![1]!;
        expect(
          (await b.request('POST', '/console/enrol/totp', { form: { csrf: b.csrf(), code: oathtoolCode(secret, new Date()) } })).status,
        ).toBe(200);
        return b;
      };
      const officer = await signedIn(['privacy_officer']);
      const page = await officer.request('GET', `/console/disclosures?contact=${encodeURIComponent(patients[0]!)}`);
      expect(page.status).toBe(200);
      expect((page.body.match(/<tr><td>/g) ?? []).length).toBe(7);
      expect(page.body).toContain('/console/audit/');
      expect((await officer.request('GET', '/console/breaches')).status).toBe(200);
      const reviewer = await signedIn(['reviewer']);
      for (const url of [
        '/console/disclosures',
        `/console/disclosures?contact=${patients[0]}`,
        '/console/breaches',
        `/console/breaches/brc_${'0'.repeat(32)}`,
      ])
        expect((await reviewer.request('GET', url)).status).toBe(404);
    }, 60_000);

    it('mailward disclosures prints the same report as the officer, audited under their name', async () => {
      const r = await runCli(['disclosures', '--contact', patients[1]!, '--json'], { ...t.env, MAILWARD_API_KEY: officerKey });
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      const out = JSON.parse(r.stdout);
      expect(out.disclosures.map((d: any) => d.email_id).sort()).toEqual([...sentTo.get(patients[1]!)!].sort());
      const csv = await runCli(['disclosures', '--contact', patients[1]!, '--csv'], { ...t.env, MAILWARD_API_KEY: officerKey });
      expect(csv.stdout.trim().split('\r\n')).toHaveLength(7);
      const denied = await runCli(['disclosures', '--contact', patients[1]!], { ...t.env, MAILWARD_API_KEY: reviewerKey });
      expect(denied.code).not.toBe(0);
    }, 60_000);

    it('mailward keys rotate re-keys the index: new MACs, same answers', async () => {
      const before = await t.c.store.db
        .selectFrom('recipient_index')
        .select(['message_id', 'role', 'address_mac', 'key_version'])
        .execute();
      const r = await rotateKeys({
        store: t.c.store,
        keys: { masterKey: undefined, dataDir: t.dataDir },
        clock: t.c.clock,
        audit: t.c.audit,
        columns: SEALED_COLUMNS,
      });
      expect(r.failed).toEqual([]);
      const after = await t.c.store.db.selectFrom('recipient_index').select(['message_id', 'role', 'address_mac', 'key_version']).execute();
      expect(after).toHaveLength(before.length);
      expect(new Set(after.map((x) => Number(x.key_version)))).toEqual(new Set([2]));
      const old = new Set(before.map((x) => x.address_mac));
      expect(after.some((x) => old.has(x.address_mac))).toBe(false);
      const keys = await t.c.store.db.selectFrom('recipient_index_keys').selectAll().orderBy('version').execute();
      expect(keys.map((k) => [Number(k.version), k.retired_at !== null])).toEqual([
        [1, true],
        [2, false],
      ]);
      // The running server follows the key file within a second (master-key.ts): poll until it opens the new index key.
      let rep: any;
      await waitFor(async () => {
        rep = await t.call('GET', `/v1/disclosures?contact=${patients[0]}`, officerKey);
        return rep.status === 200;
      });
      expect(rep.body.disclosures.map((d: any) => d.email_id).sort()).toEqual([...sentTo.get(patients[0]!)!].sort());
    }, 60_000);
  });
}
