import { hash as oneShotHash } from 'node:crypto';
import { atOfStored } from './audit-columns.js';

/**
 * The chain hash of a stored audit row, SHA-256(prev hash || RFC 8785 event), computed from the row's stored
 * bytes (EVENT_SELECT's column order, audit-columns.ts) into one reused buffer.
 *
 * Why a serializer specialised to the event's fixed shape: `audit verify` reads and rehashes every event, and
 * rebuilding the canonical text as a JS string (decoding each binary id and hash to hex, JSON-quoting a dozen
 * strings, then UTF-8 encoding the whole) cost as much CPU as reading the rows. The event's shape is fixed (13
 * members, two nested objects, RFC 8785 member order known in advance: action, actor {id, type}, at, client_ip,
 * content_hash, delegation_chain, details, id, org_id, outcome, request_id, seq, target {id, type}), and its two
 * JSON members are stored in RFC 8785 form already, so the bytes can be written directly: fixed fragments copied,
 * binary ids and hashes written as hex from their bytes, other strings quoted by JSON.stringify (RFC 8785 3.2.2.2
 * is ECMAScript's string serialisation). The same bytes as canonicalOfRow (audit-chain.ts) and the `canonicalize`
 * package: test/audit-stored-hash.test.ts checks them on every event shape and on fuzzed rows.
 *
 * Returns null for a row whose stored bytes are not in a form it writes (a tampered or unusual value): the caller
 * then decides with the generic path (recomputeRowHash), so this only ever answers faster, never differently.
 *
 * The text form (HexForm): `audit verify`'s workers read the binary columns as the database's own hex text
 * (SQLite's quote(), PostgreSQL's bytea output) instead of as Buffers: a driver-made Buffer per column (seven per
 * row) cost about 0.75 us each on SQLite, more than the rest of the row, and most of the workers' garbage
 * collection. The hex digits are written into the canonical form as they are (lowercased), and the id prefixes are
 * decoded from them; the bytes they stand for are the same, so the canonical form is the same byte for byte
 * (test/audit-stored-hash.test.ts checks every shape in both forms).
 */

const HEX = Buffer.from('0123456789abcdef', 'latin1');
const lit = (s: string) => Buffer.from(s, 'latin1');
const F_ACTION = lit('{"action":');
const F_ACTOR_ID = lit(',"actor":{"id":');
const F_ACTOR_TYPE = lit(',"type":');
const F_AT = lit('},"at":');
const F_CLIENT_IP = lit(',"client_ip":');
const F_CONTENT_HASH = lit(',"content_hash":');
const F_CHAIN = lit(',"delegation_chain":');
const F_DETAILS = lit(',"details":');
const F_ID = lit(',"id":');
const F_ORG = lit(',"org_id":');
const F_OUTCOME = lit(',"outcome":');
const F_REQUEST = lit(',"request_id":');
const F_SEQ = lit(',"seq":');
const F_TARGET = lit(',"target":');
const F_TARGET_ID = lit('{"id":');
const F_TARGET_TYPE = lit(',"type":');
const F_END_TARGET = lit('}}');
const F_NULL = lit('null');
const F_NULL_END = lit('null}');

const asBytes = (v: unknown): Buffer | null =>
  v instanceof Uint8Array ? (Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength)) : null;

/**
 * How a reader hands the binary columns over as text: `sqlite-quote` is SQLite's quote() (`X'0A1B'` for a blob,
 * `NULL`, any other type quoted as itself), `pg-hex` is PostgreSQL's bytea output with bytea_output = hex
 * (`\\x0a1b`, SQL NULL as null). Both are written by the database's own encoder from the stored bytes, so the
 * digits between the markers are hex; anything without the blob markers (a text or number stored in a binary
 * column) is no blob, and the row is declined as the byte form declines a value that is no Buffer.
 */
export type HexForm = 'sqlite-quote' | 'pg-hex';

