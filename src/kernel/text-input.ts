import { type AppError, badRequest } from './errors.js';

/**
 * Text that no store keeps faithfully is refused where it enters, the same
 * on every dialect:
 * - NUL (U+0000): PostgreSQL `text` cannot hold it (the query fails), while
 *   SQLite stores it, so the two stores would disagree (and C-string readers
 *   of the data truncate at it);
 * - lone surrogates (U+D800-U+DFFF not in a pair) are no Unicode scalar value
 *   (Unicode 15 D76), so they have no UTF-8 form (RFC 3629 3): each driver
 *   silently replaces them, storing something other than what was sent.
 */
export type UnsafeTextCode = 'nul_not_allowed' | 'invalid_unicode';

export type UnsafeText = { code: UnsafeTextCode; path: string };

// With the u flag a well-formed pair is one astral code point, so only lone halves match \p{Cs}.
const LONE_SURROGATE = /\p{Cs}/u;

/** What is wrong with one string, if anything. */
export const unsafeTextOf = (s: string): UnsafeTextCode | null => {
  if (s.includes('\0')) return 'nul_not_allowed';
  if (LONE_SURROGATE.test(s)) return 'invalid_unicode';
  return null;
};

// Only JSON-shaped data is looked into: class instances (a CLI command object, a Buffer) are not input text and may be cyclic.
const isPlainObject = (v: unknown): v is Record<string, unknown> => {
  if (v === null || typeof v !== 'object') return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
};

/** RFC 6901 JSON Pointer segment. */
const segment = (k: string) => k.replace(/~/g, '~0').replace(/\//g, '~1');

/**
 * The first NUL or lone surrogate in a parsed JSON value (object keys
 * included), with its JSON Pointer; null when the value is clean. Iterative:
 * a deeply nested body within the size limit cannot exhaust the stack.
 * Only strings, arrays and plain objects are looked into: Buffers (raw
 * message bodies) are bytes, not text.
 */
export const findUnsafeText = (value: unknown): UnsafeText | null => {
  const stack: [unknown, string][] = [[value, '']];
  while (stack.length > 0) {
    const [v, path] = stack.pop() as [unknown, string];
    if (typeof v === 'string') {
      const code = unsafeTextOf(v);
      if (code) return { code, path: path || '/' };
    } else if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) stack.push([v[i], `${path}/${i}`]);
    } else if (isPlainObject(v)) {
      const entries = Object.entries(v);
      for (const [k] of entries) {
        // The key itself is not echoed: the pointer names the object holding it.
        const code = unsafeTextOf(k);
        if (code) return { code, path: path || '/' };
      }
      for (let i = entries.length - 1; i >= 0; i--) {
        const [k, x] = entries[i] as [string, unknown];
        stack.push([x, `${path}/${segment(k)}`]);
      }
    }
  }
  return null;
};

const DETAILS: Record<UnsafeTextCode, string> = {
  nul_not_allowed: 'Text must not contain the NUL character (U+0000).',
  invalid_unicode: 'Text must be well-formed Unicode (no unpaired surrogate, valid UTF-8).',
};

/** The 400 for unsafe text in one part of a request (`in`: body, query, params, arguments). */
export const unsafeTextError = (found: UnsafeText, where: string): AppError =>
  badRequest(found.code, `${DETAILS[found.code]} Found in the request ${where} at ${found.path}.`, { in: where, path: found.path });

/** Throws the 400 when `value` carries a NUL or a lone surrogate. */
export const assertSafeText = (value: unknown, where: string): void => {
  const found = findUnsafeText(value);
  if (found) throw unsafeTextError(found, where);
};

/** True when every %XX escape in `s` decodes as UTF-8 (malformed escapes such as `%zz` are literal text, as the query parser keeps them). */
export const hasValidPercentUtf8 = (s: string): boolean => {
  if (!s.includes('%')) return true;
  try {
    decodeURIComponent(s.replace(/%(?![0-9A-Fa-f]{2})/g, '%25'));
    return true;
  } catch {
    return false;
  }
};
