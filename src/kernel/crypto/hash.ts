import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

export const sha256 = (data: Buffer | string): Buffer => createHash('sha256').update(data).digest();
export const sha256Hex = (data: Buffer | string): string => createHash('sha256').update(data).digest('hex');

/** Constant-time comparison of two byte strings of possibly different length. */
export const constantTimeEqual = (a: Buffer, b: Buffer): boolean => {
  if (a.length !== b.length) {
    timingSafeEqual(a, a);
    return false;
  }
  return timingSafeEqual(a, b);
};

export const randomHex = (bytes: number): string => randomBytes(bytes).toString('hex');
