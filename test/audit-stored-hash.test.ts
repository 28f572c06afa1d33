import { createHash, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { canonicalOfRow, chainedOfRow, chainHash, type EventRow } from '../src/audit/audit-chain.js';
import { atOfStored, isoOfMs, storedOfAt, storedOfContentHash, storedOfId, storedOfIdOrNull } from '../src/audit/audit-columns.js';
import { canonicalJson } from '../src/audit/canonical.js';
import { FlatCompactRange } from '../src/audit/audit-chain-verifier.js';
import { CompactRange } from '../src/audit/merkle.js';
import { createStoredEventHasher, type HexForm, hexDigitsOf } from '../src/audit/stored-event-hash.js';

/** A row as EVENT_SELECT reads it (audit-columns.ts): ids and hashes as bytes, seq as a number or (PostgreSQL bigint) text. */
const storedOf = (r: EventRow, seqAsText = false): unknown[] => [
  seqAsText ? String(r.seq) : r.seq,
  storedOfId(r.id),
  storedOfAt(r.at).at,
  storedOfIdOrNull(r.org_id),
  r.action,
  r.actor_type,
  storedOfIdOrNull(r.actor_id),
  r.delegation_chain === 'null' ? null : r.delegation_chain,
  r.target_type,
  storedOfIdOrNull(r.target_id),
  r.outcome,
  storedOfIdOrNull(r.request_id),
  r.client_ip,
  storedOfContentHash(r.content_hash),
  r.details,
  Buffer.from(r.hash, 'hex'),
  storedOfAt(r.at).at_text,
];

/** The binary columns of a stored row (EVENT_SELECT's order). */
const BINARY = [1, 3, 6, 9, 11, 13, 15];
/**
 * The same row as the verify workers read it: binary columns as SQLite's quote() writes them (`X'HEX'` uppercase,
 * `NULL`, a text quoted) or as PostgreSQL's hex bytea output (`\\x` lowercase hex, SQL NULL as null).
 */
const textForm = (row: unknown[], form: HexForm): unknown[] =>
  row.map((v, i) => {
    if (!BINARY.includes(i)) return v;
    if (form === 'pg-hex') return v === null ? null : `\\x${(v as Buffer).toString('hex')}`;
    if (v === null) return 'NULL';
    if (typeof v === 'string') return `'${v.replaceAll("'", "''")}'`;
    return `X'${(v as Buffer).toString('hex').toUpperCase()}'`;
  });

const base: EventRow = {
  seq: 42,
  id: 'evt_0190f0f0f0f0f0f0f0f0f0f0f0f0f0f0',
  at: '2026-03-01T12:00:00.123Z',
  org_id: 'org_0190f0f0f0f0f0f0f0f0f0f0f0f0f0f0',
  action: 'email.read',
  actor_type: 'agent',
  actor_id: 'agt_0190f0f0f0f0f0f0f0f0f0f0f0f0f0f0',
  delegation_chain: canonicalJson([{ type: 'organization', id: 'org_0190f0f0f0f0f0f0f0f0f0f0f0f0f0f0', name: 'General Hospital' }]),
  target_type: 'message',
  target_id: 'msg_0190f0f0f0f0f0f0f0f0f0f0f0f0f0f0',
  outcome: 'success',
  request_id: 'req_0190f0f0f0f0f0f0f0f0f0f0f0f0f0f0',
  client_ip: '10.0.0.1',
  content_hash: 'ab'.repeat(32),
  details: canonicalJson({ mailbox_id: 'mbx_1', bytes: 1234 }),
  prev_hash: 'cd'.repeat(32),
  hash: '',
};

/** The generic path: the `canonicalize` package over the parsed event (RFC 8785). */
const generic = (r: EventRow) => canonicalJson(chainedOfRow(r));

const check = (r: EventRow) => {
  const h = createStoredEventHasher();
  const want = generic(r);
  expect(canonicalOfRow(r)).toBe(want);
  for (const seqAsText of [false, true]) {
    expect(h.canonical(storedOf(r, seqAsText))).toBe(want);
    expect(h.hash(Buffer.from(r.prev_hash, 'hex'), storedOf(r, seqAsText))!.toString('hex')).toBe(chainHash(r.prev_hash, chainedOfRow(r)));
    for (const form of ['sqlite-quote', 'pg-hex'] as const) {
      const row = textForm(storedOf(r, seqAsText), form);
      expect(h.canonicalText(row, form)).toBe(want);
      expect(h.hashText(Buffer.from(r.prev_hash, 'hex'), row, form, 'hex')).toBe(chainHash(r.prev_hash, chainedOfRow(r)));
      expect(hexDigitsOf(row[15], form)).toBe(r.hash === '' ? '' : form === 'pg-hex' ? r.hash : r.hash.toUpperCase());
    }
  }
};

// Every shape of the event: each nullable member null, each id column in each stored form, a target with an empty
// part (no target, as canonicalOfRow has it), content_hash in text form, a missing chain row, strings JSON escapes.
const SHAPES: Partial<EventRow>[] = [
  {},
  { org_id: null, actor_id: null, target_type: null, target_id: null, request_id: null, client_ip: null, content_hash: null },
  { target_type: 'message', target_id: null },
  { target_type: null, target_id: 'msg_0190f0f0f0f0f0f0f0f0f0f0f0f0f0f0' },
  { target_type: '', target_id: 'x' },
  { target_type: 'message', target_id: '' },
  { actor_type: 'system', actor_id: 'mailward', target_type: 'oauth_client', target_id: 'https://client.example/cimd.json' },
  { target_id: 'ab'.repeat(32), request_id: 'req_1', org_id: 'ORG_0190F0F0F0F0F0F0F0F0F0F0F0F0F0F0' },
  { id: 'legacy-event-7', actor_id: 'agt_0190f0f0f0f0f0f0f0f0f0f0f0f0f0f' },
  { content_hash: 'sha-1:not-hex ✓' },
  { content_hash: 'AB'.repeat(32) },
  { delegation_chain: 'null' },
  { action: 'quote " backslash \\ newline \n tab \t nul \u0000 del \u007f', outcome: 'denied' },
  { target_id: 'pâtient ✓ 💊 \u2028 "q"', client_ip: '2001:db8::1' },
  { details: canonicalJson({ z: [1, -0.5, 1e21, true, null, { é: 'ü', '\u0000': '' }], a: 'x' }) },
  { seq: 9_007_199_254_740_991 },
];

describe('the chain hash from stored bytes (stored-event-hash.ts) against the generic RFC 8785 canonicalizer', () => {
  it('writes the same bytes as the canonicalize package for every event shape', () => {
    for (const s of SHAPES) check({ ...base, ...s });
  });

  it('writes the same bytes on fuzzed rows (random strings in every text member and id column, random details)', () => {
    const pick = <T>(xs: T[]) => xs[Math.floor(Math.random() * xs.length)]!;
    // Code points of every UTF-8 length, JSON's escapes and the ids' own alphabet; no lone surrogates (not UTF-8).
    const alphabet = ['a', 'z', '_', '0', 'f', '"', '\\', '\n', '\u0001', '\u001f', ' ', 'é', '€', '\u2028', '😀', '\uffff', 'A'];
    const str = () => Array.from({ length: Math.floor(Math.random() * 12) }, () => pick(alphabet)).join('');
    const id = () =>
      pick([
        () => `${pick(['evt', 'msg', 'org', 'agt'])}_${randomBytes(16).toString('hex')}`,
        () => `abc_${randomBytes(16).toString('hex').toUpperCase()}`,
        () => `abc_${randomBytes(15).toString('hex')}`,
        str,
      ])();
    const value = (depth: number): unknown =>
      depth > 2
        ? pick([() => str(), () => Math.floor(Math.random() * 1e6) - 5e5, () => true, () => null])()
        : pick([
            () => str(),
            () => Math.random() * 1e3,
            () => Array.from({ length: Math.floor(Math.random() * 4) }, () => value(depth + 1)),
            () => Object.fromEntries(Array.from({ length: Math.floor(Math.random() * 4) }, () => [str(), value(depth + 1)])),
          ])();
    const orNull = <T>(f: () => T) => (Math.random() < 0.2 ? null : f());
    for (let i = 0; i < 2000; i++) {
      check({
        seq: 1 + Math.floor(Math.random() * 1e9),
        id: id(),
        at: Math.random() < 0.5 ? new Date(Math.floor(Math.random() * 4e12)).toISOString() : str(),
        org_id: orNull(id),
        action: str(),
        actor_type: str(),
        actor_id: orNull(id),
        delegation_chain: Math.random() < 0.1 ? 'null' : canonicalJson(value(0)),
        target_type: orNull(str),
        target_id: orNull(id),
        outcome: str(),
        request_id: orNull(id),
        client_ip: orNull(str),
        content_hash: orNull(() => (Math.random() < 0.5 ? randomBytes(32).toString('hex') : str())),
        details: canonicalJson(value(0)),
        prev_hash: randomBytes(32).toString('hex'),
        hash: '',
      });
    }
  });

  it('declines (null) stored bytes in no known form, so the generic path decides', () => {
    const h = createStoredEventHasher();
    const prev = createHash('sha256').update('x').digest();
    const row = storedOf(base);
    for (const [col, bad] of [
      [1, Buffer.from('evt')],
      [6, Buffer.from([0x41, 0x42, 0x43, ...Buffer.alloc(16)])],
      [9, 'msg_as_text'],
      [13, Buffer.from([2, 1, 2])],
      [4, null],
      // The time (migration 0046): milliseconds that are no number, and a canonical time kept as text beside other milliseconds.
      [2, 'not-ms'],
      [16, `=${base.at}`],
      [16, 'no-marker'],
    ] as const) {
      const r = [...row];
      r[col] = bad;
      expect(h.hash(prev, r)).toBeNull();
      // The text forms decline the same values, and a blob turned into a text or a number in a binary column (SQLite
      // keeps any type in any column): quote() writes those without the X'...' markers.
      for (const form of ['sqlite-quote', 'pg-hex'] as const) {
        const t = textForm(r, form);
        if (col === 9 && form === 'pg-hex') t[9] = 'msg_as_text';
        expect(h.hashText(prev, t, form, 'hex'), `${form} ${col}`).toBeNull();
      }
    }
    for (const col of BINARY.filter((c) => c !== 15)) {
      const q = textForm(row, 'sqlite-quote');
      q[col] = `'${(row[col] as Buffer).toString('latin1')}'`;
      expect(h.hashText(prev, q, 'sqlite-quote', 'hex')).toBeNull();
      q[col] = '42';
      expect(h.hashText(prev, q, 'sqlite-quote', 'hex')).toBeNull();
      const p = textForm(row, 'pg-hex');
      p[col] = (row[col] as Buffer).toString('hex');
      expect(h.hashText(prev, p, 'pg-hex', 'hex')).toBeNull();
    }
    // SQL NULL and an empty blob are different values: NULL is written as null, X'' is no id at all.
    const empty = textForm(row, 'sqlite-quote');
    empty[3] = "X''";
    expect(h.hashText(prev, empty, 'sqlite-quote', 'hex')).toBeNull();
    expect(hexDigitsOf('NULL', 'sqlite-quote')).toBeNull();
    expect(hexDigitsOf("'ab'", 'sqlite-quote')).toBeNull();
    expect(hexDigitsOf(null, 'pg-hex')).toBeNull();
  });

  it('hashes the RFC 6962 subtrees of a worker range as CompactRange does (FlatCompactRange)', () => {
    for (const n of [0, 1, 2, 3, 5, 8, 13, 64, 100, 255, 256, 1000]) {
      const leaves = randomBytes(n * 32);
      const flat = new FlatCompactRange();
      const ref = new CompactRange();
      for (let i = 0; i < n; i++) {
        flat.append(leaves, i * 32);
        ref.append(leaves.subarray(i * 32, i * 32 + 32));
        if (i % 7 === 0) expect(flat.hashes().map((x) => x.toString('hex'))).toEqual(ref.hashes.map((x) => x.toString('hex')));
      }
      expect(flat.size).toBe(n);
      expect(flat.hashes().map((x) => x.toString('hex'))).toEqual(ref.hashes.map((x) => x.toString('hex')));
    }
  });

  it('writes a time from its stored milliseconds exactly as toISOString, and keeps any other text', () => {
    const edges = [0, -1, 1, 86_399_999, 86_400_000, -62_167_219_200_000, 253_402_300_799_999, 253_402_300_800_000, -62_167_219_200_001];
    const random = Array.from({ length: 5000 }, () => Math.floor((Math.random() - 0.3) * 1e13));
    for (const ms of [...edges, ...random]) {
      const text = new Date(ms).toISOString();
      expect(isoOfMs(ms)).toBe(text);
      expect(storedOfAt(text)).toEqual({ at: ms, at_text: '' });
      expect(atOfStored(ms, '')).toBe(text);
      expect(atOfStored(String(ms), '')).toBe(text);
    }
    for (const text of ['', '2026-03-01T12:00:00Z', '2026-03-01T12:00:00.123+00:00', 'yesterday', '2026-02-30T00:00:00.000Z', '=']) {
      const s = storedOfAt(text);
      expect(s.at_text).toBe(`=${text}`);
      expect(atOfStored(s.at, s.at_text)).toBe(text);
      // The same text beside other milliseconds does not read back: the time index cannot be moved under it.
      expect(atOfStored(s.at + 1, s.at_text)).toMatch(/^!/);
    }
    // A canonical time kept as text (not its milliseconds' ''), or '' beside no number, never reads as a time.
    expect(atOfStored(Date.parse(base.at), `=${base.at}`)).toMatch(/^!/);
    expect(atOfStored('x', '')).toMatch(/^!/);
    expect(atOfStored(null, '')).toMatch(/^!/);
  });
});
