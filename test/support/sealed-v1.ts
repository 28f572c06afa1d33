import { createCipheriv, randomBytes } from 'node:crypto';
import type { Sealed } from '../../src/kernel/crypto/envelope.js';
import type { KeyRing } from '../../src/kernel/crypto/keyring.js';

/**
 * Seals in the v1 JSON text form that Mailward wrote before migration 0038
 * (src/kernel/crypto/envelope.ts documents it): for tests of reading and
 * rotating old values.
 */
export const sealV1ForTests = (ring: KeyRing, plaintext: Buffer | string, aad: string): string => {
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
