import { execFileSync } from 'node:child_process';
import { HOTP, Secret } from 'otpauth';
import { describe, expect, it } from 'vitest';
import { parseOtpauthUri, parseTotpSeed, totpCode } from './totp.js';

const b32 = (ascii: string) => new Secret({ buffer: new Uint8Array(Buffer.from(ascii)).buffer }).base32;

// RFC 6238 Appendix B: T0 = 0, X = 30 s, 8 digits.
const SEEDS = {
  SHA1: '12345678901234567890',
  SHA256: '12345678901234567890123456789012',
  SHA512: '1234567890123456789012345678901234567890123456789012345678901234',
} as const;
const RFC6238: [number, string, string, string][] = [
  [59, '94287082', '46119246', '90693936'],
  [1111111109, '07081804', '68084774', '25091201'],
  [1111111111, '14050471', '67062674', '99943326'],
  [1234567890, '89005924', '91819424', '93441116'],
  [2000000000, '69279037', '90698825', '38618901'],
  [20000000000, '65353130', '77737706', '47863826'],
];

// RFC 4226 Appendix D: HOTP of the SHA1 seed, 6 digits, counters 0-9.
const RFC4226 = ['755224', '287082', '359152', '969429', '338314', '254676', '287922', '162583', '399871', '520489'];

describe('TOTP codes', () => {
  for (const [t, ...codes] of RFC6238) {
    it(`matches RFC 6238 Appendix B at unix time ${t} for SHA1, SHA256 and SHA512`, () => {
      (['SHA1', 'SHA256', 'SHA512'] as const).forEach((algorithm, i) => {
        const seed = parseTotpSeed({ secret: b32(SEEDS[algorithm]), algorithm, digits: 8, period: 30 });
        expect(totpCode(seed, new Date(t * 1000)).code).toBe(codes[i]);
      });
    });
  }

  it('matches RFC 4226 Appendix D: a TOTP with a 1 s period at time c is the HOTP of counter c', () => {
    const seed = parseTotpSeed({ secret: b32(SEEDS.SHA1), digits: 6, period: 1 });
    RFC4226.forEach((want, c) => {
      expect(totpCode(seed, new Date(c * 1000)).code).toBe(want);
      expect(HOTP.generate({ secret: Secret.fromBase32(seed.secret), counter: c })).toBe(want);
    });
  });

  it("agrees with Debian's oathtool for every algorithm, 6 to 8 digits and several periods", () => {
    const times = [0, 59, 1111111109, 1234567890, 1700000000, 2000000000];
    for (const algorithm of ['SHA1', 'SHA256', 'SHA512'] as const) {
      for (const digits of [6, 7, 8]) {
        for (const period of [30, 60]) {
          const seed = parseTotpSeed({ secret: b32(SEEDS[algorithm]), algorithm, digits, period });
          for (const t of times) {
            const at = new Date(t * 1000);
            const want = execFileSync('oathtool', [`--totp=${algorithm.toLowerCase()}`, '-d', String(digits), '-s', `${period}s`, '-N', `${at.toISOString().replace('T', ' ').slice(0, 19)} UTC`, Buffer.from(SEEDS[algorithm]).toString('hex')], { encoding: 'utf8' }).trim();
            expect([algorithm, digits, period, t, totpCode(seed, at).code]).toEqual([algorithm, digits, period, t, want]);
          }
        }
      }
    }
  });

  it('says when a code expires: the end of its time step', () => {
    const seed = parseTotpSeed({ secret: b32(SEEDS.SHA1) });
    expect(totpCode(seed, new Date('2009-02-13T23:31:30.500Z')).expiresAt.toISOString()).toBe('2009-02-13T23:32:00.000Z');
    expect(totpCode(seed, new Date('2009-02-13T23:31:59.999Z')).expiresAt.toISOString()).toBe('2009-02-13T23:32:00.000Z');
  });

  it('reads otpauth URIs and refuses HOTP, bad seeds and parameters without quoting the seed', () => {
    const s = parseOtpauthUri(`otpauth://totp/ACME:a?secret=${b32(SEEDS.SHA256)}&algorithm=SHA256&digits=7&period=45`);
    expect(s).toEqual({ secret: b32(SEEDS.SHA256), algorithm: 'SHA256', digits: 7, period: 45 });
    expect(parseTotpSeed({ secret: 'gezd gnbv gy3t qojq gezd gnbv gy3t qojq' }).secret).toBe(b32(SEEDS.SHA1));
    const refusals = [
      () => parseOtpauthUri(`otpauth://hotp/a?secret=${b32(SEEDS.SHA1)}&counter=3`),
      () => parseOtpauthUri('otpauth://totp/a?secret=SECRETSEED1!'),
      () => parseTotpSeed({ secret: 'GEZDGNBV' }),
      () => parseTotpSeed({ secret: b32(SEEDS.SHA1), algorithm: 'MD5' }),
      () => parseTotpSeed({ secret: b32(SEEDS.SHA1), digits: 5 }),
      () => parseTotpSeed({ secret: b32(SEEDS.SHA1), period: 0 }),
    ];
    for (const f of refusals) {
      try {
        f();
        expect.unreachable();
      } catch (err) {
        const e = err as { code: string; detail: string };
        expect(e.code).toBe('invalid_totp');
        expect(e.detail).not.toContain('SECRETSEED');
        expect(e.detail).not.toContain(b32(SEEDS.SHA1));
      }
    }
  });
});
