import { execFileSync } from 'node:child_process';
import { createPrivateKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { dkimSignatureValue, dkimSignMessage, parseHeaderFields, selectSignedHeaders } from '../src/mail/dkim.js';
import { relaxedBodyHash, splitMessage } from '../src/mail/mime.js';
import { readVector, readVectorJson } from './support/vectors.js';

type Rfc8463 = { dns: Record<string, string>; ed25519_seed_base64: string; body_hash: string; ed25519_b: string };
const V = readVectorJson<Rfc8463>('dkim/rfc8463.json');
const EXAMPLE = readVector('dkim/rfc8463.eml');
// The vendored file has LF line ends (as the RFC prints it); on the wire a message has CRLF.
const crlf = (b: Buffer) => Buffer.from(b.toString('binary').replace(/\r?\n/g, '\r\n'), 'binary');

// RFC 8410: a PKCS#8 Ed25519 private key is this DER prefix and the 32-byte seed.
const ed25519FromSeed = (seedB64: string): KeyObject =>
  createPrivateKey({
    key: Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), Buffer.from(seedB64, 'base64')]),
    format: 'der',
    type: 'pkcs8',
  });

// Debian's python3-dkim (dkimpy), a different implementation from the one under test. The system
// python is named explicitly: a python on PATH (pyenv) may not see Debian's dist-packages.
const DKIMPY = path.join(path.dirname(fileURLToPath(import.meta.url)), 'support', 'dkimpy-verify.py');
const dkimpy = (message: Buffer, dns: Record<string, string>): boolean[] =>
  (
    JSON.parse(execFileSync('/usr/bin/python3', [DKIMPY, JSON.stringify(dns)], { input: message, encoding: 'utf8' })) as { ok: boolean }[]
  ).map((r) => r.ok);

describe('DKIM known answers (RFC 8463 Appendix A) and an independent verifier', () => {
  it("reproduces RFC 8463's body hash and its ed25519-sha256 signature byte for byte from the RFC's private key", () => {
    const { header, body } = splitMessage(crlf(EXAMPLE));
    expect(relaxedBodyHash(body)).toBe(V.body_hash);
    const fields = parseHeaderFields(header);
    const sig = fields.find((f) => f.key === 'dkim-signature' && /a=ed25519-sha256/.test(f.line.toString('binary')));
    expect(sig).toBeDefined();
    const raw = sig!.line.toString('binary');
    const names = /[;\s]h=([^;]+)/.exec(raw.replace(/\r\n[ \t]+/g, ' '))![1]!.split(':');
    expect(names.map((n) => n.trim())).toEqual(['from', 'to', 'subject', 'date', 'message-id', 'from', 'subject', 'date']);
    const selected = selectSignedHeaders(fields, names);
    expect(selected.map((h) => h.key)).toEqual(['from', 'to', 'subject', 'date', 'message-id']);
    const b = dkimSignatureValue(selected, raw, 'ed25519-sha256', ed25519FromSeed(V.ed25519_seed_base64));
    expect(b).toBe(V.ed25519_b);
  });

  it('refuses a key whose type does not match the algorithm', () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey;
    expect(() => dkimSignatureValue([], 'DKIM-Signature: v=1; b=', 'ed25519-sha256', rsa)).toThrow(/does not match/);
  });

  it("dkimpy verifies both of RFC 8463's signatures and fails them after the body changes", () => {
    const msg = crlf(EXAMPLE);
    expect(dkimpy(msg, V.dns)).toEqual([true, true]);
    expect(dkimpy(Buffer.from(msg.toString('binary').replace('hungry', 'thirsty'), 'binary'), V.dns)).toEqual([false, false]);
  });

  it("dkimpy verifies Mailward's ed25519 and rsa signatures, over-signed, and fails them when a From is added or the body changes", async () => {
    const ed = generateKeyPairSync('ed25519');
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const pem = (k: KeyObject) => k.export({ type: 'pkcs8', format: 'pem' }).toString();
    const domain = 'hospital.example';
    const dns = {
      [`ed1._domainkey.${domain}`]: `v=DKIM1; k=ed25519; p=${(ed.publicKey.export({ type: 'spki', format: 'der' }) as Buffer).subarray(-32).toString('base64')}`,
      [`rsa1._domainkey.${domain}`]: `v=DKIM1; k=rsa; p=${(rsa.publicKey.export({ type: 'spki', format: 'der' }) as Buffer).toString('base64')}`,
    };
    const message = Buffer.from(
      [
        `From: Reminder Bot <bot@${domain}>`,
        'To: patient@clinic.example',
        'Subject: Your appointment',
        'Date: Thu, 01 Jan 2026 00:00:00 +0000',
        `Message-ID: <m1@${domain}>`,
        'X-Agent-Identity: eyJhbGciOiJFUzI1NiJ9.e30.sig',
        'MIME-Version: 1.0',
        'Content-Type: text/plain; charset=utf-8',
        '',
        'Tuesday 10:00,   room 4.  ',
        '',
        '',
      ].join('\r\n'),
    );
    const signed = await dkimSignMessage(
      message,
      domain,
      [
        { selector: 'ed1', privateKeyPem: pem(ed.privateKey), algorithm: 'ed25519-sha256' },
        { selector: 'rsa1', privateKeyPem: pem(rsa.privateKey), algorithm: 'rsa-sha256' },
      ],
      new Date(Date.UTC(2026, 0, 1)),
    );
    expect(dkimpy(signed, dns)).toEqual([true, true]);
    const s = signed.toString('binary');
    const end = s.indexOf('\r\n\r\n');
    const addedFrom = Buffer.from(`${s.slice(0, end)}\r\nFrom: someone@else.example${s.slice(end)}`, 'binary');
    expect(dkimpy(addedFrom, dns)).toEqual([false, false]);
    expect(dkimpy(Buffer.from(s.replace('room 4', 'room 5'), 'binary'), dns)).toEqual([false, false]);
  });
});
