import canonicalizeLib from 'canonicalize';

/**
 * RFC 8785 JSON Canonicalization Scheme (JCS): keys sorted by UTF-16 code
 * units, no whitespace, ECMAScript number and string serialisation. Audit
 * events hold only strings, integers, booleans, null, arrays and objects.
 * `undefined` members are dropped before hashing, as JSON would.
 */
const canonicalizeFn = canonicalizeLib as unknown as (v: unknown) => string | undefined;

export const canonicalJson = (value: unknown): string => {
  const out = canonicalizeFn(value);
  if (out === undefined) throw new Error('value cannot be canonicalized');
  return out;
};
