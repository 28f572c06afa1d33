import { encodeWord, foldLines, quoteString } from 'nodemailer/lib/mime-funcs';

/**
 * The name character rules: what may never appear in text that ends up in a
 * header field (display names, subjects, attachment filenames).
 * - C0 and C1 controls and DEL (RFC 5322 2.2: a field body is printable
 *   characters and WSP; CR and LF would end the field: header injection);
 * - the bidirectional embeddings, overrides and isolates U+202A-202E and
 *   U+2066-2069 and the marks U+200E, U+200F, U+061C (Unicode UAX #9; with them
 *   a From line or a filename renders reversed: "Trojan Source", CVE-2021-42574);
 * - the line and paragraph separators U+2028 and U+2029 (line breaks).
 */
const UNSAFE_HEADER_CHAR = /[\p{Cc}\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/u;
const UNSAFE_HEADER_CHARS = /[\p{Cc}\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]+/gu;
const BIDI_CHARS = /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]+/gu;

/** True when `s` breaks a name character rule (the edge refuses it with 400). */
export const hasUnsafeHeaderChars = (s: string): boolean => UNSAFE_HEADER_CHAR.test(s);

/** `s` without the bidi controls and with each run of controls and line breaks as one space, trimmed: for stored text that predates the rules. */
export const cleanHeaderText = (s: string): string => s.replace(BIDI_CHARS, '').replace(UNSAFE_HEADER_CHARS, ' ').trim();

// RFC 2047 2: an encoded-word is at most 75 characters; nodemailer's limit counts the payload, 52 keeps each word well under it.
const WORD_PAYLOAD = 52;

/**
 * Whether text must go out as RFC 2047 encoded-words: anything outside
 * printable ASCII, and any literal "=?" (RFC 2047 5, 6.1: a reader decodes
 * "=?charset?enc?text?=" wherever it finds one, so text that merely looks like
 * an encoded-word would decode into something else, e.g. another address).
 * Encoding the whole text makes the decoded result exactly the text.
 */
const needsEncodedWords = (s: string) => !/^[\x20-\x7e]*$/.test(s) || s.includes('=?');

const encodedWords = (s: string) => encodeWord(s, 'B', WORD_PAYLOAD);

/** An unstructured field body (RFC 5322 3.2.5, e.g. Subject), cleaned by the name rules and encoded where needed. */
export const encodeUnstructured = (s: string): string => {
  const text = cleanHeaderText(s);
  return needsEncodedWords(text) ? encodedWords(text) : text;
};

// RFC 5322 3.2.3 atext plus space: a display name of these goes out as a phrase of atoms.
const PHRASE_ATOMS = /^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~ ]+$/;

/**
 * A mailbox (RFC 5322 3.4 name-addr): the display name cleaned by the name
 * rules, then as atoms, a quoted-string, or encoded-words (RFC 2047 5(3): never
 * an encoded-word inside a quoted-string, which readers decode anyway).
 * `address` is a validated plain address.
 */
export const formatMailbox = (name: string, address: string): string => {
  const n = cleanHeaderText(name);
  if (!n) return address;
  if (needsEncodedWords(n)) return `${encodedWords(n)} <${address}>`;
  return `${PHRASE_ATOMS.test(n) && !/^ | $/.test(n) ? n : quoteString(n)} <${address}>`;
};

/** One header field line, folded at whitespace (RFC 5322 2.2.3), ending in CRLF. */
export const headerLine = (name: string, body: string): string => `${foldLines(`${name}: ${body}`, 76)}\r\n`;

/**
 * A filename safe to put in a MIME header and to hand to a browser or a file
 * system: no path (a sender's "..\..\x" or "/etc/x"), nothing the name rules
 * forbid, no format characters, none of the characters Windows refuses, no
 * leading or trailing dots or spaces, bounded. Inbound names are served
 * through it and outbound names stored and sent through it.
 */
export const safeFilename = (name: string): string => {
  const base = (name.split(/[\\/]/).pop() ?? '')
    // Controls and format characters (U+202E turns "fdp.exe" into what looks like "exe.pdf").
    .replace(UNSAFE_HEADER_CHARS, '')
    .replace(/[\p{Cc}\p{Cf}]/gu, '')
    .replace(/[<>:"|?*]/g, '_')
    .replace(/^[.\s]+|[.\s]+$/g, '')
    .slice(0, 200);
  return base || 'attachment';
};
