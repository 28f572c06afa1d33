import { execFileSync } from 'node:child_process';
import { createHash, createPublicKey, verify as cryptoVerify } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dnsRecordsFor } from '../src/mail/dns-records.js';
import {
  type DnsAnswers,
  fetchDirectory,
  type KeyDirectory,
  parseDirectory,
  parseTlogProof,
  verifyDirectoryResponse,
  verifyMessage,
} from '../verifier/src/index.js';
import { tempDir, testDialects } from './support/dialects.js';
import { drainDeliveries, receivedWithId, relayEnv, seedMailbox, type Sink, startSink } from './support/outbound-sink.js';
import { createTestApp, type TestApp } from './support/test-app.js';
import { startWitness, type TestWitness } from './support/tlog-witness.js';
import fs from 'node:fs';
import type { AddressInfo } from 'node:net';
import { startInbound } from './support/inbound-mail.js';
import { connectHttp } from './support/mcp-client.js';
import { runCli } from './support/processes.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const DKIMPY = path.join(here, 'support', 'dkimpy-verify.py');
const JWCRYPTO = path.join(here, 'support', 'jwcrypto-verify.py');
const HOST = 'mail.hospital.example';

const sha256 = (...parts: (Buffer | string)[]) => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
};

/** RFC 6962 2.1.1, recursively, as the RFC defines PATH (independent of the verifier's iterative form). */
const rfc6962Root = (m: number, n: number, leaf: Buffer, path: Buffer[]): Buffer => {
  if (n === 1) {
    if (path.length !== 0) throw new Error('proof too long');
    return leaf;
  }
  let k = 1;
  while (k * 2 < n) k *= 2;
  const last = path.at(-1);
  if (!last) throw new Error('proof too short');
  const rest = path.slice(0, -1);
  return m < k
    ? sha256(Buffer.from([1]), rfc6962Root(m, k, leaf, rest), last)
    : sha256(Buffer.from([1]), last, rfc6962Root(m - k, n - k, leaf, rest));
};

/**
 * RFC 9421 verification of a directory response, written here from the RFC (not the server's or the
 * verifier package's code): each Signature-Input member's signature base is rebuilt from the covered
 * ("@authority";req) and its own parameters, and checked with the JWK named by keyid (an RFC 7638 thumbprint).
 */
const rfc9421Verified = (body: string, signatureInput: string, signature: string, authority: string): string[] => {
  const dir = JSON.parse(body) as { keys: Record<string, string>[] };
  const members = (field: string) => {
    const out = new Map<string, string>();
    let depth = 0;
    let quoted = false;
    let start = 0;
    for (let i = 0; i <= field.length; i++) {
      const ch = field[i];
      if (ch === '"' && field[i - 1] !== '\\') quoted = !quoted;
      if (!quoted && ch === '(') depth++;
      if (!quoted && ch === ')') depth--;
      if (i === field.length || (ch === ',' && depth === 0 && !quoted)) {
        const part = field.slice(start, i).trim();
        const eq = part.indexOf('=');
        out.set(part.slice(0, eq), part.slice(eq + 1));
        start = i + 1;
      }
    }
    return out;
  };
  const sigs = members(signature);
  const verified: string[] = [];
  for (const [label, value] of members(signatureInput)) {
    expect(value.startsWith('("@authority";req)')).toBe(true);
    expect(value).toContain(';tag="http-message-signatures-directory"');
    const keyid = /;keyid="([^"]+)"/.exec(value)![1]!;
    const jwk = dir.keys.find((k) => k.kid === keyid)!;
    // RFC 7638: SHA-256 of the required members in lexicographic order, no whitespace.
    const thumb = sha256(JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y })).toString('base64url');
    expect(thumb).toBe(keyid);
    const base = `"@authority";req: ${authority}\n"@signature-params": ${value}`;
    const sig = Buffer.from(/^:(.*):$/.exec(sigs.get(label)!)![1]!, 'base64');
    const key = createPublicKey({ key: { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y } as never, format: 'jwk' });
    if (cryptoVerify('sha256', Buffer.from(base), { key, dsaEncoding: 'ieee-p1363' }, sig)) verified.push(keyid);
  }
  return verified;
};

