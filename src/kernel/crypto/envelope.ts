import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { AppError } from '../errors.js';
import type { KeyRing, WrappedKey, WrappedKeyBytes } from './keyring.js';

/**
 * Envelope encryption: a fresh 256-bit data key per sealed value, AES-256-GCM
 * with a random 96-bit nonce (NIST SP 800-38D), associated data binding the
 * ciphertext to its owner (so a copy moved elsewhere fails), the data key
 * wrapped under the ring's active KEK.
 *
 * Stored form, version 2 (binary, kept in BLOB / bytea columns; every length
 * is fixed except the key version and the payload):
 *
 *   offset  size  field
 *   0       1     format version 0x02 (a v1 value starts with '{' = 0x7b)
 *   1       1     flags: bit 0 = the plaintext was deflated (RFC 1951, raw) before sealing; other bits 0
 *   2       1     L = length of the key version (1..32)
 *   3       L     key-encryption key version, ASCII [0-9A-Za-z._-]
 *   3+L     12    nonce of the data-key wrap
 *   15+L    32    wrapped data key (AES-256-GCM under the KEK, src/kernel/crypto/keyring.ts)
 *   47+L    16    tag of the data-key wrap
 *   63+L    12    nonce of the payload
 *   75+L    n     payload ciphertext
 *   75+L+n  16    payload tag
 *
 * The payload's GCM associated data is bytes 0..1 (version and flags) followed
 * by the UTF-8 associated data of the owner, so flipping the compression flag
 * fails authentication. 91+L bytes of overhead (92 for key version "1").
 *
 * Version 1 (still opened; key rotation rewrites it as version 2) is the JSON
 * text {"v":1,"alg":"A256GCM","dk":{kv,iv,ct,tag},"iv":..,"ct":..,"tag":..}
 * with base64 fields, whose payload associated data is the owner's alone.
 */
export type Sealed = { v: 1; alg: 'A256GCM'; dk: WrappedKey; iv: string; ct: string; tag: string };

/** A stored sealed value as a store returns it: bytes (v2, or a v1 value in a bytea column) or v1 JSON text (SQLite TEXT). */
export type SealedValue = Buffer | string;

export const SEALED_V2 = 0x02;
const FLAG_DEFLATE = 0x01;
const KV_RE = /^[0-9A-Za-z._-]{1,32}$/;

export type SealOptions = {
  /**
   * Deflate the plaintext before sealing, kept only when it is smaller.
   * Compress-then-encrypt leaks the compressed length; that matters only when
   * an attacker both injects text next to a secret and watches the length of
   * each result (CRIME). Values at rest are not observed that way, so it is
   * allowed for data at rest (message parts), never for values on the wire.
   */
  compress?: boolean;
};

const malformed = (cause?: unknown) =>
  new AppError('decrypt_failed', 500, 'Stored ciphertext is not in the sealed format.', cause === undefined ? {} : { cause });

/** The parsed form of either version; `flags` is 0 for v1. */
type Parsed = { version: 1 | 2; flags: number; dk: WrappedKey | WrappedKeyBytes; iv: Buffer; ct: Buffer; tag: Buffer };

const base64Key = (dk: WrappedKey | WrappedKeyBytes): WrappedKey =>
  typeof dk.iv === 'string'
    ? (dk as WrappedKey)
    : { kv: dk.kv, iv: dk.iv.toString('base64'), ct: (dk.ct as Buffer).toString('base64'), tag: (dk.tag as Buffer).toString('base64') };

const parseV2 = (b: Buffer): Parsed => {
  if (b.length < 3) throw malformed();
  const flags = b[1]!;
  const l = b[2]!;
  if ((flags & ~FLAG_DEFLATE) !== 0 || l < 1 || l > 32 || b.length < 91 + l) throw malformed();
  const kv = b.subarray(3, 3 + l).toString('latin1');
  if (!KV_RE.test(kv)) throw malformed();
  let o = 3 + l;
  const take = (n: number) => {
    const s = b.subarray(o, o + n);
    o += n;
    return s;
  };
  const dk: WrappedKeyBytes = { kv, iv: take(12), ct: take(32), tag: take(16) };
  const iv = take(12);
  const ct = b.subarray(o, b.length - 16);
  const tag = b.subarray(b.length - 16);
  return { version: 2, flags, dk, iv, ct, tag };
};

const isB64 = (v: unknown, bytes?: number): boolean => {
  if (typeof v !== 'string') return false;
  const b = Buffer.from(v, 'base64');
  return b.toString('base64') === v && (bytes === undefined || b.length === bytes);
};

const parseV1 = (stored: string): Sealed => {
  let s: unknown;
  try {
    s = JSON.parse(stored);
  } catch (e) {
    throw malformed(e);
  }
  const o = s as Partial<Sealed>;
  if (o?.v !== 1 || o.alg !== 'A256GCM' || !o.dk || !o.iv || !o.ct || !o.tag) throw malformed();
  const dk = o.dk as Partial<WrappedKey>;
  // Base64 decoding ignores stray characters and the spare bits of the last
  // character, so a flipped byte there could go unnoticed: accept only the
  // canonical encoding we wrote, at the exact lengths (96-bit nonces, 128-bit tags, 256-bit data key).
  if (
    typeof dk.kv !== 'string' ||
    !KV_RE.test(dk.kv) ||
    !isB64(dk.iv, 12) ||
    !isB64(dk.ct, 32) ||
    !isB64(dk.tag, 16) ||
    !isB64(o.iv, 12) ||
    !isB64(o.tag, 16) ||
    !isB64(o.ct)
  ) {
    throw malformed();
  }
  return o as Sealed;
};

