import { execFileSync } from 'node:child_process';
import { HOTP, Secret } from 'otpauth';
import { describe, expect, it } from 'vitest';
import { readVectorJson } from '../../test/support/vectors.js';
import { parseOtpauthUri, parseTotpSeed, totpCode } from './totp.js';

const b32 = (ascii: string) => new Secret({ buffer: new Uint8Array(Buffer.from(ascii)).buffer }).base32;

type TotpVectors = {
  totp: {
    seeds_ascii: Record<'SHA1' | 'SHA256' | 'SHA512', string>;
    cases: ({ unix_time: number } & Record<'SHA1' | 'SHA256' | 'SHA512', string>)[];
  };
  hotp: { codes_by_counter: string[] };
};
// RFC 6238 Appendix B (T0 = 0, X = 30 s, 8 digits) and RFC 4226 Appendix D (HOTP of the SHA1 seed, 6 digits), vendored.
const V = readVectorJson<TotpVectors>('totp/rfc6238-rfc4226.json');
const SEEDS = V.totp.seeds_ascii;
const RFC6238 = V.totp.cases.map((c) => [c.unix_time, c.SHA1, c.SHA256, c.SHA512] as const);
const RFC4226 = V.hotp.codes_by_counter;

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
            const want = execFileSync(
              'oathtool',
              [
                `--totp=${algorithm.toLowerCase()}`,
                '-d',
                String(digits),
                '-s',
                `${period}s`,
                '-N',
                `${at.toISOString().replace('T', ' ').slice(0, 19)} UTC`,
                Buffer.from(SEEDS[algorithm]).toString('hex'),
              ],
              { encoding: 'utf8' },
            ).trim();
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