const unfoldedField = (raw: Buffer, name: string): string[] => {
  const header = raw.subarray(0, raw.indexOf('\r\n\r\n') + 2).toString('latin1');
  return [...header.replace(/\r\n(?=[ \t])/g, '').matchAll(new RegExp(`^${name}:[ \\t]*(.*)$`, 'gim'))].map((m) =>
    m[1]!.replace(/\r$/, ''),
  );
};

for (const dialect of testDialects()) {
  describe(`verifiable mail: attribution headers, key directory, receipts, witnesses (${dialect})`, () => {
    let t: TestApp;
    let sink: Sink;
    let witness: TestWitness;
    const trusted = new Map<string, string[]>();
    let dns: DnsAnswers;
    let dkimRecords: Record<string, string>;

    const directory = async (): Promise<{ dir: KeyDirectory; res: { headers: Record<string, unknown>; body: string } }> => {
      const res = await t.app.inject({ method: 'GET', url: '/.well-known/http-message-signatures-directory', headers: { host: HOST } });
      expect(res.statusCode).toBe(200);
      expect(res.headers['content-type']).toBe('application/http-message-signatures-directory+json');
      return { dir: parseDirectory(res.body), res: { headers: res.headers, body: res.body } };
    };

    /** Sends one message from a fresh autonomous mailbox and returns the bytes the relay received. */
    const deliver = async (text = 'Your results are ready in the portal.') => {
      const s = await seedMailbox(t, 'autonomous');
      const sent = await t.call('POST', `/v1/mailboxes/${s.mailbox.id}/send`, s.agentKey, {
        to: ['patient@clinic.example'],
        subject: 'Results',
        text,
      });
      expect(sent.status).toBe(202);
      await drainDeliveries(t);
      const view = await t.call('GET', `/v1/emails/${sent.body.id}`, s.agentKey);
      expect(view.body.status).toBe('delivered');
      const got = receivedWithId(sink, view.body.message_id);
      expect(got).toHaveLength(1);
      return { id: sent.body.id as string, raw: got[0]!.raw, messageId: view.body.message_id as string, s };
    };

    const receiptOf = async (id: string, key: string) => {
      const r = await t.call('GET', `/v1/emails/${id}/receipt`, key);
      expect(r.status).toBe(200);
      expect(String(r.headers['content-type'])).toContain('text/plain');
      return r.body as string;
    };

    beforeAll(async () => {
      sink = await startSink(tempDir('mw-sink'));
      witness = await startWitness('witness.test/w1', () => trusted);
      t = await createTestApp(dialect, { env: relayEnv(sink, { MAILWARD_WITNESSES: `${witness.url} ${witness.vkey}` }) });
      trusted.set(await t.c.auditLog.checkpoints.origin(), await t.c.auditLog.checkpoints.verifierKeys());
      const rows = await t.c.store.db
        .selectFrom('signing_keys')
        .selectAll()
        .where('org_id', '=', t.orgId)
        .where('purpose', 'in', ['dkim-ed25519', 'dkim-rsa'])
        .execute();
      const records = dnsRecordsFor(t.domain, rows).filter((r) => r.name.includes('._domainkey.'));
      dns = { TXT: Object.fromEntries(records.map((r) => [r.name, [r.value]])) };
      dkimRecords = Object.fromEntries(records.map((r) => [r.name, r.value]));
    }, 60_000);
    afterAll(async () => {
      await t?.close();
      await sink?.close();
      await witness?.close();
    });

    it('delivers a message that verifies with the project verifier, and independently with jwcrypto, dkimpy and an RFC 6962 check', async () => {
      const { id, raw, s } = await deliver();
      await t.c.auditLog.checkpoints.current();
      const receipt = await receiptOf(id, s.agentKey);
      const { dir } = await directory();

      const report = await verifyMessage(raw, { directory: dir, dns, receipt, witnessKeys: [witness.vkey] });
      expect(report.reasons).toEqual([]);
      expect(report.valid).toBe(true);
      expect(report.receipt?.witnesses).toEqual([{ name: witness.name, cosigned: true, time: expect.any(Number) }]);

      // The attribution JSON parses with the member names Mailward emits, and names the same people as the JWS.
      const [human] = unfoldedField(raw, 'Agent-Attribution');
      const [json] = unfoldedField(raw, 'Agent-Attribution-JSON');
      const attribution = JSON.parse(json!);
      expect(Object.keys(attribution)).toEqual(['agent', 'agent_name', 'responsible_humans', 'on_behalf_of', 'operator']);
      expect(attribution).toMatchObject({
        agent: s.mailbox.address,
        responsible_humans: [{ name: s.reviewer.name, email: s.reviewer.email }],
        on_behalf_of: null,
        operator: t.domain,
      });
      expect(human).toContain(`<${s.reviewer.email}>`);

      // X-Agent-Identity verifies with python3-jwcrypto against the directory key its kid names.
      const token = unfoldedField(raw, 'X-Agent-Identity')[0]!.replace(/\s+/g, '');
      const kid = JSON.parse(Buffer.from(token.split('.')[0]!, 'base64url').toString()).kid as string;
      const jwk = dir.keys.find((k) => k.kid === kid)!;
      const payload = JSON.parse(execFileSync('/usr/bin/python3', [JWCRYPTO, JSON.stringify(jwk), token], { encoding: 'utf8' }));
      expect(payload).toMatchObject({
        kid,
        sub: s.agent.id,
        act: { sub: s.agent.id, type: 'agent', act: { sub: s.reviewer.id, type: 'human' } },
        attribution_hash: sha256(json!).toString('hex'),
      });
      expect(() =>
        execFileSync('/usr/bin/python3', [JWCRYPTO, JSON.stringify(jwk), `${token.slice(0, -4)}AAAA`], { stdio: 'pipe' }),
      ).toThrow();

      // Both DKIM signatures verify with dkimpy, and both cover the attribution headers.
      const ok = JSON.parse(execFileSync('/usr/bin/python3', [DKIMPY, JSON.stringify(dkimRecords)], { input: raw, encoding: 'utf8' })) as {
        ok: boolean;
      }[];
      expect(ok.map((r) => r.ok)).toEqual([true, true]);
      for (const h of unfoldedField(raw, 'DKIM-Signature')) {
        expect(h.toLowerCase()).toMatch(/h=[^;]*agent-attribution:[^;]*agent-attribution-json/);
      }

      // RFC 6962 inclusion, checked by the recursive definition: the leaf is SHA-256(prev_hash || event).
      const proof = parseTlogProof(receipt);
      const extra = JSON.parse(proof.extra!.toString()) as { prev_hash: string; event: string };
      const leaf = sha256(Buffer.from([0]), sha256(Buffer.from(extra.prev_hash, 'hex'), extra.event));
      const [, size, root] = proof.checkpoint.split('\n');
      expect(rfc6962Root(proof.index, Number(size), leaf, proof.proof).toString('base64')).toBe(root);
      const event = JSON.parse(extra.event);
      expect(event.action).toBe('email.receipt');
      expect(event.details.delivery_event_hash).toMatch(/^[0-9a-f]{64}$/);
      expect(event.details.submission_event_hash).toMatch(/^[0-9a-f]{64}$/);
    });

    it('binds the submission, the approval and the delivery of a reviewed message into its receipt', async () => {
      const s = await seedMailbox(t, 'gated_send');
      const sent = await t.call('POST', `/v1/mailboxes/${s.mailbox.id}/send`, s.agentKey, {
        to: ['patient@clinic.example'],
        subject: 'Held',
        text: 'Held first.',
      });
      const held = await t.call('GET', `/v1/emails/${sent.body.id}`, s.agentKey);
      const reviewerKey = (await t.call('POST', `/v1/humans/${s.reviewer.id}/api-keys`, t.adminKey, { scopes: ['reviewer'] })).body.key;
      expect((await t.call('POST', `/v1/approvals/${held.body.approval.id}/approve`, reviewerKey, {})).status).toBe(200);
      await drainDeliveries(t);
      await t.c.auditLog.checkpoints.current();
      const receipt = await receiptOf(sent.body.id, s.agentKey);
      const event = JSON.parse(JSON.parse(parseTlogProof(receipt).extra!.toString()).event);
      const hashOf = async (action: string, target: string) =>
        (await t.c.audit.list({ orgId: t.orgId, action, targetId: target, limit: 5 }))
          .filter((e) => e.outcome === 'success')
          .map((e) => e.hash);
      expect(event.details).toMatchObject({
        submission_event_hash: (await hashOf('email.submitted', sent.body.id))[0],
        approval_event_hash: (await hashOf('email.approved', sent.body.id))[0],
        delivery_event_hash: (await hashOf('email.delivered', sent.body.id))[0],
      });
      expect(event.details.approval_event_hash).toMatch(/^[0-9a-f]{64}$/);
      // The message row names its submission event (0047), so the delivery's receipt needs no look-up by target.
      const submitted = (await t.c.audit.list({ orgId: t.orgId, action: 'email.submitted', targetId: sent.body.id, limit: 5 })).filter(
        (e) => e.outcome === 'success',
      );
      const row = await t.c.store.db
        .selectFrom('messages')
        .select('submission_event_id')
        .where('id', '=', sent.body.id)
        .executeTakeFirstOrThrow();
      expect(row.submission_event_id).toBe(submitted[0]!.id);
    });

    it('names the submission event in the receipt of a message stored before its id was kept (looked up by target)', async () => {
      const s = await seedMailbox(t, 'gated_send');
      const sent = await t.call('POST', `/v1/mailboxes/${s.mailbox.id}/send`, s.agentKey, {
        to: ['patient@clinic.example'],
        subject: 'Stored before 0047',
        text: 'Held first.',
      });
      // A row from before migration 0047 has no submission event id.
      await t.c.store.db.updateTable('messages').set({ submission_event_id: null }).where('id', '=', sent.body.id).execute();
      const held = await t.call('GET', `/v1/emails/${sent.body.id}`, s.agentKey);
      const reviewerKey = (await t.call('POST', `/v1/humans/${s.reviewer.id}/api-keys`, t.adminKey, { scopes: ['reviewer'] })).body.key;
      expect((await t.call('POST', `/v1/approvals/${held.body.approval.id}/approve`, reviewerKey, {})).status).toBe(200);
      await drainDeliveries(t);
      await t.c.auditLog.checkpoints.current();
      const event = JSON.parse(JSON.parse(parseTlogProof(await receiptOf(sent.body.id, s.agentKey)).extra!.toString()).event);
      const submitted = (await t.c.audit.list({ orgId: t.orgId, action: 'email.submitted', targetId: sent.body.id, limit: 5 })).filter(
        (e) => e.outcome === 'success',
      );
      expect(event.details.submission_event_hash).toBe(submitted[0]!.hash);
    });

    it('fails when one byte of the message, the receipt or the checkpoint changes', async () => {
      const { id, raw, s } = await deliver('Changed by one byte, it must fail.');
      await t.c.auditLog.checkpoints.current();
      const receipt = await receiptOf(id, s.agentKey);
      const { dir } = await directory();
      const opts = { directory: dir, dns, witnessKeys: [witness.vkey] };
      expect((await verifyMessage(raw, { ...opts, receipt })).valid).toBe(true);

      const body = Buffer.from(raw);
      const at = body.indexOf('byte');
      body[at] = 'B'.charCodeAt(0);
      const r1 = await verifyMessage(body, { ...opts, receipt });
      expect(r1.valid).toBe(false);
      expect(r1.reasons).toEqual(expect.arrayContaining(['identity_body_hash_mismatch', 'receipt_content_hash_mismatch']));

      const lines = receipt.split('\n');
      const i = lines.findIndex((l) => l.startsWith('index '));
      const flip = (s2: string) => (s2[5] === 'A' ? `${s2.slice(0, 5)}B${s2.slice(6)}` : `${s2.slice(0, 5)}A${s2.slice(6)}`);
      const badProof = [...lines];
      if (badProof[i + 1] && badProof[i + 1] !== '') badProof[i + 1] = flip(badProof[i + 1]!);
      else badProof[i] = `index ${Number(lines[i]!.slice(6)) + 1}`;
      const r2 = await verifyMessage(raw, { ...opts, receipt: badProof.join('\n') });
      expect(r2.valid).toBe(false);
      expect(r2.reasons).toContain('receipt_not_included');

      const blank = lines.indexOf('', i);
      const badCheckpoint = [...lines];
      badCheckpoint[blank + 3] = flip(badCheckpoint[blank + 3]!); // the checkpoint's root hash line
      const r3 = await verifyMessage(raw, { ...opts, receipt: badCheckpoint.join('\n') });
      expect(r3.valid).toBe(false);
      expect(r3.reasons).toEqual(expect.arrayContaining(['receipt_checkpoint_not_signed_by_log']));

      // Without the witness's cosignature a policy that requires it fails; another witness's key is not enough.
      const other = await startWitness('witness.test/other', () => trusted);
      const r4 = await verifyMessage(raw, { ...opts, receipt, witnessKeys: [other.vkey] });
      await other.close();
      expect(r4.reasons).toEqual(['receipt_not_cosigned_by:witness.test/other']);
    });

    it('serves the same receipt publicly by Message-ID hash, holding nothing but hashes', async () => {
      const { id, s, messageId } = await deliver();
      await t.c.auditLog.checkpoints.current();
      const receipt = await receiptOf(id, s.agentKey);
      const hash = sha256(messageId).toString('hex');
      const pub = await t.call('GET', `/.well-known/mailward/receipts/${hash}`, null);
      expect(pub.status).toBe(200);
      expect(pub.body).toBe(receipt);
      const extra = parseTlogProof(receipt).extra!.toString();
      for (const secret of [s.mailbox.address, s.agent.id, s.reviewer.id, s.reviewer.email, t.orgId, 'patient@', 'Results', '@']) {
        expect(extra).not.toContain(secret);
      }
      expect((await t.call('GET', `/.well-known/mailward/receipts/${'0'.repeat(64)}`, null)).status).toBe(404);
      expect((await t.call('GET', '/.well-known/mailward/receipts/not-a-hash', null)).status).toBe(400);
      // Another tenant's agent cannot fetch it through the API: 404, never 403.
      const other = await seedMailbox(t, 'autonomous');
      expect((await t.call('GET', `/v1/emails/${id}/receipt`, other.agentKey)).status).toBe(404);
    });

    it('publishes a key directory whose RFC 9421 response signature verifies with an independent implementation', async () => {
      const { dir, res } = await directory();
      const verified = rfc9421Verified(res.body, String(res.headers['signature-input']), String(res.headers.signature), HOST);
      const active = dir.keys.filter((k) => k.exp === undefined).map((k) => k.kid);
      expect(active.length).toBeGreaterThan(0);
      expect(verified.sort()).toEqual(active.sort());
      // Bound to the authority: the same response for another host does not verify.
      expect(rfc9421Verified(res.body, String(res.headers['signature-input']), String(res.headers.signature), 'evil.example')).toEqual([]);
      for (const k of dir.keys) expect(k).toMatchObject({ kty: 'EC', crv: 'P-256', alg: 'ES256', use: 'sig', nbf: expect.any(Number) });
      expect(dir.log_verifier_keys?.length).toBeGreaterThan(0);
      // The verifier package fetches it over HTTP and keeps it only when a signature verifies for the host it asked.
      await t.app.listen({ port: 0, host: '127.0.0.1' });
      const port = (t.app.server.address() as AddressInfo).port;
      const fetched = await fetchDirectory(`http://127.0.0.1:${port}/.well-known/http-message-signatures-directory`);
      expect(fetched.keys.map((k) => k.kid)).toEqual(dir.keys.map((k) => k.kid));
      expect(
        await verifyDirectoryResponse(
          dir,
          { signatureInput: String(res.headers['signature-input']), signature: String(res.headers.signature) },
          'evil.example',
        ),
      ).toEqual([]);
    });

    it('reports a checkpoint the witness refused: an inconsistent (forked) history answers 422, a witness ahead of us 409', async () => {
      await deliver();
      await t.c.auditLog.checkpoints.current();
      const origin = await t.c.auditLog.checkpoints.origin();
      const known = witness.state.get(origin)!;
      // The witness saw another tree of the same size: a fork. Our next checkpoint's consistency proof cannot match it.
      witness.state.set(origin, { size: known.size, root: sha256('another history') });
      const { id, raw, s } = await deliver('After the fork.');
      const cp = await t.c.auditLog.checkpoints.current();
      const mine = cp.witnesses?.find((w) => w.name === witness.name);
      expect(mine).toMatchObject({ status: 'refused', http_status: 422 });
      expect(witness.requests.at(-1)).toMatchObject({ status: 422, old: known.size, size: cp.tree_size });
      const auditor = await t.call('POST', '/v1/humans', t.adminKey, {
        name: 'Audit',
        email: 'audit@hospital.example',
        roles: ['auditor'],
      });
      const key = await t.call('POST', `/v1/humans/${auditor.body.id}/api-keys`, t.adminKey, { scopes: ['auditor'] });
      const shown = await t.call('GET', '/v1/audit/checkpoint', key.body.key);
      expect(shown.body.witnesses).toEqual([expect.objectContaining({ name: witness.name, status: 'refused', http_status: 422 })]);

      // The receipt under that checkpoint carries no cosignature: the verifier says so.
      const receipt = await receiptOf(id, s.agentKey);
      const { dir } = await directory();
      const r = await verifyMessage(raw, { directory: dir, dns, receipt, witnessKeys: [witness.vkey] });
      expect(r.valid).toBe(false);
      expect(r.reasons).toEqual([`receipt_not_cosigned_by:${witness.name}`]);

      // A witness that has cosigned a larger tree than ours (our log was cut back): 409 with its size, refused.
      witness.state.set(origin, { size: cp.tree_size + 1000, root: sha256('a longer history') });
      await deliver('After the cut.');
      const cp2 = await t.c.auditLog.checkpoints.current();
      expect(cp2.witnesses?.find((w) => w.name === witness.name)).toMatchObject({
        status: 'refused',
        http_status: 409,
        known_size: cp.tree_size + 1000,
      });

      // A witness that lost its state answers 409 with size 0; the log asks again from 0 and is cosigned.
      witness.state.delete(origin);
      await deliver('After the witness lost its state.');
      const cp3 = await t.c.auditLog.checkpoints.current();
      expect(cp3.witnesses?.find((w) => w.name === witness.name)).toMatchObject({ status: 'cosigned', http_status: 200 });
      expect(witness.requests.slice(-2).map((q) => [q.status, q.old])).toEqual([
        [409, cp2.tree_size > 0 ? expect.any(Number) : 0],
        [200, 0],
      ]);
    });

    it('mailward verify checks a message and its receipt offline from files: exit 0 valid, 1 when a byte changed', async () => {
      const { id, raw, s } = await deliver('Checked by the command line.');
      await t.c.auditLog.checkpoints.current();
      const dir = tempDir('mw-verify');
      const files = {
        eml: path.join(dir, 'm.eml'),
        bad: path.join(dir, 'bad.eml'),
        receipt: path.join(dir, 'm.tlog-proof'),
        directory: path.join(dir, 'directory.json'),
        dns: path.join(dir, 'dns.json'),
      };
      fs.writeFileSync(files.eml, raw);
      fs.writeFileSync(files.bad, Buffer.from(raw.toString('latin1').replace('command line', 'command lime'), 'latin1'));
      fs.writeFileSync(files.receipt, await receiptOf(id, s.agentKey));
      fs.writeFileSync(files.directory, (await directory()).res.body);
      fs.writeFileSync(files.dns, JSON.stringify(dns));
      const args = ['--receipt', files.receipt, '--directory', files.directory, '--dns', files.dns, '--witness-key', witness.vkey];
      const ok = await runCli(['verify', files.eml, ...args, '--json'], t.env);
      expect(ok.stderr).toBe('');
      expect(ok.code).toBe(0);
      expect(JSON.parse(ok.stdout)).toMatchObject({ valid: true, receipt: { valid: true } });
      const text = await runCli(['verify', files.eml, ...args], t.env);
      expect(text.stdout).toContain('valid');
      expect(text.stdout).toContain(`${witness.name} cosigned`);
      const bad = await runCli(['verify', files.bad, ...args, '--json'], t.env);
      expect(bad.code).toBe(1);
      expect(JSON.parse(bad.stdout).reasons).toContain('receipt_content_hash_mismatch');
    });

    it('verify_email over MCP lets an agent of another Mailward check mail it received', async () => {
      const { id, raw, s } = await deliver('Received by another installation.');
      await t.c.auditLog.checkpoints.current();
      const receipt = await receiptOf(id, s.agentKey);
      const { res } = await directory();
      // Installation B knows A's DKIM keys through its DNS answers, and nothing else of A.
      const dnsFile = path.join(tempDir('mw-b-dns'), 'dns.json');
      fs.writeFileSync(dnsFile, JSON.stringify(dns));
      const b = await createTestApp(dialect, { domain: 'clinic.example', env: { MAILWARD_DNS_OVERRIDES: dnsFile } });
      try {
        const rcpt = await seedMailbox(b, 'autonomous');
        const inbound = await startInbound(b);
        await inbound.sendRaw(raw, { from: s.mailbox.address, to: [rcpt.mailbox.address] });
        await inbound.close();
        const list = await b.call('GET', `/v1/mailboxes/${rcpt.mailbox.id}/messages?direction=inbound`, rcpt.agentKey);
        const got = list.body.messages[0].id as string;
        await b.app.listen({ port: 0, host: '127.0.0.1' });
        const mcp = await connectHttp((b.app.server.address() as AddressInfo).port, rcpt.agentKey);
        try {
          const args = { email_id: got, directory: res.body, receipt, witness_keys: [witness.vkey] };
          const r = await mcp.call('verify_email', args);
          expect(r.isError).toBeFalsy();
          expect(r.structuredContent).toMatchObject({ valid: true, reasons: [], receipt: { valid: true } });
          // With B's own keys instead of A's directory it does not verify.
          const own = await mcp.call('verify_email', { email_id: got, receipt });
          expect(own.structuredContent.valid).toBe(false);
          expect(own.structuredContent.reasons).toContain('identity_unknown_key');
          const read = await b.c.audit.list({ orgId: b.orgId, action: 'email.raw.read', limit: 10 });
          expect(read.map((e) => e.target?.id)).toEqual([got, got]);
        } finally {
          await mcp.close();
        }
      } finally {
        await b.close();
      }
    });

    it('still verifies mail signed with the old key after a key rotation, through the directory', async () => {
      const before = await deliver('Signed before the rotation.');
      const oldKid = JSON.parse(
        Buffer.from(unfoldedField(before.raw, 'X-Agent-Identity')[0]!.replace(/\s+/g, '').split('.')[0]!, 'base64url').toString(),
      ).kid as string;
      // Rotated by the command an operator runs (another process, the same store).
      const cli = await runCli(['keys', 'rotate-identity', '--json'], t.env);
      expect(cli.code).toBe(0);
      const rotated = JSON.parse(cli.stdout) as { retired: string; active: string };
      expect(rotated.retired).toBe(oldKid);
      expect(await t.c.audit.list({ orgId: t.orgId, action: 'signing_key.rotated', limit: 5 })).toHaveLength(1);
      await t.c.auditLog.checkpoints.current();
      const receipt = await receiptOf(before.id, before.s.agentKey);
      const { dir, res } = await directory();
      const old = dir.keys.find((k) => k.kid === oldKid)!;
      expect(old.exp).toEqual(expect.any(Number));
      expect(dir.keys.find((k) => k.kid === rotated.active)?.exp).toBeUndefined();
      const r = await verifyMessage(before.raw, { directory: dir, dns, receipt, witnessKeys: [witness.vkey] });
      expect(r.reasons).toEqual([]);
      // The retired key no longer signs the directory; the new one does.
      expect(rfc9421Verified(res.body, String(res.headers['signature-input']), String(res.headers.signature), HOST)).toEqual([
        rotated.active,
      ]);
      // A header issued outside its key's window does not verify under it.
      const iat = JSON.parse(
        Buffer.from(unfoldedField(before.raw, 'X-Agent-Identity')[0]!.replace(/\s+/g, '').split('.')[1]!, 'base64url').toString(),
      ).iat;
      const narrowed = { ...dir, keys: dir.keys.map((k) => (k.kid === oldKid ? { ...k, nbf: iat + 1 } : k)) };
      expect((await verifyMessage(before.raw, { directory: narrowed, dns })).reasons).toContain('identity_key_not_valid_at_iat');
    });
  });
}
