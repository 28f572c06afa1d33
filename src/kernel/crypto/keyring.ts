import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { AppError } from '../errors.js';

/**
 * The key-encryption-key (KEK) ring. Data keys are wrapped with AES-256-GCM
 * under a KEK named by version; the stored form names the version, so old
 * ciphertexts keep working while a new KEK is active (key rotation).
 * A KMS can implement the same interface; only the local ring exists today.
 */
export type WrappedKey = { kv: string; iv: string; ct: string; tag: string };
/** A wrapped key with its fields as bytes (the binary sealed format holds them so: no base64 round trip on each open). */
export type WrappedKeyBytes = { kv: string; iv: Buffer; ct: Buffer; tag: Buffer };
const bytesOf = (v: string | Buffer) => (typeof v === 'string' ? Buffer.from(v, 'base64') : v);

export type KeyRing = {
  activeVersion: string;
  versions: () => string[];
  wrap: (dataKey: Buffer, context: string) => WrappedKey;
  unwrap: (wrapped: WrappedKey | WrappedKeyBytes, context: string) => Buffer;
  /** A public, non-secret fingerprint of a KEK: lets start-up detect a wrong master key. */
  fingerprint: (version: string) => string;
};

export type KekEntry = { version: string; key: Buffer };

const WRAP_AAD_PREFIX = 'mailward/kek-wrap/v1|';

export const createLocalKeyRing = (entries: KekEntry[], active?: string): KeyRing => {
  if (entries.length === 0) throw new AppError('master_key_missing', 500, 'No key-encryption key is configured.');
  const byVersion = new Map<string, Buffer>();
  for (const e of entries) {
    if (e.key.length !== 32) {
      throw new AppError('master_key_invalid', 500, `Key-encryption key ${e.version} must be 32 bytes.`);
    }
    byVersion.set(e.version, e.key);
  }
  const activeVersion = active ?? entries[entries.length - 1]!.version;
  if (!byVersion.has(activeVersion)) {
    throw new AppError('master_key_invalid', 500, `Active key-encryption key ${activeVersion} is not in the ring.`);
  }
  const kek = (v: string) => {
    const k = byVersion.get(v);
    if (!k) throw new AppError('kek_unknown', 500, `Key-encryption key version ${v} is not available.`);
    return k;
  };
  return {
    activeVersion,
    versions: () => [...byVersion.keys()],
    wrap: (dataKey, context) => {
      const iv = randomBytes(12);
      const c = createCipheriv('aes-256-gcm', kek(activeVersion), iv);
      c.setAAD(Buffer.from(WRAP_AAD_PREFIX + context));
      const ct = Buffer.concat([c.update(dataKey), c.final()]);
      return {
        kv: activeVersion,
        iv: iv.toString('base64'),
        ct: ct.toString('base64'),
        tag: c.getAuthTag().toString('base64'),
      };
    },
    unwrap: (w, context) => {
      try {
        const d = createDecipheriv('aes-256-gcm', kek(w.kv), bytesOf(w.iv));
        d.setAAD(Buffer.from(WRAP_AAD_PREFIX + context));
        d.setAuthTag(bytesOf(w.tag));
        const key = d.update(bytesOf(w.ct));
        // GCM is a stream mode: final() adds no bytes, it checks the tag (and throws when it does not match).
        try {
          d.final();
        } catch (e) {
          key.fill(0);
          throw e;
        }
        return key;
      } catch (e) {
        if (e instanceof AppError) throw e;
        throw new AppError('decrypt_failed', 500, 'A data key failed to unwrap: wrong key or tampered data.', {
          cause: e,
        });
      }
    },
    fingerprint: (v) => createHash('sha256').update('mailward/kek-fingerprint/v1|').update(kek(v)).digest('base64url').slice(0, 22),
  };
};
