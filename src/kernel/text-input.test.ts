import { describe, expect, it } from 'vitest';
import { findUnsafeText, hasValidPercentUtf8, unsafeTextOf } from './text-input.js';

describe('text that no store keeps faithfully', () => {
  it('finds NUL and lone surrogates in values and keys, with a JSON Pointer, and passes well-formed pairs', () => {
    expect(unsafeTextOf('plain \u{1f600} é')).toBeNull();
    expect(unsafeTextOf('a\u0000b')).toBe('nul_not_allowed');
    expect(unsafeTextOf('\ud800')).toBe('invalid_unicode');
    expect(unsafeTextOf('x\udc00\ud83d')).toBe('invalid_unicode');
    expect(findUnsafeText({ a: [1, 'ok', { 'b/c': 'x\ud800' }] })).toEqual({ code: 'invalid_unicode', path: '/a/2/b~1c' });
    expect(findUnsafeText({ a: { 'k\u0000': 1 } })).toEqual({ code: 'nul_not_allowed', path: '/a' });
    expect(findUnsafeText('\u0000')).toEqual({ code: 'nul_not_allowed', path: '/' });
    expect(findUnsafeText({ n: 1, t: true, z: null, s: 'fine' })).toBeNull();
  });

  it('walks a deeply nested value without exhausting the stack, and never into bytes or class instances', () => {
    let deep: unknown = 'a\u0000';
    for (let i = 0; i < 200_000; i++) deep = [deep];
    expect(findUnsafeText(deep)?.code).toBe('nul_not_allowed');
    class Node {
      self: Node = this;
      text = '\u0000';
    }
    expect(findUnsafeText([Buffer.from([0, 0xff]), new Node()])).toBeNull();
  });

  it('tells percent-encoded UTF-8 from escapes that decode to no text (RFC 3986 2.5)', () => {
    expect(hasValidPercentUtf8('a=%C3%A9&b=%F0%9F%98%80&c=%zz&d=100%')).toBe(true);
    for (const bad of ['%FF', '%C3', '%ED%A0%80', 'a=1&b=%E2%82']) expect(hasValidPercentUtf8(bad), bad).toBe(false);
  });
});
