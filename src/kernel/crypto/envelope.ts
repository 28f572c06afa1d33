import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { AppError } from '../errors.js';
import type { KeyRing, WrappedKey } from './keyring.js';

/**
 * Envelope encryption: a fresh 256-bit data key per sealed value, AES-256-GCM
 * with a random 96-bit nonce (NIST SP 800-38D), associated data binding the
 * ciphertext to its owner (so a copy moved elsewhere fails), the data key
 * wrapped under the ring's active KEK. The stored form is self-describing JSON:
 * {"v":1,"alg":"A256GCM","dk":{kv,iv,ct,tag},"iv":..,"ct":..,"tag":..}.
 */
export type Sealed = { v: 1; alg: 'A256GCM'; dk: WrappedKey; iv: string; ct: string; tag: string };

export const seal = (ring: KeyRing, plaintext: Buffer | string, aad: string): string => {
  const dataKey = randomBytes(32);
  try {
    const iv = randomBytes(12);
    const c = createCipheriv('aes-256-gcm', dataKey, iv);
    c.setAAD(Buffer.from(aad));
    const ct = Buffer.concat([c.update(typeof plaintext === 'string' ? Buffer.from(plaintext) : plaintext), c.final()]);
    const sealed: Sealed = {
      v: 1,
      alg: 'A256GCM',
      dk: ring.wrap(dataKey, aad),
      iv: iv.toString('base64'),
      ct: ct.toString('base64'),
      tag: c.getAuthTag().toString('base64'),
    };
    return JSON.stringify(sealed);
  } finally {
    dataKey.fill(0);
  }
};

const isB64 = (v: unknown, bytes?: number): boolean => {
  if (typeof v !== 'string') return false;
  const b = Buffer.from(v, 'base64');
  return b.toString('base64') === v && (bytes === undefined || b.length === bytes);
};

export const parseSealed = (stored: string): Sealed => {
  let s: unknown;
  try {
    s = JSON.parse(stored);
  } catch (e) {
    throw new AppError('decrypt_failed', 500, 'Stored ciphertext is not in the sealed format.', { cause: e });
  }
  const o = s as Partial<Sealed>;
  if (o?.v !== 1 || o.alg !== 'A256GCM' || !o.dk || !o.iv || !o.ct || !o.tag) {
    throw new AppError('decrypt_failed', 500, 'Stored ciphertext is not in the sealed format.');
  }
  const dk = o.dk as Partial<WrappedKey>;
  // Base64 decoding ignores stray characters and the spare bits of the last
  // character, so a flipped byte there could go unnoticed: accept only the
  // canonical encoding we wrote, at the exact lengths (96-bit nonces, 128-bit tags, 256-bit data key).
  if (
    typeof dk.kv !== 'string' ||
    !/^[0-9A-Za-z._-]{1,32}$/.test(dk.kv) ||
    !isB64(dk.iv, 12) ||
    !isB64(dk.ct, 32) ||
    !isB64(dk.tag, 16) ||
    !isB64(o.iv, 12) ||
    !isB64(o.tag, 16) ||
    !isB64(o.ct)
  ) {
    throw new AppError('decrypt_failed', 500, 'Stored ciphertext is not in the sealed format.');
  }
  return o as Sealed;
};

export const open = (ring: KeyRing, stored: string, aad: string): Buffer => {
  const s = parseSealed(stored);
  const dataKey = ring.unwrap(s.dk, aad);
  try {
    const d = createDecipheriv('aes-256-gcm', dataKey, Buffer.from(s.iv, 'base64'));
    d.setAAD(Buffer.from(aad));
    d.setAuthTag(Buffer.from(s.tag, 'base64'));
    return Buffer.concat([d.update(Buffer.from(s.ct, 'base64')), d.final()]);
  } catch (e) {
    throw new AppError('decrypt_failed', 500, 'Decryption failed: wrong key or tampered data.', { cause: e });
  } finally {
    dataKey.fill(0);
  }
};

/** Re-wraps only the data key under the ring's active KEK; the payload is untouched. */
export const rewrap = (ring: KeyRing, stored: string, aad: string): string => {
  const s = parseSealed(stored);
  const dataKey = ring.unwrap(s.dk, aad);
  try {
    return JSON.stringify({ ...s, dk: ring.wrap(dataKey, aad) } satisfies Sealed);
  } finally {
    dataKey.fill(0);
  }
};