const parse = (stored: SealedValue): Parsed => {
  if (Buffer.isBuffer(stored) && stored[0] === SEALED_V2) return parseV2(stored);
  // A v1 value: JSON text, or its UTF-8 bytes in a bytea column (migration 0038 changed the type, not the values).
  const s = parseV1(Buffer.isBuffer(stored) ? stored.toString('utf8') : stored);
  return {
    version: 1,
    flags: 0,
    dk: s.dk,
    iv: Buffer.from(s.iv, 'base64'),
    ct: Buffer.from(s.ct, 'base64'),
    tag: Buffer.from(s.tag, 'base64'),
  };
};

/** The format version of a stored value (1 JSON text, 2 binary); throws decrypt_failed when it is neither. */
export const sealedVersion = (stored: SealedValue): 1 | 2 => parse(stored).version;

/** The key-encryption key version a stored value's data key is wrapped under (no decryption). */
export const sealedKeyVersion = (stored: SealedValue): string => parse(stored).dk.kv;

/** The wrapped data key of a stored value of either version (no decryption). */
export const parseSealed = (stored: SealedValue): { dk: WrappedKey } => ({ dk: base64Key(parse(stored).dk) });

const payloadAad = (version: 1 | 2, flags: number, aad: string) =>
  version === 1 ? Buffer.from(aad) : Buffer.concat([Buffer.from([SEALED_V2, flags]), Buffer.from(aad)]);

const encode = (flags: number, dk: WrappedKey, iv: Buffer, ct: Buffer, tag: Buffer): Buffer => {
  const kv = Buffer.from(dk.kv, 'latin1');
  return Buffer.concat([
    Buffer.from([SEALED_V2, flags, kv.length]),
    kv,
    Buffer.from(dk.iv, 'base64'),
    Buffer.from(dk.ct, 'base64'),
    Buffer.from(dk.tag, 'base64'),
    iv,
    ct,
    tag,
  ]);
};

/**
 * Seals with a given data key and nonce. Exported for the known-answer test
 * (test/vectors/sealed/); everything else calls `seal`, which draws both at random.
 */
export const sealWith = (
  ring: KeyRing,
  dataKey: Buffer,
  iv: Buffer,
  plaintext: Buffer | string,
  aad: string,
  opts: SealOptions = {},
): Buffer => {
  let pt = typeof plaintext === 'string' ? Buffer.from(plaintext) : plaintext;
  let flags = 0;
  if (opts.compress) {
    const z = deflateRawSync(pt);
    if (z.length < pt.length) {
      pt = z;
      flags |= FLAG_DEFLATE;
    }
  }
  const c = createCipheriv('aes-256-gcm', dataKey, iv);
  c.setAAD(payloadAad(2, flags, aad));
  const ct = Buffer.concat([c.update(pt), c.final()]);
  return encode(flags, ring.wrap(dataKey, aad), iv, ct, c.getAuthTag());
};

/** Seals `plaintext` for the owner named by `aad`; returns the v2 binary form. */
export const seal = (ring: KeyRing, plaintext: Buffer | string, aad: string, opts: SealOptions = {}): Buffer => {
  const dataKey = randomBytes(32);
  try {
    return sealWith(ring, dataKey, randomBytes(12), plaintext, aad, opts);
  } finally {
    dataKey.fill(0);
  }
};

/** Opens a stored value of either version. Throws 500 decrypt_failed (malformed, wrong key, tampered, wrong owner). */
export const open = (ring: KeyRing, stored: SealedValue, aad: string): Buffer => {
  const s = parse(stored);
  const dataKey = ring.unwrap(s.dk, aad);
  let pt: Buffer | undefined;
  try {
    const d = createDecipheriv('aes-256-gcm', dataKey, s.iv);
    d.setAAD(payloadAad(s.version, s.flags, aad));
    d.setAuthTag(s.tag);
    pt = d.update(s.ct);
    // GCM adds nothing at final(): it checks the tag and throws when the data or its associated data changed.
    d.final();
  } catch (e) {
    // Unauthenticated plaintext is never returned, and not left in memory either.
    pt?.fill(0);
    throw new AppError('decrypt_failed', 500, 'Decryption failed: wrong key or tampered data.', { cause: e });
  } finally {
    dataKey.fill(0);
  }
  if ((s.flags & FLAG_DEFLATE) === 0) return pt;
  try {
    return inflateRawSync(pt);
  } catch (e) {
    throw new AppError('decrypt_failed', 500, 'A sealed value did not decompress.', { cause: e });
  }
};

/**
 * Re-wraps the data key under the ring's active KEK and returns the v2 form.
 * A v2 value keeps its payload bytes; a v1 value is opened and sealed again
 * under the same data key (its payload associated data differs between the
 * versions) with a fresh nonce, so rotation moves old values to the binary form.
 */
export const rewrap = (ring: KeyRing, stored: SealedValue, aad: string): Buffer => {
  const s = parse(stored);
  const dataKey = ring.unwrap(s.dk, aad);
  try {
    if (s.version === 2) return encode(s.flags, ring.wrap(dataKey, aad), s.iv, s.ct, s.tag);
    return sealWith(ring, dataKey, randomBytes(12), open(ring, stored, aad), aad);
  } finally {
    dataKey.fill(0);
  }
};
