import { createHash } from 'node:crypto';

/** RFC 6962 2.1 hashing and the 2.1.1 inclusion check, written from the RFC (no import from the server). */

const sha256 = (...parts: Uint8Array[]): Buffer => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
};

/** RFC 6962 2.1: MTH({d(0)}) = SHA-256(0x00 || d(0)). */
export const leafHash = (leaf: Uint8Array): Buffer => sha256(Buffer.from([0x00]), leaf);

/** RFC 6962 2.1: SHA-256(0x01 || left || right). */
export const nodeHash = (left: Uint8Array, right: Uint8Array): Buffer => sha256(Buffer.from([0x01]), left, right);

/**
 * The root an inclusion proof leads to (RFC 9162 2.1.3.2, the iterative form of
 * RFC 6962 2.1.1), or null when the proof has the wrong length for (index, size).
 */
export const rootFromInclusion = (index: number, size: number, leaf: Uint8Array, proof: Uint8Array[]): Buffer | null => {
  if (!Number.isSafeInteger(index) || !Number.isSafeInteger(size) || index < 0 || index >= size) return null;
  if (proof.some((p) => p.length !== 32)) return null;
  let fn = index;
  let sn = size - 1;
  let r: Buffer = Buffer.from(leaf);
  for (const p of proof) {
    if (sn === 0) return null;
    if (fn % 2 === 1 || fn === sn) {
      r = nodeHash(p, r);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      r = nodeHash(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 ? r : null;
};