/** The span of hex digits of a binary column in text form: set by `hexSpan` when it answers SPAN_HEX. */
let spanFrom = 0;
let spanTo = 0;
const SPAN_HEX = 0;
const SPAN_NULL = 1;
const SPAN_NONE = 2;
const hexSpan = (v: unknown, form: HexForm): number => {
  if (form === 'pg-hex') {
    if (v === null) return SPAN_NULL;
    if (typeof v !== 'string' || v.charCodeAt(0) !== 0x5c || v.charCodeAt(1) !== 0x78) return SPAN_NONE;
    spanFrom = 2;
    spanTo = v.length;
  } else {
    if (typeof v !== 'string') return SPAN_NONE;
    if (v === 'NULL') return SPAN_NULL;
    if (v.charCodeAt(0) !== 0x58 || v.charCodeAt(1) !== 0x27 || v.charCodeAt(v.length - 1) !== 0x27) return SPAN_NONE;
    spanFrom = 2;
    spanTo = v.length - 1;
  }
  return (spanTo - spanFrom) % 2 === 0 ? SPAN_HEX : SPAN_NONE;
};
const nibble = (c: number) => (c <= 0x39 ? c - 0x30 : (c | 0x20) - 0x57);
const byteAt = (s: string, i: number) => (nibble(s.charCodeAt(i)) << 4) | nibble(s.charCodeAt(i + 1));

/**
 * The hex digits of a binary column in text form (a stored hash), or null when it is SQL NULL or no blob.
 * Used by the verify workers to decode a stored hash straight into a scratch buffer.
 */
export const hexDigitsOf = (v: unknown, form: HexForm): string | null =>
  hexSpan(v, form) === SPAN_HEX ? (v as string).substring(spanFrom, spanTo) : null;

