import { createHmac } from 'node:crypto';
import { Secret, TOTP, URI } from 'otpauth';
import { unprocessable } from '../kernel/errors.js';

export const TOTP_ALGORITHMS = ['SHA1', 'SHA256', 'SHA512'] as const;
export type TotpAlgorithm = (typeof TOTP_ALGORITHMS)[number];

/** What is sealed for a `totp` secret: the seed (base32) and its parameters. Never leaves the service. */
export type TotpSeed = { secret: string; algorithm: TotpAlgorithm; digits: number; period: number };

// RFC 4226 section 4 R6 asks for at least 128 bits and recommends 160; many
// deployed authenticators still issue 80-bit seeds, so 80 bits is the floor.
const MIN_SEED_BYTES = 10;
const MAX_SEED_BYTES = 128;

const normalizeBase32 = (s: string) => s.replace(/[\s-]/g, '').replace(/=+$/, '').toUpperCase();

/**
 * Validates and normalises a TOTP seed. Throws 422 invalid_totp with a message
 * that never repeats the seed.
 */
export const parseTotpSeed = (input: {
  secret: string;
  algorithm?: string | undefined;
  digits?: number | undefined;
  period?: number | undefined;
}): TotpSeed => {
  const secret = normalizeBase32(input.secret);
  if (!/^[A-Z2-7]+$/.test(secret)) throw unprocessable('invalid_totp', 'The TOTP seed must be base32 (RFC 4648 alphabet A-Z, 2-7).');
  const bytes = Secret.fromBase32(secret).bytes.length;
  if (bytes < MIN_SEED_BYTES || bytes > MAX_SEED_BYTES) {
    throw unprocessable('invalid_totp', `The TOTP seed must be ${MIN_SEED_BYTES} to ${MAX_SEED_BYTES} bytes long.`);
  }
  const algorithm = (input.algorithm ?? 'SHA1').toUpperCase().replace('-', '');
  if (!(TOTP_ALGORITHMS as readonly string[]).includes(algorithm)) {
    throw unprocessable('invalid_totp', `The TOTP algorithm must be one of ${TOTP_ALGORITHMS.join(', ')}.`);
  }
  const digits = input.digits ?? 6;
  if (!Number.isInteger(digits) || digits < 6 || digits > 8) throw unprocessable('invalid_totp', 'TOTP digits must be 6, 7 or 8.');
  const period = input.period ?? 30;
  if (!Number.isInteger(period) || period < 1 || period > 300) {
    throw unprocessable('invalid_totp', 'The TOTP period must be 1 to 300 seconds.');
  }
  return { secret, algorithm: algorithm as TotpAlgorithm, digits, period };
};

/**
 * Reads an `otpauth://totp/...` key URI (the Google Authenticator format).
 * HOTP URIs are refused: a counter would have to be stored and advanced.
 */
export const parseOtpauthUri = (uri: string): TotpSeed => {
  let otp: ReturnType<typeof URI.parse>;
  try {
    otp = URI.parse(uri);
  } catch {
    // The library's message may quote the URI, which holds the seed.
    throw unprocessable('invalid_totp', 'The otpauth URI could not be parsed.');
  }
  if (!(otp instanceof TOTP)) throw unprocessable('invalid_totp', 'Only otpauth://totp/ URIs are supported, not hotp.');
  return parseTotpSeed({ secret: otp.secret.base32, algorithm: otp.algorithm, digits: otp.digits, period: otp.period });
};

const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/** RFC 4648 base32 (already normalised by parseTotpSeed) to bytes. */
const base32Bytes = (s: string): Buffer => {
  const out = Buffer.alloc(Math.floor((s.length * 5) / 8));
  let bits = 0;
  let acc = 0;
  let n = 0;
  for (const ch of s) {
    const v = BASE32.indexOf(ch);
    if (v < 0) throw new Error('not base32');
    acc = ((acc << 5) | v) & 0xffff;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out[n++] = (acc >> bits) & 0xff;
    }
  }
  return out;
};

const HMAC_OF: Record<TotpAlgorithm, string> = { SHA1: 'sha1', SHA256: 'sha256', SHA512: 'sha512' };

/**
 * RFC 6238 section 4: the code for time `at`, and when its time step ends.
 * HOTP (RFC 4226 section 5.3) with node's HMAC: counter = whole periods since
 * the epoch, dynamic truncation, modulo 10^digits. The key bytes are zeroed
 * after use. Checked against RFC 6238 Appendix B, RFC 4226 Appendix D and oathtool.
 */
export const totpCode = (seed: TotpSeed, at: Date): { code: string; expiresAt: Date } => {
  const stepMs = seed.period * 1000;
  const step = Math.floor(at.getTime() / stepMs);
  const counter = Buffer.alloc(8);
  counter.writeUInt32BE(Math.floor(step / 2 ** 32), 0);
  counter.writeUInt32BE(step % 2 ** 32, 4);
  const key = base32Bytes(seed.secret);
  let mac: Buffer;
  try {
    mac = createHmac(HMAC_OF[seed.algorithm], key).update(counter).digest();
  } finally {
    key.fill(0);
  }
  const offset = mac[mac.length - 1]! & 0x0f;
  const binary = ((mac[offset]! & 0x7f) << 24) | (mac[offset + 1]! << 16) | (mac[offset + 2]! << 8) | mac[offset + 3]!;
  mac.fill(0);
  const code = String(binary % 10 ** seed.digits).padStart(seed.digits, '0');
  return { code, expiresAt: new Date(step * stepMs + stepMs) };
};
