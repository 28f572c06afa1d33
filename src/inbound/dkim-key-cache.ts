import { createPublicKey, type KeyObject } from 'node:crypto';
import { createRequire } from 'node:module';

/** What mailauth's key lookup answers (mailauth/lib/tools.js getPublicKey); `publicKey` is a PEM string there. */
type KeyAnswer = {
  publicKey: string | KeyObject;
  rr: string;
  modulusLength?: number;
  keyType?: string;
  flags?: string[];
  testing?: boolean;
  warnings?: string[];
};
type Resolver = (name: string, rrtype: string) => Promise<unknown>;
type LookupOptions = { strict?: boolean; hashAlgo?: string };
/** mailauth's per-message key cache (tools.js createKeyCache): `resolver` is compared by the ARC code, so it is kept. */
type MessageKeyCache = {
  resolver: Resolver;
  get: (type: string, name: string, minBitLength: number | undefined, options?: LookupOptions) => Promise<KeyAnswer>;
};

const KEY_SLOT = Symbol('mailward.dkimKeyCache');

/**
 * Imported keys shared by every message of this thread. mailauth keeps its key cache per message: for each
 * DKIM-Signature it imports the public key from the DNS record's base64 text, exports it as PEM, and
 * crypto.verify parses that PEM again. Here the answer for one question (lookup type, strict mode, minimum RSA
 * size, hash algorithm, record name) is kept per exact record text (RFC 6376 3.6.1 `p=` and the other tags,
 * whitespace removed as mailauth does), as a node:crypto KeyObject: a record that changes is a new entry,
 * and nothing is decided from a record other than the one DNS answers now. Failed lookups are not kept.
 */
const answers = new Map<string, KeyAnswer>();
const MAX_ANSWERS = 1000;

/** The record text mailauth would read from a TXT answer (tools.js getPublicKey: strings joined, whitespace removed). */
const recordText = (list: unknown): string | null => {
  if (!Array.isArray(list) || list.length === 0) return null;
  const first = list[0] as unknown;
  const parts = Array.isArray(first) ? first : [first];
  if (!parts.every((p) => typeof p === 'string')) return null;
  const rr = (parts as string[]).join('').replace(/\s+/g, '');
  return rr || null;
};

/** The per-message cache wrapped so that answers for an unchanged record come from `answers`. */
const shared = (inner: MessageKeyCache): MessageKeyCache => ({
  resolver: inner.resolver,
  get: async (type, name, minBitLength, options = {}) => {
    // Only plain ASCII names: mailauth converts U-labels first (RFC 8616 3), which this does not repeat.
    if (typeof name !== 'string' || !/^[\x21-\x7e]+$/.test(name)) return inner.get(type, name, minBitLength, options);
    let rr: string | null;
    try {
      // The resolver Mailward passes caches answers (inbound-resolver.ts), so this is the same answer mailauth reads.
      rr = recordText(await inner.resolver(name, 'TXT'));
    } catch {
      rr = null;
    }
    if (rr === null) return inner.get(type, name, minBitLength, options);
    const key = [type, options.strict ? 1 : 0, minBitLength ?? '', options.hashAlgo ?? '', name.toLowerCase(), rr].join('\u0000');
    const hit = answers.get(key);
    if (hit) return { ...hit, flags: [...(hit.flags ?? [])], warnings: [...(hit.warnings ?? [])] };
    const res = await inner.get(type, name, minBitLength, options);
    // Kept only when mailauth read the same record text this key names (a record that changed in between is not kept).
    if (res && typeof res.publicKey === 'string' && res.rr === rr) {
      const pem = res.publicKey;
      const keyObject = createPublicKey(pem);
      // mailauth reports the key as text (`publicKey.toString()` in its DKIM result): the same PEM as before.
      Object.defineProperty(keyObject, 'toString', { value: () => pem });
      if (answers.size >= MAX_ANSWERS) answers.delete(answers.keys().next().value as string);
      answers.set(key, { ...res, publicKey: keyObject });
    }
    return res;
  },
});

let installed = false;

/**
 * Makes mailauth's DKIM and ARC verification in this thread reuse imported public keys across messages (see
 * `answers`). mailauth builds its key cache in the DkimVerifier constructor (`this.keyCache = createKeyCache(...)`);
 * an accessor on the prototype wraps what is assigned there. If a later mailauth stops assigning it that way the
 * accessor is simply never used and every message imports its key as before.
 */
export const installDkimKeyCache = () => {
  if (installed) return;
  installed = true;
  const { DkimVerifier } = createRequire(import.meta.url)('mailauth/lib/dkim/dkim-verifier.js') as {
    DkimVerifier?: { prototype: object };
  };
  if (!DkimVerifier || Object.getOwnPropertyDescriptor(DkimVerifier.prototype, 'keyCache')) return;
  Object.defineProperty(DkimVerifier.prototype, 'keyCache', {
    configurable: true,
    get(this: { [KEY_SLOT]?: MessageKeyCache }) {
      return this[KEY_SLOT];
    },
    set(this: { [KEY_SLOT]?: MessageKeyCache }, v: MessageKeyCache) {
      this[KEY_SLOT] = v && typeof v.get === 'function' && typeof v.resolver === 'function' ? shared(v) : v;
    },
  });
};

/** Test hook: how many answers are kept, and forgetting them. */
export const dkimKeyCacheSize = () => answers.size;
export const clearDkimKeyCache = () => answers.clear();
