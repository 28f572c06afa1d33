import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { dkimVerify } from 'mailauth/lib/dkim/verify.js';
import { describe, expect, it } from 'vitest';
import { DKIM_HEADER_LIST } from '../src/mail/dkim.js';
import { type SignInput, signMessage } from '../src/mail/sign-message.js';

const DOMAIN = 'hospital.example';

const keys = () => {
  const ed = generateKeyPairSync('ed25519');
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const pem = (k: KeyObject) => k.export({ type: 'pkcs8', format: 'pem' }).toString();
  // RFC 8463 4: an ed25519 p= is the raw 32-byte public key; RSA p= is the SPKI DER.
  const edRaw = (ed.publicKey.export({ type: 'spki', format: 'der' }) as Buffer).subarray(-32).toString('base64');
  const rsaDer = (rsa.publicKey.export({ type: 'spki', format: 'der' }) as Buffer).toString('base64');
  const records = new Map([
    [`ed1._domainkey.${DOMAIN}`, `v=DKIM1; k=ed25519; p=${edRaw}`],
    [`rsa1._domainkey.${DOMAIN}`, `v=DKIM1; k=rsa; p=${rsaDer}`],
  ]);
  const resolver = async (name: string, type: string) => {
    const r = type === 'TXT' ? records.get(name) : undefined;
    if (!r) throw Object.assign(new Error('not found'), { code: 'ENOTFOUND' });
    return [[r]];
  };
  const input: SignInput = {
    content: {
      from: { name: 'Reminder Bot', address: `bot@${DOMAIN}` },
      to: ['patient@clinic.example'],
      cc: ['gp@clinic.example'],
      bcc: [],
      subject: 'Your appointment',
      text: 'Tuesday 10:00, room 4.',
      html: null,
      attachments: [],
    },
    threading: { messageId: `<m1@${DOMAIN}>`, inReplyTo: null, references: [] },
    dateMs: Date.UTC(2026, 0, 1),
    domain: DOMAIN,
    claims: {
      ai_generated: true,
      iss: DOMAIN,
      sub: 'agt_1',
      agent_address: `bot@${DOMAIN}`,
      delegation_chain: [],
      responsible_human: { id: 'hum_1', name: 'Dr. H' },
      oversight_mode: 'autonomous',
      approved_by: null,
      approval_id: null,
      message_id: `<m1@${DOMAIN}>`,
      iat: 1,
    },
    attribution: {
      agent: { address: `bot@${DOMAIN}`, name: 'Bot' },
      responsible: [{ name: 'H', email: `h@${DOMAIN}` }],
      operator: `${DOMAIN}`,
    },
    identityKey: { kid: 'id1', pem: pem(ec.privateKey) },
    dkim: { ed25519: { selector: 'ed1', pem: pem(ed.privateKey) }, rsa: { selector: 'rsa1', pem: pem(rsa.privateKey) } },
  };
  return { input, resolver };
};

type DkimResult = { algo: string; status: { result: string }; signingHeaders?: { keys: string } };
const verify = async (raw: Buffer, resolver: (n: string, t: string) => Promise<string[][]>) =>
  ((await dkimVerify(raw, { resolver } as never)) as unknown as { results: DkimResult[] }).results
    .map((r) => [r.algo, r.status.result])
    .sort();

/** Inserts a header line just before the blank line that ends the header block (where a later hop could add one). */
const appendHeader = (raw: Buffer, line: string) => {
  const s = raw.toString('binary');
  const end = s.indexOf('\r\n\r\n');
  return Buffer.from(`${s.slice(0, end)}\r\n${line}${s.slice(end)}`, 'binary');
};
/** Prepends a header line at the top (where relays add trace fields). */
const prependHeader = (raw: Buffer, line: string) => Buffer.concat([Buffer.from(`${line}\r\n`), raw]);

describe('DKIM over-signing (RFC 6376 5.4.2, 8.15)', () => {
  it('signs with both algorithms and lists every covered header once more than it occurs', async () => {
    const { input, resolver } = keys();
    const raw = await signMessage(input);
    expect(await verify(raw, resolver)).toEqual([
      ['ed25519-sha256', 'pass'],
      ['rsa-sha256', 'pass'],
    ]);
    const head = raw
      .toString('binary')
      .split('\r\n\r\n')[0]!
      .replace(/\r\n[ \t]+/g, ' ');
    const sigs = head.split('\r\n').filter((l) => /^DKIM-Signature:/i.test(l));
    expect(sigs).toHaveLength(2);
    for (const sig of sigs) {
      const h = /[;\s]h=([^;]+)/
        .exec(sig)![1]!
        .toLowerCase()
        .split(':')
        .map((x) => x.trim());
      const count = (n: string) => h.filter((x) => x === n).length;
      // Present once in the message, listed twice; absent (reply-to, sender), listed once.
      for (const n of ['from', 'to', 'cc', 'subject', 'date', 'message-id', 'x-agent-identity']) expect(count(n), n).toBe(2);
      for (const n of ['reply-to', 'sender']) expect(count(n), n).toBe(1);
      for (const n of DKIM_HEADER_LIST.split(':')) expect(count(n), n).toBeGreaterThanOrEqual(1);
    }
  });

  it('still verifies after a relay adds trace fields it does not cover', async () => {
    const { input, resolver } = keys();
    const raw = prependHeader(await signMessage(input), 'Received: from mailward by relay.example; Thu, 1 Jan 2026 00:00:00 +0000');
    expect(await verify(raw, resolver)).toEqual([
      ['ed25519-sha256', 'pass'],
      ['rsa-sha256', 'pass'],
    ]);
  });

  const forged = [
    ['a second From: at the end', (r: Buffer) => appendHeader(r, 'From: Billing <billing@attacker.example>')],
    ['a second From: at the top', (r: Buffer) => prependHeader(r, 'From: Billing <billing@attacker.example>')],
    ['a second Subject:', (r: Buffer) => appendHeader(r, 'Subject: Urgent: confirm your bank details')],
    ['a second Subject: at the top', (r: Buffer) => prependHeader(r, 'Subject: Urgent: confirm your bank details')],
    ['a second X-Agent-Identity:', (r: Buffer) => prependHeader(r, 'X-Agent-Identity: eyJhbGciOiJub25lIn0.e30.')],
    ['a Reply-To: that was absent', (r: Buffer) => appendHeader(r, 'Reply-To: <collect@attacker.example>')],
    ['a second To:', (r: Buffer) => appendHeader(r, 'To: <someone@else.example>')],
  ] as const;
  for (const [what, tamper] of forged) {
    it(`breaks both signatures when ${what} is added after signing`, async () => {
      const { input, resolver } = keys();
      const raw = await signMessage(input);
      const results = await verify(tamper(raw), resolver);
      expect(results).toHaveLength(2);
      // mailauth reports header tampering as fail/neutral: anything but pass is a failure (PITFALLS.md).
      for (const [, result] of results) expect(result).not.toBe('pass');
    });
  }
});
