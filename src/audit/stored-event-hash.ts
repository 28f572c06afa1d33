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
  /** A stored id column (storedOfId): false when its bytes are in no known form. */
  const id = (v: unknown): boolean => {
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
    // canonicalOfRow: a target only when both its type and id are non-empty.
    const tb = targetId === null ? null : asBytes(targetId);
    if (targetId !== null && tb === null) return false;
    if (typeof targetType === 'string' && targetType !== '' && tb !== null && !(tb.length === 1 && tb[0] === 0)) {
      frag(F_TARGET_ID);
      if (!id(tb)) return false;
      frag(F_TARGET_TYPE);
      str(targetType);
      frag(F_END_TARGET);
    } else {
      if (targetType !== null && typeof targetType !== 'string') return false;
      frag(F_NULL_END);
    }
    return true;
  };

  return {
    /** The chain hash, or null when the generic path must decide. */
    hash: (prev: Buffer, a: unknown[]): Buffer | null => (write(prev, a) ? oneShotHash('sha256', buf.subarray(0, pos), 'buffer') : null),
    /** The canonical text it hashes after `prev` (tests compare it with the generic canonicalizer). */
    canonical: (a: unknown[]): string | null => (write(ZERO32, a) ? buf.toString('utf8', 32, pos) : null),
  };
};
const ZERO32 = Buffer.alloc(32);
