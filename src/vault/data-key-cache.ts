import type { KeyRing, WrappedKey, WrappedKeyBytes } from '../kernel/crypto/keyring.js';

export type DataKeyCacheOptions = {
  /** How long an unwrapped data key may stay in memory after its first unwrap (not extended by hits). */
  ttlMs: number;
  /** Most data keys held at once; the oldest is evicted (and zeroed) first. */
  maxEntries: number;
};

/**
 * Defaults of the vault's data-key cache: a key lives at most a minute after it was unwrapped, and at most
 * 1,024 keys (32 bytes each) are held. A busy agent asking for codes of the same secret unwraps its data key
 * once a minute instead of once per code (README, vault speed).
 */
export const DATA_KEY_CACHE_DEFAULTS: DataKeyCacheOptions = { ttlMs: 60_000, maxEntries: 1024 };

const bytesOf = (v: string | Buffer) => (typeof v === 'string' ? Buffer.from(v, 'base64') : v);

/**
 * The cache key: the KEK version, the wrap's associated data (the owner's AAD) and the wrapped key's bytes
 * (nonce, ciphertext, tag). Unwrapping is a deterministic function of exactly these and the KEK of that version
 * (AES-256-GCM, NIST SP 800-38D), so a hit answers what `unwrap` would: a stored row whose wrapped key, owner or
 * KEK version was changed is a different key and goes to the ring, which refuses it. None of it is secret.
 */
const keyOf = (w: WrappedKey | WrappedKeyBytes, context: string) =>
  `${w.kv}\u0000${context}\u0000${bytesOf(w.iv).toString('latin1')}${bytesOf(w.ct).toString('latin1')}${bytesOf(w.tag).toString('latin1')}`;

type Entry = { key: Buffer; kv: string; expiresAt: number };

/**
 * A key ring whose `unwrap` keeps unwrapped data keys for a bounded time and count: the vault's reads (codes,
 * reveals) open the same sealed version many times a second, and unwrapping its data key is an AES-GCM
 * operation each time. Written here rather than taken from a cache library because every eviction must zero
 * the key's bytes, which general caches do not do.
 *
 * Key hygiene, and why this is acceptable: the key-encryption keys themselves stay in this process's memory for
 * its whole life (src/kernel/crypto/keyring.ts) and unwrap every data key, so a reader of this process's memory
 * gains nothing from the cache it could not compute; what the cache adds is bounded: at most `maxEntries` keys,
 * each for at most `ttlMs` after its unwrap, zeroed when evicted (expiry, count, `clear`), by a timer too, so a
 * key does not outlive its time when no request comes. Every caller receives its own copy (envelope `open`
 * zeroes it after use). A hit is refused when the ring no longer holds the key's KEK version (a retired KEK
 * stops opening at once, as without the cache). Nothing else changes: each read still reads the sealed row and
 * decrypts its payload, and is audited in the same transaction.
 */
export const createDataKeyCache = (ring: KeyRing, opts: DataKeyCacheOptions = DATA_KEY_CACHE_DEFAULTS, now = () => Date.now()) => {
  const entries = new Map<string, Entry>();
  let timer: NodeJS.Timeout | null = null;

  const evict = (id: string, e: Entry) => {
    e.key.fill(0);
    entries.delete(id);
  };

  /** Drops expired keys; entries are in insertion order, which is expiry order (hits do not extend). */
  const sweep = () => {
    const t = now();
    for (const [id, e] of entries) {
      if (e.expiresAt > t) break;
      evict(id, e);
    }
  };

  const schedule = () => {
    if (timer || entries.size === 0) return;
    const first = entries.values().next().value as Entry;
    timer = setTimeout(
      () => {
        timer = null;
        sweep();
        schedule();
      },
      Math.max(1, first.expiresAt - now()),
    );
    timer.unref();
  };

  const unwrap = (w: WrappedKey | WrappedKeyBytes, context: string): Buffer => {
    if (opts.maxEntries <= 0 || opts.ttlMs <= 0) return ring.unwrap(w, context);
    const id = keyOf(w, context);
    const hit = entries.get(id);
    if (hit) {
      if (hit.expiresAt > now() && ring.versions().includes(hit.kv)) return Buffer.from(hit.key);
      evict(id, hit);
    }
    const key = ring.unwrap(w, context);
    sweep();
    while (entries.size >= opts.maxEntries) {
      const [oldest, e] = entries.entries().next().value as [string, Entry];
      evict(oldest, e);
    }
    // The cache keeps the ring's buffer; the caller gets a copy, which it zeroes after use.
    entries.set(id, { key, kv: w.kv, expiresAt: now() + opts.ttlMs });
    schedule();
    return Buffer.from(key);
  };

  /** Zeroes and drops every cached key. */
  const clear = () => {
    for (const [id, e] of entries) evict(id, e);
    if (timer) clearTimeout(timer);
    timer = null;
  };

  /** The ring to pass to envelope `open`: `unwrap` cached, everything else the ring's own. */
  const cachingRing: KeyRing = {
    get activeVersion() {
      return ring.activeVersion;
    },
    versions: () => ring.versions(),
    wrap: (dataKey, context) => ring.wrap(dataKey, context),
    unwrap,
    fingerprint: (version) => ring.fingerprint(version),
  };

  return { ring: cachingRing, clear, size: () => entries.size };
};

export type DataKeyCache = ReturnType<typeof createDataKeyCache>;
