import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { open, seal } from '../kernel/crypto/envelope.js';
import { createLocalKeyRing, type KeyRing } from '../kernel/crypto/keyring.js';
import { createDataKeyCache } from './data-key-cache.js';

/** A real local ring whose unwraps are counted, and whose returned buffers are kept to check they get zeroed. */
const countingRing = (versions = ['1']) => {
  const real = createLocalKeyRing(versions.map((version) => ({ version, key: randomBytes(32) })));
  let live = [...versions];
  const returned: Buffer[] = [];
  const ring: KeyRing = {
    get activeVersion() {
      return real.activeVersion;
    },
    versions: () => live,
    wrap: real.wrap,
    unwrap: (w, context) => {
      if (!live.includes(w.kv)) throw new Error('kek_unknown');
      const k = real.unwrap(w, context);
      returned.push(k);
      return k;
    },
    fingerprint: real.fingerprint,
  };
  return { ring, returned, retire: (v: string) => (live = live.filter((x) => x !== v)) };
};

const isZero = (b: Buffer) => b.every((x) => x === 0);

describe('data-key cache', () => {
  it('unwraps a sealed value once while its key is cached, and every open still authenticates the payload', () => {
    const { ring, returned } = countingRing();
    const cache = createDataKeyCache(ring, { ttlMs: 60_000, maxEntries: 8 });
    const sealed = seal(ring, 'seed', 'owner-a');
    for (let i = 0; i < 5; i++) expect(open(cache.ring, sealed, 'owner-a').toString()).toBe('seed');
    expect(returned).toHaveLength(1);
    // open zeroes its copy after use; the cached key is intact.
    expect(isZero(returned[0]!)).toBe(false);
    // A payload changed under the same wrapped key: a hit, and the payload's tag still refuses it.
    const tampered = Buffer.from(sealed);
    tampered[tampered.length - 20]! ^= 1;
    expect(() => open(cache.ring, tampered, 'owner-a')).toThrow(/Decryption failed/);
    // Another owner is another cache key: the ring refuses the wrap's associated data.
    expect(() => open(cache.ring, sealed, 'owner-b')).toThrow();
    expect(returned).toHaveLength(1);
  });

  it('zeroes a key when it expires, on the next use and by its timer', async () => {
    const { ring, returned } = countingRing();
    let t = 1_000;
    const cache = createDataKeyCache(ring, { ttlMs: 50, maxEntries: 8 }, () => t);
    const a = seal(ring, 'a', 'x');
    open(cache.ring, a, 'x');
    t += 50;
    open(cache.ring, a, 'x');
    expect(returned).toHaveLength(2);
    expect(isZero(returned[0]!)).toBe(true);
    expect(isZero(returned[1]!)).toBe(false);
    // No more requests: the timer evicts it once its time has passed.
    t += 50;
    const deadline = Date.now() + 5_000;
    while (cache.size() > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(cache.size()).toBe(0);
    expect(isZero(returned[1]!)).toBe(true);
  });

  it('holds at most maxEntries keys, zeroing the oldest', () => {
    const { ring, returned } = countingRing();
    const cache = createDataKeyCache(ring, { ttlMs: 60_000, maxEntries: 2 });
    for (const v of ['a', 'b', 'c']) open(cache.ring, seal(ring, v, v), v);
    expect(cache.size()).toBe(2);
    expect(returned.map(isZero)).toEqual([true, false, false]);
    cache.clear();
    expect(cache.size()).toBe(0);
    expect(returned.every(isZero)).toBe(true);
  });

  it('stops answering from the cache once the ring no longer holds the key-encryption key', () => {
    const { ring, returned, retire } = countingRing(['1', '2']);
    const cache = createDataKeyCache(ring, { ttlMs: 60_000, maxEntries: 8 });
    // Sealed under the active version 2.
    const sealed = seal(ring, 'v', 'o');
    open(cache.ring, sealed, 'o');
    retire('2');
    expect(() => open(cache.ring, sealed, 'o')).toThrow(/kek_unknown/);
    expect(isZero(returned[0]!)).toBe(true);
    expect(cache.size()).toBe(0);
  });

  it('with maxEntries 0 keeps nothing', () => {
    const { ring, returned } = countingRing();
    const cache = createDataKeyCache(ring, { ttlMs: 60_000, maxEntries: 0 });
    const sealed = seal(ring, 'v', 'o');
    open(cache.ring, sealed, 'o');
    open(cache.ring, sealed, 'o');
    expect(returned).toHaveLength(2);
    expect(cache.size()).toBe(0);
  });
});