export const createStoredEventHasher = () => {
  let buf = Buffer.allocUnsafe(16 * 1024);
  let pos = 0;

  const room = (n: number) => {
    if (pos + n <= buf.length) return;
    const bigger = Buffer.allocUnsafe(Math.max(buf.length * 2, pos + n));
    buf.copy(bigger, 0, 0, pos);
    buf = bigger;
  };
  const frag = (f: Buffer) => {
    room(f.length);
    buf.set(f, pos);
    pos += f.length;
  };
  /** A JSON string (or null); UTF-8 takes at most 3 bytes per UTF-16 unit. */
  const str = (s: string | null) => {
    if (s === null) return frag(F_NULL);
    const q = JSON.stringify(s);
    room(3 * q.length);
    pos += buf.write(q, pos, 'utf8');
  };
  /** Raw JSON text stored in RFC 8785 form (delegation_chain, details). */
  const raw = (s: string) => {
    room(3 * s.length);
    pos += buf.write(s, pos, 'utf8');
  };
  const hex = (b: Buffer, from: number) => {
    room(2 * (b.length - from));
    for (let i = from; i < b.length; i++) {
      const x = b[i]!;
      buf[pos++] = HEX[x >> 4]!;
      buf[pos++] = HEX[x & 15]!;
    }
  };
  const isLower = (c: number) => c >= 0x61 && c <= 0x7a;
  /** The form the row being written has its binary columns in: null for Buffers. */
  let form: HexForm | null = null;
  /** Hex digits s[from, to) written as they are, lowercased (digits are unchanged by | 0x20, A-F become a-f). */
  const hexText = (s: string, from: number, to: number) => {
    room(to - from);
    const end = pos + buf.write(from === 0 && to === s.length ? s : s.substring(from, to), pos, 'latin1');
    for (let i = pos; i < end; i++) buf[i]! |= 0x20;
    pos = end;
  };
  /** A UTF-8 text given as hex digits (the 0x00-tagged forms: rare, so allocation does not matter). */
  const textOfHex = (s: string, from: number, to: number) => Buffer.from(s.substring(from, to), 'hex').toString('utf8');
  /** An id column in text form: the same cases as `id` below, read from the hex digits. */
  const idHex = (v: unknown, f: HexForm): boolean => {
    const k = hexSpan(v, f);
    if (k === SPAN_NULL) {
      frag(F_NULL);
      return true;
    }
    if (k !== SPAN_HEX) return false;
    const s = v as string;
    const from = spanFrom;
    const to = spanTo;
    if (to - from === 38) {
      const b0 = byteAt(s, from);
      const b1 = byteAt(s, from + 2);
      const b2 = byteAt(s, from + 4);
      if (isLower(b0) && isLower(b1) && isLower(b2)) {
        room(6);
        buf[pos++] = 0x22;
        buf[pos++] = b0;
        buf[pos++] = b1;
        buf[pos++] = b2;
        buf[pos++] = 0x5f;
        hexText(s, from + 6, to);
        room(1);
        buf[pos++] = 0x22;
        return true;
      }
    }
    if (to - from >= 2 && s.charCodeAt(from) === 0x30 && s.charCodeAt(from + 1) === 0x30) {
      str(textOfHex(s, from + 2, to));
      return true;
    }
    return false;
  };
  /** A stored id column (storedOfId): false when its bytes are in no known form. */
  const id = (v: unknown): boolean => {
    if (form !== null) return idHex(v, form);
    if (v === null) {
      frag(F_NULL);
      return true;
    }
    const b = asBytes(v);
    if (b === null) return false;
    if (b.length === 19 && isLower(b[0]!) && isLower(b[1]!) && isLower(b[2]!)) {
      room(38);
      buf[pos++] = 0x22;
      buf[pos++] = b[0]!;
      buf[pos++] = b[1]!;
      buf[pos++] = b[2]!;
      buf[pos++] = 0x5f;
      hex(b, 3);
      buf[pos++] = 0x22;
      return true;
    }
    if (b.length > 0 && b[0] === 0) {
      str(b.toString('utf8', 1));
      return true;
    }
    return false;
  };
  /** The stored content_hash (storedOfContentHash). */
  const contentHash = (v: unknown): boolean => {
    if (form !== null) {
      const k = hexSpan(v, form);
      if (k === SPAN_NULL) {
        frag(F_NULL);
        return true;
      }
      if (k !== SPAN_HEX) return false;
      const s = v as string;
      const from = spanFrom;
      const to = spanTo;
      if (to - from === 66 && s.charCodeAt(from) === 0x30 && s.charCodeAt(from + 1) === 0x31) {
        room(1);
        buf[pos++] = 0x22;
        hexText(s, from + 2, to);
        room(1);
        buf[pos++] = 0x22;
        return true;
      }
      if (to - from >= 2 && s.charCodeAt(from) === 0x30 && s.charCodeAt(from + 1) === 0x30) {
        str(textOfHex(s, from + 2, to));
        return true;
      }
      return false;
    }
    if (v === null) {
      frag(F_NULL);
      return true;
    }
    const b = asBytes(v);
    if (b === null) return false;
    if (b.length === 33 && b[0] === 1) {
      room(66);
      buf[pos++] = 0x22;
      hex(b, 1);
      buf[pos++] = 0x22;
      return true;
    }
    if (b.length > 0 && b[0] === 0) {
      str(b.toString('utf8', 1));
      return true;
    }
    return false;
  };
  /** A text column: a string or null, nothing else. */
  const text = (v: unknown): boolean => {
    if (v === null) {
      frag(F_NULL);
      return true;
    }
    if (typeof v !== 'string') return false;
    str(v);
    return true;
  };

  /**
   * Writes prev || canonical event of a row in EVENT_SELECT's column order:
   * 0 seq, 1 id, 2 at, 3 org_id, 4 action, 5 actor_type, 6 actor_id, 7 delegation_chain, 8 target_type,
   * 9 target_id, 10 outcome, 11 request_id, 12 client_ip, 13 content_hash, 14 details (15 hash is not read), 16 at_text.
   */
  const write = (prev: Buffer, a: unknown[]): boolean => {
    const [seq, evId, atMs, org, action, actorType, actorId, chain, targetType, targetId, outcome, request, ip, ch, details] = a;
    // The time's text from its stored milliseconds and at_text (migration 0046); a row whose two disagree is the generic path's.
    const at = atOfStored(atMs, a[16]);
    if (at.startsWith('!')) return false;
    if (typeof action !== 'string' || typeof actorType !== 'string' || typeof outcome !== 'string') return false;
    if (typeof details !== 'string' || (chain !== null && typeof chain !== 'string')) return false;
    pos = 0;
    room(32);
    buf.set(prev, 0);
    pos = prev.length;
    frag(F_ACTION);
    str(action);
    frag(F_ACTOR_ID);
    if (!id(actorId)) return false;
    frag(F_ACTOR_TYPE);
    str(actorType);
    frag(F_AT);
    str(at);
    frag(F_CLIENT_IP);
    if (!text(ip)) return false;
    frag(F_CONTENT_HASH);
    if (!contentHash(ch)) return false;
    frag(F_CHAIN);
    // A chain row that is missing reads as null (the LEFT join), as toEventRow has it.
    if (chain === null) frag(F_NULL);
    else raw(chain as string);
    frag(F_DETAILS);
    raw(details);
    frag(F_ID);
    if (!id(evId)) return false;
    frag(F_ORG);
    if (!id(org)) return false;
    frag(F_OUTCOME);
    str(outcome);
    frag(F_REQUEST);
    if (!id(request)) return false;
    frag(F_SEQ);
    const s = String(Number(seq));
    room(s.length);
    pos += buf.write(s, pos, 'latin1');
    frag(F_TARGET);
    // canonicalOfRow: a target only when both its type and id are non-empty (an id of 0x00 alone is the empty text).
    let hasTargetId: boolean;
    if (form !== null) {
      const k = hexSpan(targetId, form);
      if (k === SPAN_NONE) return false;
      hasTargetId = k === SPAN_HEX && !(spanTo - spanFrom === 2 && (targetId as string).startsWith('00', spanFrom));
    } else {
      const tb = targetId === null ? null : asBytes(targetId);
      if (targetId !== null && tb === null) return false;
      hasTargetId = tb !== null && !(tb.length === 1 && tb[0] === 0);
    }
    if (typeof targetType === 'string' && targetType !== '' && hasTargetId) {
      frag(F_TARGET_ID);
      if (!id(targetId)) return false;
      frag(F_TARGET_TYPE);
      str(targetType);
      frag(F_END_TARGET);
    } else {
      if (targetType !== null && typeof targetType !== 'string') return false;
      frag(F_NULL_END);
    }
    return true;
  };

  const writeIn = (f: HexForm | null, prev: Buffer, a: unknown[]): boolean => {
    form = f;
    try {
      return write(prev, a);
    } finally {
      form = null;
    }
  };

  return {
    /** The chain hash, or null when the generic path must decide. */
    hash: (prev: Buffer, a: unknown[]): Buffer | null => (write(prev, a) ? oneShotHash('sha256', buf.subarray(0, pos), 'buffer') : null),
    /** The canonical text it hashes after `prev` (tests compare it with the generic canonicalizer). */
    canonical: (a: unknown[]): string | null => (write(ZERO32, a) ? buf.toString('utf8', 32, pos) : null),
    /**
     * The chain hash of a row whose binary columns are in text form (`f`), as a string in `enc` ('binary', that is latin1: one
     * character per byte; a string costs a fraction of a Buffer per call), or null when the generic path must decide.
     */
    hashText: (prev: Buffer, a: unknown[], f: HexForm, enc: 'binary' | 'hex'): string | null =>
      writeIn(f, prev, a) ? oneShotHash('sha256', buf.subarray(0, pos), enc) : null,
    /** The canonical text of a row in text form (tests). */
    canonicalText: (a: unknown[], f: HexForm): string | null => (writeIn(f, ZERO32, a) ? buf.toString('utf8', 32, pos) : null),
  };
};
const ZERO32 = Buffer.alloc(32);
