import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { authenticate } from 'mailauth';
import { beforeEach, describe, expect, it } from 'vitest';
import { clearDkimKeyCache, dkimKeyCacheSize, installDkimKeyCache } from '../src/inbound/dkim-key-cache.js';
import { dkimSignMessage } from '../src/mail/dkim.js';

const pem = (k: KeyObject) => k.export({ type: 'pkcs8', format: 'pem' }).toString();
const record = (k: KeyObject, t: 'rsa' | 'ed25519') =>
  t === 'rsa'
    ? `v=DKIM1; k=rsa; p=${k.export({ type: 'spki', format: 'der' }).toString('base64')}`
    : `v=DKIM1; k=ed25519; p=${k.export({ type: 'spki', format: 'der' }).subarray(12).toString('base64')}`;

const message = (text: string) =>
  Buffer.from(
    [
      'From: Clinic <desk@lab.example>',
      'To: bot@bench.example',
      'Subject: Results',
      'Message-ID: <m1@lab.example>',
      'Date: Thu, 01 Jan 2026 00:00:00 +0000',
      'MIME-Version: 1.0',
      'Content-Type: text/plain; charset=utf-8',
      '',
      text,
      '',
    ].join('\r\n'),
  );

/** DKIM results of mailauth's authenticate() against `txt` (the DNS answers), with the cache installed. */
const verify = async (raw: Buffer, txt: Record<string, string>) => {
  const resolver = async (name: string, type: string) => {
    const v = type === 'TXT' ? txt[name.toLowerCase()] : undefined;
    if (!v) throw Object.assign(new Error('no such record'), { code: 'ENOTFOUND' });
    return [[v]];
  };
  const r = await authenticate(raw, { ip: '127.0.0.1', helo: 'lab.example', sender: 'desk@lab.example', mta: 'mx.test', resolver });
  return r.dkim.results.map((x: { status: { result: string; comment?: string }; publicKey?: string }) => ({
    result: x.status.result,
    publicKey: x.publicKey,
  }));
};

describe('DKIM public keys shared across messages', () => {
  installDkimKeyCache();
  const rsa1 = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const rsa2 = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const ed = generateKeyPairSync('ed25519');
  const sign = (raw: Buffer, rsaKey: KeyObject) =>
    dkimSignMessage(
      raw,
      'lab.example',
      [
        { selector: 'ed', privateKeyPem: pem(ed.privateKey), algorithm: 'ed25519-sha256' },
        { selector: 'sel', privateKeyPem: pem(rsaKey), algorithm: 'rsa-sha256' },
      ],
      new Date(),
    );
  const dns1 = {
    'sel._domainkey.lab.example': record(rsa1.publicKey, 'rsa'),
    'ed._domainkey.lab.example': record(ed.publicKey, 'ed25519'),
  };

  beforeEach(() => clearDkimKeyCache());

  it('imports each record once and still verifies every message against its own bytes', async () => {
    const a = await sign(message('first'), rsa1.privateKey);
    const first = await verify(a, dns1);
    expect(first.map((x) => x.result)).toEqual(['pass', 'pass']);
    expect(dkimKeyCacheSize()).toBe(2);
    const b = await sign(message('second'), rsa1.privateKey);
    const second = await verify(b, dns1);
    expect(second.map((x) => x.result)).toEqual(['pass', 'pass']);
    // The result still reports the key as the same PEM text mailauth gave for the first (uncached) message.
    expect(first[1]!.publicKey).toMatch(/^-----BEGIN RSA PUBLIC KEY-----/);
    expect(second.map((x) => x.publicKey)).toEqual(first.map((x) => x.publicKey));
    expect(dkimKeyCacheSize()).toBe(2);
    // A cached key does not make a changed body or a forged signature pass.
    const tampered = Buffer.from(b.toString('binary').replace('second', 'Second'), 'binary');
    expect((await verify(tampered, dns1)).map((x) => x.result)).not.toContain('pass');
    const forged = await sign(message('third'), rsa2.privateKey);
    expect((await verify(forged, dns1)).map((x) => x.result)).toEqual(['pass', 'fail']);
  });

  it('answers from the record DNS gives now: a rotated key is a new entry and the old key no longer verifies', async () => {
    const old = await sign(message('before rotation'), rsa1.privateKey);
    expect((await verify(old, dns1)).map((x) => x.result)).toEqual(['pass', 'pass']);
    const dns2 = { ...dns1, 'sel._domainkey.lab.example': record(rsa2.publicKey, 'rsa') };
    expect((await verify(old, dns2)).map((x) => x.result)).toEqual(['pass', 'fail']);
    const fresh = await sign(message('after rotation'), rsa2.privateKey);
    expect((await verify(fresh, dns2)).map((x) => x.result)).toEqual(['pass', 'pass']);
    expect(dkimKeyCacheSize()).toBe(3);
    // A revoked key (empty p=) is looked up anew, never answered from the cache.
    const revoked = { ...dns2, 'sel._domainkey.lab.example': 'v=DKIM1; k=rsa; p=' };
    expect((await verify(fresh, revoked)).map((x) => x.result)).not.toEqual(['pass', 'pass']);
  });
});
