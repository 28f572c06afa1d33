import { generateKeyPairSync } from 'node:crypto';
import fc from 'fast-check';
import { dkimSign } from 'mailauth/lib/dkim/sign.js';
import { describe, expect, it } from 'vitest';
import { classifySmtpError } from '../src/mail/bounce-rules.js';
import { createSigningPool } from '../src/mail/signing-pool.js';
import { signMessage } from '../src/mail/sign-message.js';
import { foldedHeader, headerValue, relaxedBody, relaxedBodyHash } from '../src/mail/mime.js';
import { isLoosening, outboundDecision } from '../src/oversight/oversight-modes.js';
import { DEFAULT_RETRY_SCHEDULE_SECONDS, nextRetryDelay } from '../src/mail/retry-schedule.js';

describe('relaxed body canonicalization and the DKIM body hash', () => {
  it('matches the RFC 6376 3.4.5 example', () => {
    // RFC 6376 3.4.5: " C \r\nD \t E\r\n\r\n\r\n" canonicalizes (relaxed) to " C\r\nD E\r\n".
    expect(relaxedBody(Buffer.from(' C \r\nD \t E\r\n\r\n\r\n')).toString()).toBe(' C\r\nD E\r\n');
  });

  it('hashes an empty body to the well-known SHA-256 of nothing', () => {
    expect(relaxedBodyHash(Buffer.alloc(0))).toBe('47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=');
  });

  it('agrees with the bh= mailauth computes when signing', async () => {
    const { privateKey } = generateKeyPairSync('ed25519');
    const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    await fc.assert(
      fc.asyncProperty(fc.array(fc.stringMatching(/^[ -~\t]{0,40}$/), { maxLength: 8 }), async (lines) => {
        const body = lines.join('\r\n');
        const raw = Buffer.from(`From: a@b.example\r\nSubject: x\r\n\r\n${body}`);
        const r = await dkimSign(raw, {
          canonicalization: 'relaxed/relaxed',
          signatureData: [{ signingDomain: 'b.example', selector: 's', privateKey: pem, algorithm: 'ed25519-sha256' }],
        } as never);
        const bh = /bh=([^;]+);/.exec(r.signatures.replace(/\r\n\s+/g, ''))![1]!.trim();
        expect(relaxedBodyHash(Buffer.from(body))).toBe(bh);
      }),
      { numRuns: 40 },
    );
  });
});

describe('header folding', () => {
  it('keeps every line of a long token short and unfolds back to the token', () => {
    const token = 'a'.repeat(1500);
    const h = foldedHeader('X-Agent-Identity', token);
    for (const line of h.split('\r\n')) expect(line.length).toBeLessThanOrEqual(78);
    expect(headerValue(h, 'X-Agent-Identity')!.replace(/\s+/g, '')).toBe(token);
  });
});

describe('bounce rules and the retry schedule', () => {
  it('defers 4xx, connection and TLS failures and bounces 5xx', () => {
    expect(classifySmtpError({ responseCode: 451, response: '451 4.3.0 later' })).toMatchObject({ kind: 'defer', code: 451 });
    expect(classifySmtpError({ responseCode: 550, response: '550 5.1.1 unknown user' })).toMatchObject({
      kind: 'bounce',
      category: 'recipient',
    });
    expect(classifySmtpError({ responseCode: 554, response: '554 5.7.1 rejected' })).toMatchObject({ kind: 'bounce', category: 'policy' });
    expect(classifySmtpError({ code: 'ECONNECTION' })).toMatchObject({ kind: 'defer', category: 'connection' });
    expect(classifySmtpError({ code: 'ETLS', responseCode: 502 })).toMatchObject({ kind: 'defer', category: 'tls' });
  });

  it('walks the schedule and then gives up', () => {
    expect(nextRetryDelay(DEFAULT_RETRY_SCHEDULE_SECONDS, 1)).toBe(60);
    expect(nextRetryDelay([5, 10], 2)).toBe(10);
    expect(nextRetryDelay([5, 10], 3)).toBeNull();
  });
});

describe('oversight modes', () => {
  it('orders modes from autonomous to read_only and decides outbound handling', () => {
    expect(isLoosening('gated_send', 'autonomous')).toBe(true);
    expect(isLoosening('monitored', 'gated_all')).toBe(false);
    expect(outboundDecision('read_only')).toEqual({ kind: 'refuse' });
    expect(outboundDecision('gated_all')).toEqual({ kind: 'hold', reasons: [{ code: 'oversight_mode', mode: 'gated_all' }] });
    expect(outboundDecision('monitored')).toEqual({ kind: 'send', copy: true });
  });
});

describe('the signing pool', () => {
  it('signs on a worker thread exactly what the main thread would sign', async () => {
    const pem = (t: 'ed25519' | 'rsa' | 'ec', o: object = {}) =>
      (generateKeyPairSync as (t: string, o: object) => { privateKey: { export: (o: object) => string | Buffer } })(t, o)
        .privateKey.export({ type: 'pkcs8', format: 'pem' })
        .toString();
    const input = {
      content: {
        from: { name: 'Bot', address: 'bot@b.example' },
        to: ['p@c.example'],
        cc: [],
        bcc: [],
        subject: 'Hi',
        text: 'Hello',
        html: null,
        attachments: [],
      },
      threading: { messageId: '<m1@b.example>', inReplyTo: null, references: [] },
      dateMs: Date.UTC(2026, 0, 1),
      domain: 'b.example',
      claims: {
        ai_generated: true as const,
        iss: 'b.example',
        sub: 'agt_1',
        agent_address: 'bot@b.example',
        delegation_chain: [],
        responsible_human: { id: 'hum_1', name: 'H' },
        oversight_mode: 'autonomous',
        approved_by: null,
        approval_id: null,
        message_id: '<m1@b.example>',
        iat: 1,
      },
      attribution: {
        agent: { address: 'bot@b.example', name: 'Bot' },
        responsible: [{ name: 'H', email: 'h@b.example' }],
        operator: 'b.example',
      },
      identityKey: { kid: 'k1', pem: pem('ec', { namedCurve: 'P-256' }) },
      dkim: { ed25519: { selector: 'ed', pem: pem('ed25519') }, rsa: { selector: 'rsa', pem: pem('rsa', { modulusLength: 2048 }) } },
    };
    const pool = createSigningPool({ size: 1 });
    try {
      const viaPool = (await pool.sign(input)).toString();
      expect(pool.usingThreads()).toBe(true);
      const local = (await signMessage(input)).toString();
      expect((viaPool.match(/^DKIM-Signature:/gm) ?? []).length).toBe(2);
      // Same message except the MIME boundary and signature values.
      expect(viaPool).toContain('X-Agent-Identity: ');
      expect(viaPool.split('\r\n\r\n').length).toBe(local.split('\r\n\r\n').length);
    } finally {
      await pool.close();
    }
  });
});
