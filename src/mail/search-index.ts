import { createHash, createHmac, hash, hkdfSync, randomInt } from 'node:crypto';
import { PostgresAdapter, sql } from 'kysely';
import type { Logger } from '../kernel/log.js';
import type { AuditService } from '../audit/audit-service.js';
import { systemActor } from '../identity/principal.js';
import type { KeyRing } from '../kernel/crypto/keyring.js';
import { isAppError, unavailable } from '../kernel/errors.js';
import { startPeriodic } from '../kernel/schedule.js';
import { compiledFor, type Executor, runCompiled, type Store } from '../store/db.js';
import type { SearchPendingTable } from '../store/schema.js';
import { openContent } from './message-store.js';
import { firstUnindexed, setSearchKeyVersion, unindexedPage } from './messages-repo.js';
import type { MessageContent } from './mime.js';
import { activeIndexKey } from './recipient-index.js';

/**
 * The blind search index (writer of `search_pending`, `search_segments`, `search_postings`; migrations 0032, 0041).
 * Search must not decrypt a whole mailbox, and no word of a message may be stored in plaintext, so each message is
 * indexed as a set of keyed hashes:
 *
 * - entries: every word of the body (`b|word`, stop words aside), every prefix of three to PREFIX_MAX characters of
 *   every word of the sender (name and address, `f|pre`) and of the subject (`s|pre`), and such a word whole when it
 *   has two characters. A word is a run of Unicode letters and digits after NFKC and lower-casing (`foldText`), so
 *   `Jane.Doe@Lab.example` gives `jane`, `doe`, `lab`, `example`.
 * - each entry is stored as the first 5 bytes of HMAC-SHA-256(k, mailbox id | entry), where k is derived by HKDF from
 *   the organisation's content-index key (the recipient index's keys, recipient-index.ts: one key ring, one rotation).
 *   The mailbox id in the MAC makes entries of two mailboxes unlinkable.
 * - storage: a new message writes one `search_pending` row (its MACs, sorted); the compactor folds them into
 *   segments (compactMailbox, below) whose postings cost about a byte per entry.
 *
 * Semantics (what a query finds): the folded query must occur in the sender or subject starting at a word, or in the
 * body as whole words (a word or a phrase). The index narrows a request to the messages holding every word of the
 * query (two characters or more) as an entry; those candidates are then opened and the exact rule decides, so a
 * truncated-MAC collision costs one decryption and never a wrong answer. A query with no word of two characters
 * falls back to decrypting the mailbox within the scan budget, as before the index.
 *
 * Leakage, for someone holding the database but not the master key: per mailbox, which messages share an entry (so
 * how often an unknown word recurs, and the number of distinct words of each message); nothing across mailboxes;
 * no word can be tested without the key. Segments group a mailbox's messages by id, which the messages table shows
 * anyway. Key rotation (`mailward keys rotate`) recomputes every entry under a new key, so entries made before a
 * rotation cannot be linked to entries made after it.
 */

/** 5 bytes (the first picks the bucket); a collision within a mailbox costs one decryption, never a wrong answer. */
const MAC_BYTES = 5;
/** Sender and subject words longer than this are indexed (and looked up) by their first PREFIX_MAX characters. */
const PREFIX_MAX = 8;
/** Body words longer than this are indexed (and looked up) by their first WORD_MAX characters. */
const WORD_MAX = 64;
const MIN_WORD = 2;
/** Sender and subject prefixes are indexed from three characters (two-character prefixes narrow almost nothing). */
const PREFIX_MIN = 3;
/**
 * Body words too common to narrow a search, not indexed (about a third of a letter's distinct words): a query word
 * in this list does not narrow, the confirmation still checks it. English and Spanish function words only.
 */
const STOPWORDS = new Set(
  (
    'a an and are as at be been but by can do for from had has have he her his how i if in into is it its me my no not of on or our ' +
    'she so than that the their them then there these they this to up us was we were what when which who will with would you your ' +
    'de del el en es la las los por que se su un una y'
  ).split(' '),
);
const WORD = /[\p{L}\p{N}]+/gu;
const WORD_CHAR = /[\p{L}\p{N}]/u;

/** `foldText` without collapsing whitespace: the same words (a word never holds whitespace). */
const foldWords = (s: string) => s.normalize('NFKC').toLowerCase();
/** Case- and width-insensitive matching, blind to runs of whitespace (wrapped lines, HTML layout). */
export const foldText = (s: string) => foldWords(s).replace(/\s+/g, ' ');

/** Visible text of an HTML body for matching: tags, scripts and styles dropped, a few entities decoded. */
export const htmlText = (html: string) =>
  html
    .replace(/<(script|style)[^>]*>[\s\S]*?<\/\1\s*>/gi, ' ')
    .replace(/<[^>]*>/g, ' ')
    .replace(/&nbsp;/gi, ' ')
    .replace(/&lt;/gi, '<')
    .replace(/&gt;/gi, '>')
    .replace(/&quot;/gi, '"')
    .replace(/&#39;|&apos;/gi, "'")
    .replace(/&amp;/gi, '&');

/** The words of already folded text. */
const wordsOf = (folded: string): string[] => folded.match(WORD) ?? [];

/** Code points, so a prefix never splits a surrogate pair. */
const chars = (w: string) => Array.from(w);

const isWordAt = (s: string, i: number) => {
  if (i < 0 || i >= s.length) return false;
  const cp = s.codePointAt(i);
  // The low half of a pair: look at the whole code point it ends.
  if (cp !== undefined && cp >= 0xdc00 && cp <= 0xdfff && i > 0) return WORD_CHAR.test(String.fromCodePoint(s.codePointAt(i - 1)!));
  return cp !== undefined && WORD_CHAR.test(String.fromCodePoint(cp));
};

/**
 * Whether folded `needle` occurs in folded `hay` starting at a word (when the needle starts with a word character)
 * and, with `whole`, ending at one (when it ends with a word character).
 */
export const occursAtWords = (hay: string, needle: string, whole: boolean): boolean => {
  if (needle === '') return true;
  const startsWord = isWordAt(needle, 0);
  const endsWord = isWordAt(needle, needle.length - 1);
  for (let i = hay.indexOf(needle); i !== -1; i = hay.indexOf(needle, i + 1)) {
    if (startsWord && isWordAt(hay, i - 1)) continue;
    if (whole && endsWord && isWordAt(hay, i + needle.length)) continue;
    return true;
  }
  return false;
};

/** The text of each searchable field of a message, folded. */
export const searchFields = (c: Pick<MessageContent, 'from' | 'subject' | 'text' | 'html'>) => ({
  from: foldText(`${c.from?.name ?? ''} <${c.from?.address ?? ''}>`),
  subject: foldText(c.subject ?? ''),
  body: foldText(`${c.text ?? ''} ${c.html ? htmlText(c.html) : ''}`),
});

/** Sender and subject entries of one folded field's words: the word whole at two characters, its prefixes from three. */
const addPrefixes = (out: Set<string>, tag: 'f' | 's', folded: string) => {
  const seen = new Set<string>();
  for (const w of wordsOf(folded)) {
    if (seen.has(w)) continue;
    seen.add(w);
    const cs = chars(w);
    if (cs.length === MIN_WORD) out.add(`${tag}|${w}`);
    for (let n = PREFIX_MIN; n <= Math.min(cs.length, PREFIX_MAX); n++) out.add(`${tag}|${cs.slice(0, n).join('')}`);
  }
};

/**
 * The distinct entries of a message (see the module comment). Each distinct word is handled once (a letter repeats
 * most of its words), and a body word of up to WORD_MAX UTF-16 units needs no code-point split: it cannot hold more
 * than WORD_MAX code points, and it has at least MIN_WORD unless it is two units making one code point (a surrogate
 * pair). Whitespace is not collapsed here: it is never part of a word, so the words are those of `searchFields`.
 */
export const entriesOf = (c: Pick<MessageContent, 'from' | 'subject' | 'text' | 'html'>): Set<string> => {
  const out = new Set<string>();
  addPrefixes(out, 'f', foldWords(`${c.from?.name ?? ''} <${c.from?.address ?? ''}>`));
  addPrefixes(out, 's', foldWords(c.subject ?? ''));
  const seen = new Set<string>();
  for (const w of wordsOf(foldWords(`${c.text ?? ''} ${c.html ? htmlText(c.html) : ''}`))) {
    if (seen.has(w)) continue;
    seen.add(w);
    if (w.length < MIN_WORD || STOPWORDS.has(w)) continue;
    if (w.length <= WORD_MAX) {
      const hi = w.charCodeAt(0);
      if (w.length === 2 && hi >= 0xd800 && hi <= 0xdbff) continue; // one code point
      out.add(`b|${w}`);
    } else out.add(`b|${chars(w).slice(0, WORD_MAX).join('')}`);
  }
  return out;
};

export type SearchKey = { version: number; key: Buffer };

/** Derived keys by the index key's bytes (the recipient index hands out one Buffer per unwrapped key). */
const derived = new WeakMap<Buffer, Buffer>();

/** The search key derived from an organisation's content-index key (HKDF-SHA-256, RFC 5869), derived once per key. */
export const searchKeyOf = (indexKey: { version: number; key: Buffer }): SearchKey => {
  let key = derived.get(indexKey.key);
  if (!key) {
    key = Buffer.from(hkdfSync('sha256', indexKey.key, Buffer.alloc(0), 'mailward/search-index/v1', 32));
    derived.set(indexKey.key, key);
  }
  return { version: indexKey.version, key };
};

const macOf = (key: Buffer, mailboxId: string, entry: string) =>
  createHmac('sha256', key).update(`${mailboxId}|${entry}`).digest().subarray(0, MAC_BYTES);

/**
 * HMAC-SHA-256 (RFC 2104) of `prefix || UTF-8(entry)` for many entries under one key: the same bytes as
 * `createHmac('sha256', key).update(prefix).update(entry)`, built from node:crypto's one-shot SHA-256 over the
 * padded key blocks, which are prepared once for all the entries instead of once per entry as `createHmac` does
 * (a message has hundreds of entries; about a third less CPU per entry, measured). `test/search-index.test.ts`
 * checks it against RFC 4231's vectors and against `createHmac`.
 */
export const prefixedHmac = (key: Buffer, prefix: Buffer) => {
  const BLOCK = 64; // SHA-256's block size
  // RFC 2104 2: a key longer than the block is hashed first; a shorter one is padded with zeros.
  const k = key.length > BLOCK ? createHash('sha256').update(key).digest() : key;
  let inner = Buffer.alloc(BLOCK + prefix.length + 512);
  const outer = Buffer.alloc(BLOCK + 32);
  for (let i = 0; i < BLOCK; i++) {
    inner[i] = (k[i] ?? 0) ^ 0x36;
    outer[i] = (k[i] ?? 0) ^ 0x5c;
  }
  prefix.copy(inner, BLOCK);
  const start = BLOCK + prefix.length;
  const mac = (entry: string): Buffer => {
    // A UTF-16 unit is at most 3 bytes of UTF-8 (a surrogate pair 4), so this bound needs no measuring.
    if (entry.length * 3 > inner.length - start) {
      const bigger = Buffer.alloc(start + entry.length * 3);
      inner.copy(bigger, 0, 0, start);
      inner = bigger;
    }
    const n = inner.write(entry, start, 'utf8');
    hash('sha256', inner.subarray(0, start + n), 'buffer').copy(outer, BLOCK);
    return hash('sha256', outer, 'buffer');
  };
  /** Zeroes the padded key blocks (they are the key). */
  const wipe = () => {
    inner.fill(0);
    outer.fill(0);
  };
  return { mac, wipe };
};

/** The entries' MACs of one mailbox under `key` (before truncation): HMAC-SHA-256(key, `mailboxId|entry`), as `macOf`. */
const macsUnder = (key: Buffer, mailboxId: string) => prefixedHmac(key, Buffer.from(`${mailboxId}|`));

/** The 16 bytes of a prefixed UUIDv7 id (`msg_` + 32 hex), which sort as the ids do. */
export const refOf = (messageId: string) => Buffer.from(messageId.slice(messageId.indexOf('_') + 1), 'hex');
export const idOfRef = (ref: Buffer) => `msg_${ref.toString('hex')}`;

/** A message's entries under `k`: its 5-byte MACs, distinct and sorted, in one value (a `search_pending` row). */
export const searchEntryFor = (
  m: { id: string; mailbox_id: string },
  c: Pick<MessageContent, 'from' | 'subject' | 'text' | 'html'>,
  k: SearchKey,
): SearchPendingTable => {
  const macs = new Set<string>(); // a truncated-MAC collision within one message is one entry
  const under = macsUnder(k.key, m.mailbox_id);
  try {
    for (const e of entriesOf(c)) macs.add(under.mac(e).toString('latin1', 0, MAC_BYTES));
  } finally {
    under.wipe();
  }
  return { mailbox_id: m.mailbox_id, message_ref: refOf(m.id), macs: Buffer.from([...macs].sort().join(''), 'latin1') };
};

/** Indexes a message (its transaction): one row, folded into a segment later by the compactor. */
export const insertSearchEntry = async (tx: Executor, row: SearchPendingTable) => {
  // Compiled once (src/store/db.ts compiledFor): every stored message writes one.
  const compiled = compiledFor(tx, 'insertSearchEntry', 3, ([mailbox, ref, macs]) =>
    tx.insertInto('search_pending').values({ mailbox_id: mailbox as string, message_ref: ref as Buffer, macs: macs as Buffer }),
  );
  await runCompiled(tx, compiled(row.mailbox_id, row.message_ref, row.macs));
};

const macsOf = (b: Buffer): string[] => {
  const out: string[] = [];
  for (let i = 0; i + MAC_BYTES <= b.length; i += MAC_BYTES) out.push(b.toString('latin1', i, i + MAC_BYTES));
  return out;
};

/**
 * Segments (0041). A mailbox's compacted entries are cut into segments of at most SEGMENT_MAX messages whose
 * ranges of ids never overlap; in a segment a message is its position (0-255) in the sorted `refs`, and each entry
 * (MAC) lists the positions holding it, so an entry held by many messages costs a byte or less per message instead
 * of a row per message. Postings are grouped by the MAC's first byte mod BUCKETS (one row per segment and bucket), so a lookup
 * reads a few small rows per segment, newest segment first.
 */
const SEGMENT_MAX = 256;
/** Positions listed one byte each up to this many; more as a 256-bit bitmap (32 bytes). */
const LIST_MAX = 32;
/** The compactor folds a mailbox's pending rows once this many wait, or once the oldest waited COMPACT_AFTER_MS. */
const COMPACT_MIN = 256;
const COMPACT_AFTER_MS = 60_000;

type Member = { ref: Buffer; macs: string[] };
type SegmentMeta = { lo: Buffer; hi: Buffer; n: number; gen: number };

/** Buckets per segment: fewer rows (each costs ~60-100 bytes of row and key) against more to decode per lookup. */
const BUCKETS = 64;
const bucketOf = (mac: string) => mac.charCodeAt(0) % BUCKETS;

/** Encodes one bucket's entries: per MAC its 5 bytes, then a count (1-32) and positions, or 0 and a bitmap. */
const encodeBucket = (entries: [string, number[]][]): Buffer => {
  const parts: Buffer[] = [];
  for (const [mac, pos] of entries) {
    parts.push(Buffer.from(mac, 'latin1'));
    if (pos.length <= LIST_MAX) parts.push(Buffer.from([pos.length, ...pos]));
    else {
      const bits = Buffer.alloc(1 + SEGMENT_MAX / 8);
      for (const p of pos) bits[1 + (p >> 3)]! |= 1 << (p & 7);
      parts.push(bits);
    }
  }
  return Buffer.concat(parts);
};

/** Decodes a bucket row into (MAC, positions) pairs; `want`, when given, skips every other MAC. */
const decodeBucket = (b: Buffer, want?: Set<string>): [string, number[]][] => {
  const out: [string, number[]][] = [];
  let i = 0;
  while (i < b.length) {
    const mac = b.toString('latin1', i, i + MAC_BYTES);
    i += MAC_BYTES;
    const count = b[i++]!;
    const len = count === 0 ? SEGMENT_MAX / 8 : count;
    if (!want || want.has(mac)) {
      const pos: number[] = [];
      if (count === 0) {
        for (let p = 0; p < SEGMENT_MAX; p++) if (b[i + (p >> 3)]! & (1 << (p & 7))) pos.push(p);
      } else for (let j = 0; j < count; j++) pos.push(b[i + j]!);
      out.push([mac, pos]);
    }
    i += len;
  }
  return out;
};

const refsOf = (b: Buffer): Buffer[] => {
  const out: Buffer[] = [];
  for (let i = 0; i < b.length; i += 16) out.push(b.subarray(i, i + 16));
  return out;
};

/**
 * PostgreSQL: the compactor and every removal of a mailbox's entries take a transaction-scoped advisory lock on the
 * mailbox, so two processes never rewrite one segment at once (writers of new messages do not take it). SQLite:
 * a no-op write first, so the transaction holds the write lock before it reads what it rewrites.
 */
const lockMailbox = async (tx: Executor, mailboxId: string) => {
  if (tx.getExecutor().adapter instanceof PostgresAdapter)
    await sql`select pg_advisory_xact_lock(7466133, hashtext(${mailboxId}))`.execute(tx);
  else await sql`update search_segments set n = n where mailbox_id = ${mailboxId} and 0 = 1`.execute(tx);
};

/** Writes members (sorted by ref, at most SEGMENT_MAX) as one segment. */
const writeSegment = async (tx: Executor, mailboxId: string, members: Member[]) => {
  const gen = randomInt(1, 2 ** 31 - 1);
  const lo = members[0]!.ref;
  const byMac = new Map<string, number[]>();
  members.forEach((m, p) => {
    for (const mac of m.macs) {
      const l = byMac.get(mac);
      if (l) l.push(p);
      else byMac.set(mac, [p]);
    }
  });
  const buckets = new Map<number, [string, number[]][]>();
  for (const [mac, pos] of [...byMac].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
    const k = bucketOf(mac);
    const l = buckets.get(k);
    if (l) l.push([mac, pos]);
    else buckets.set(k, [[mac, pos]]);
  }
  await tx
    .insertInto('search_segments')
    .values({ mailbox_id: mailboxId, lo, hi: members.at(-1)!.ref, n: members.length, gen, refs: Buffer.concat(members.map((m) => m.ref)) })
    .execute();
  const rows = [...buckets].map(([bucket, e]) => ({ lo, bucket, gen, entries: encodeBucket(e) }));
  for (let i = 0; i < rows.length; i += 200)
    await tx
      .insertInto('search_postings')
      .values(rows.slice(i, i + 200))
      .execute();
};

/** Writes members (any number, sorted) as consecutive segments of at most SEGMENT_MAX. */
const writeSegments = async (tx: Executor, mailboxId: string, members: Member[]) => {
  for (let i = 0; i < members.length; i += SEGMENT_MAX) await writeSegment(tx, mailboxId, members.slice(i, i + SEGMENT_MAX));
};

/** A segment's members with their MACs, read back (for a rewrite), and the segment removed. */
const takeSegment = async (tx: Executor, mailboxId: string, lo: Buffer): Promise<Member[]> => {
  const seg = await tx
    .selectFrom('search_segments')
    .select(['refs'])
    .where('mailbox_id', '=', mailboxId)
    .where('lo', '=', lo)
    .executeTakeFirstOrThrow();
  const members: Member[] = refsOf(Buffer.from(seg.refs)).map((ref) => ({ ref: Buffer.from(ref), macs: [] }));
  const rows = await tx.selectFrom('search_postings').select(['bucket', 'entries']).where('lo', '=', lo).execute();
  for (const r of rows) for (const [mac, pos] of decodeBucket(Buffer.from(r.entries))) for (const p of pos) members[p]?.macs.push(mac);
  await tx.deleteFrom('search_postings').where('lo', '=', lo).execute();
  await tx.deleteFrom('search_segments').where('mailbox_id', '=', mailboxId).where('lo', '=', lo).execute();
  return members;
};

const segmentsOf = async (ex: Executor, mailboxId: string): Promise<SegmentMeta[]> =>
  (await ex.selectFrom('search_segments').select(['lo', 'hi', 'n', 'gen']).where('mailbox_id', '=', mailboxId).orderBy('lo').execute()).map(
    (s) => ({ lo: Buffer.from(s.lo), hi: Buffer.from(s.hi), n: Number(s.n), gen: Number(s.gen) }),
  );

/** The index of the segment a ref belongs to: the last one starting at or below it, else the first. */
const segmentFor = (segs: SegmentMeta[], ref: Buffer) => {
  let i = 0;
  while (i + 1 < segs.length && Buffer.compare(segs[i + 1]!.lo, ref) <= 0) i++;
  return i;
};

const byRef = (a: { ref: Buffer }, b: { ref: Buffer }) => Buffer.compare(a.ref, b.ref);

/**
 * Folds a mailbox's pending rows into its segments (the compactor; its transaction): each pending message goes to
 * the segment whose range it falls in or follows (before the first: the first). A segment that is not full, or
 * that receives a message inside its range, is rewritten with its new members (cut again at SEGMENT_MAX); a full
 * one that only receives newer (or, for the first, older) messages is left as it is and they form new segments.
 * So ranges never overlap, and a segment of 256 is rewritten at most a few times while it fills. Returns the
 * messages folded (0 when, without `force`, too few waited for too short a time).
 */
export const compactMailbox = async (tx: Executor, mailboxId: string, opts: { force?: boolean; now?: Date } = {}): Promise<number> => {
  await lockMailbox(tx, mailboxId);
  const pending = (
    await tx
      .selectFrom('search_pending')
      .select(['message_ref', 'macs'])
      .where('mailbox_id', '=', mailboxId)
      .orderBy('message_ref')
      .execute()
  ).map((r) => ({ ref: Buffer.from(r.message_ref), macs: macsOf(Buffer.from(r.macs)) }));
  if (pending.length === 0) return 0;
  const ageMs = (opts.now ?? new Date()).getTime() - pending[0]!.ref.readUIntBE(0, 6);
  if (!opts.force && pending.length < COMPACT_MIN && ageMs < COMPACT_AFTER_MS) return 0;
  const segs = await segmentsOf(tx, mailboxId);
  if (segs.length === 0) await writeSegments(tx, mailboxId, pending);
  else {
    const groups = new Map<number, Member[]>();
    for (const p of pending) {
      const i = segmentFor(segs, p.ref);
      const g = groups.get(i);
      if (g) g.push(p);
      else groups.set(i, [p]);
    }
    for (const [i, added] of groups) {
      const s = segs[i]!;
      const inside = added.some((p) => Buffer.compare(p.ref, s.lo) >= 0 && Buffer.compare(p.ref, s.hi) <= 0);
      if (s.n < SEGMENT_MAX || inside) {
        const members = [...(await takeSegment(tx, mailboxId, s.lo)), ...added].sort(byRef);
        await writeSegments(tx, mailboxId, members);
      } else {
        // A full segment: the newer ones after it, and (first segment only) the older ones before it.
        const below = added.filter((p) => Buffer.compare(p.ref, s.lo) < 0);
        const above = added.filter((p) => Buffer.compare(p.ref, s.hi) > 0);
        await writeSegments(tx, mailboxId, below);
        await writeSegments(tx, mailboxId, above);
      }
    }
  }
  let deleted = 0;
  for (let i = 0; i < pending.length; i += 500)
    deleted += Number(
      (
        await tx
          .deleteFrom('search_pending')
          .where('mailbox_id', '=', mailboxId)
          .where(
            'message_ref',
            'in',
            pending.slice(i, i + 500).map((p) => p.ref),
          )
          .executeTakeFirst()
      ).numDeletedRows,
    );
  // Under the lock nobody else deletes pending rows; a mismatch means the store changed under us: undo it all.
  if (deleted !== pending.length) throw unavailable('store_busy', 'The search index changed during compaction; retry shortly.');
  return pending.length;
};

/**
 * Removes messages' entries (purge, a reviewer's edit, re-keying; the caller's transaction): pending rows are
 * deleted, and each segment holding one of them is rewritten without it.
 */
export const deleteSearchEntries = async (tx: Executor, mailboxId: string, refs: Buffer[]) => {
  if (refs.length === 0) return;
  await lockMailbox(tx, mailboxId);
  const rest: Buffer[] = [];
  for (let i = 0; i < refs.length; i += 500) {
    const chunk = refs.slice(i, i + 500);
    const found = new Set(
      (
        await tx
          .selectFrom('search_pending')
          .select('message_ref')
          .where('mailbox_id', '=', mailboxId)
          .where('message_ref', 'in', chunk)
          .execute()
      ).map((r) => Buffer.from(r.message_ref).toString('hex')),
    );
    if (found.size > 0)
      await tx.deleteFrom('search_pending').where('mailbox_id', '=', mailboxId).where('message_ref', 'in', chunk).execute();
    rest.push(...chunk.filter((r) => !found.has(r.toString('hex'))));
  }
  if (rest.length === 0) return;
  const segs = await segmentsOf(tx, mailboxId);
  if (segs.length === 0) return;
  const bySeg = new Map<number, Set<string>>();
  for (const r of rest) {
    const i = segmentFor(segs, r);
    const s = segs[i]!;
    if (Buffer.compare(r, s.lo) < 0 || Buffer.compare(r, s.hi) > 0) continue; // not indexed
    const set = bySeg.get(i) ?? new Set<string>();
    set.add(r.toString('hex'));
    bySeg.set(i, set);
  }
  for (const [i, gone] of bySeg) {
    const members = (await takeSegment(tx, mailboxId, segs[i]!.lo)).filter((m) => !gone.has(m.ref.toString('hex')));
    await writeSegments(tx, mailboxId, members);
  }
};

/** The entries stored for a message, as hex (tests and the leakage checks): pending or in its segment. */
export const storedEntriesOf = async (ex: Executor, mailboxId: string, messageId: string): Promise<string[]> => {
  const ref = refOf(messageId);
  const p = await ex
    .selectFrom('search_pending')
    .select('macs')
    .where('mailbox_id', '=', mailboxId)
    .where('message_ref', '=', ref)
    .executeTakeFirst();
  if (p) return macsOf(Buffer.from(p.macs)).map((m) => Buffer.from(m, 'latin1').toString('hex'));
  const segs = await segmentsOf(ex, mailboxId);
  if (segs.length === 0) return [];
  const s = segs[segmentFor(segs, ref)]!;
  const seg = await ex
    .selectFrom('search_segments')
    .select('refs')
    .where('mailbox_id', '=', mailboxId)
    .where('lo', '=', s.lo)
    .executeTakeFirstOrThrow();
  const pos = refsOf(Buffer.from(seg.refs)).findIndex((r) => r.equals(ref));
  if (pos < 0) return [];
  const out: string[] = [];
  for (const r of await ex.selectFrom('search_postings').select(['bucket', 'entries']).where('lo', '=', s.lo).execute())
    for (const [mac, ps] of decodeBucket(Buffer.from(r.entries)))
      if (ps.includes(pos)) out.push(Buffer.from(mac, 'latin1').toString('hex'));
  return out.sort();
};

/** The (message, entry) pairs the index holds, pending and in segments (benches). */
export const entryCount = async (ex: Executor): Promise<number> => {
  let n = 0;
  for (const r of await ex.selectFrom('search_pending').select('macs').execute()) n += r.macs.length / MAC_BYTES;
  for (const r of await ex.selectFrom('search_postings').select(['bucket', 'entries']).execute())
    for (const [, pos] of decodeBucket(Buffer.from(r.entries))) n += pos.length;
  return n;
};

/** Every entry stored in the index (key rotation tests): the distinct MACs, as hex. */
export const allStoredEntries = async (ex: Executor): Promise<Set<string>> => {
  const out = new Set<string>();
  for (const r of await ex.selectFrom('search_pending').select('macs').execute())
    for (const m of macsOf(Buffer.from(r.macs))) out.add(Buffer.from(m, 'latin1').toString('hex'));
  for (const r of await ex.selectFrom('search_postings').select(['bucket', 'entries']).execute())
    for (const [mac] of decodeBucket(Buffer.from(r.entries))) out.add(Buffer.from(mac, 'latin1').toString('hex'));
  return out;
};

/** The criteria a search narrows by: q (any field), from and subject (their own field). */
export type SearchCriteria = { q?: string; from?: string; subject?: string };

/**
 * The groups of MACs a candidate must match, one group per query word (a group matches when any of its MACs is an
 * entry of the message: one per field the word may be in, per live key). Empty when no criterion has a word the
 * index holds; then the caller decrypts.
 */
export const lookupGroups = (mailboxId: string, criteria: SearchCriteria, keys: SearchKey[]): Buffer[][] => {
  const groups: Buffer[][] = [];
  // No key yet: the organisation has indexed nothing, so there is nothing to narrow by.
  if (keys.length === 0) return groups;
  const add = (text: string | undefined, fields: readonly ('f' | 's' | 'b')[]) => {
    if (!text) return;
    for (const w of wordsOf(foldText(text))) {
      const cs = chars(w);
      if (cs.length < MIN_WORD) continue;
      // A word narrows only where every field it may match has an entry for it (so the candidates are a superset).
      if (fields.includes('b') && STOPWORDS.has(w)) continue;
      if (cs.length < PREFIX_MIN && fields.some((f) => f !== 'b')) continue;
      const entries = fields.map((f) => `${f}|${cs.slice(0, f === 'b' ? WORD_MAX : PREFIX_MAX).join('')}`);
      groups.push(keys.flatMap((k) => entries.map((e) => macOf(k.key, mailboxId, e))));
    }
  };
  add(criteria.q, ['f', 's', 'b']);
  add(criteria.from, ['f']);
  add(criteria.subject, ['s']);
  return groups;
};

/**
 * Up to `limit` message ids of the mailbox, newest first and below `before`, whose entries match every group: the
 * candidates of one scan chunk. Reads the mailbox's pending rows, then its segments newest first (a few at a time,
 * only the buckets of the query's MACs), and stops once `limit` candidates are newer than every segment not read.
 * Postings and refs are read in separate statements: a segment rewritten in between (its `gen` differs) makes the
 * lookup start again.
 */
export const searchCandidates = async (
  ex: Executor,
  mailboxId: string,
  groups: Buffer[][],
  before: string | undefined,
  limit: number,
): Promise<string[]> => {
  const gs = groups.map((g) => new Set(g.map((m) => m.toString('latin1'))));
  const want = new Set(gs.flatMap((g) => [...g]));
  const buckets = [...new Set([...want].map(bucketOf))];
  const below = before ? refOf(before) : undefined;
  for (let attempt = 0; attempt < 8; attempt++) {
    const found = new Map<string, Buffer>();
    let pq = ex.selectFrom('search_pending').select(['message_ref', 'macs']).where('mailbox_id', '=', mailboxId);
    if (below) pq = pq.where('message_ref', '<', below);
    for (const r of await pq.execute()) {
      const macs = new Set(macsOf(Buffer.from(r.macs)));
      if (gs.every((g) => [...g].some((m) => macs.has(m))))
        found.set(Buffer.from(r.message_ref).toString('hex'), Buffer.from(r.message_ref));
    }
    let cursor = below;
    let batch = 8;
    let consistent = true;
    for (;;) {
      let sq = ex.selectFrom('search_segments').select(['lo', 'gen']).where('mailbox_id', '=', mailboxId);
      if (cursor) sq = sq.where('lo', '<', cursor);
      const segs = (await sq.orderBy('lo', 'desc').limit(batch).execute()).map((s) => ({ lo: Buffer.from(s.lo), gen: Number(s.gen) }));
      if (segs.length === 0) break;
      const rows = await ex
        .selectFrom('search_postings')
        .select(['lo', 'bucket', 'gen', 'entries'])
        // The segments' first refs, read from the mailbox's own segments, name its postings (a ref is one message's).
        .where(
          'lo',
          'in',
          segs.map((s) => s.lo),
        )
        .where('bucket', 'in', buckets)
        .execute();
      const hits = new Map<string, { gen: number; pos: number[] }>();
      const bySeg = new Map<string, typeof rows>();
      for (const r of rows) {
        const k = Buffer.from(r.lo).toString('hex');
        const l = bySeg.get(k);
        if (l) l.push(r);
        else bySeg.set(k, [r]);
      }
      for (const s of segs) {
        const mine = bySeg.get(s.lo.toString('hex')) ?? [];
        if (mine.some((r) => Number(r.gen) !== s.gen)) consistent = false;
        const held = new Map<string, number[]>();
        for (const r of mine) for (const [mac, pos] of decodeBucket(Buffer.from(r.entries), want)) held.set(mac, pos);
        let inAll: number[] | null = null;
        for (const g of gs) {
          const any = new Set<number>();
          for (const m of g) for (const p of held.get(m) ?? []) any.add(p);
          inAll = inAll === null ? [...any] : inAll.filter((p) => any.has(p));
          if (inAll.length === 0) break;
        }
        if (inAll && inAll.length > 0) hits.set(s.lo.toString('hex'), { gen: s.gen, pos: inAll });
      }
      if (!consistent) break;
      if (hits.size > 0) {
        const refRows = await ex
          .selectFrom('search_segments')
          .select(['lo', 'gen', 'refs'])
          .where('mailbox_id', '=', mailboxId)
          .where(
            'lo',
            'in',
            [...hits.keys()].map((h) => Buffer.from(h, 'hex')),
          )
          .execute();
        for (const r of refRows) {
          const h = hits.get(Buffer.from(r.lo).toString('hex'))!;
          if (Number(r.gen) !== h.gen) consistent = false;
          const refs = Buffer.from(r.refs);
          for (const p of h.pos) {
            const ref = Buffer.from(refs.subarray(p * 16, p * 16 + 16));
            if (ref.length === 16 && (!below || Buffer.compare(ref, below) < 0)) found.set(ref.toString('hex'), ref);
          }
        }
        if (refRows.length !== hits.size) consistent = false;
        if (!consistent) break;
      }
      const lowest = segs.at(-1)!.lo;
      // Every segment not read holds only messages older than `lowest`.
      if ([...found.values()].filter((r) => Buffer.compare(r, lowest) >= 0).length >= limit) break;
      if (segs.length < batch) break;
      cursor = lowest;
      batch = Math.min(batch * 2, 256);
    }
    if (!consistent) continue;
    return [...found.values()]
      .sort((a, b) => Buffer.compare(b, a))
      .slice(0, limit)
      .map(idOfRef);
  }
  throw unavailable('store_busy', 'The search index kept changing during the lookup; retry shortly.');
};

/** Whether the mailbox still has messages stored before the index that the back-fill has not reached. */
export const hasUnindexed = async (ex: Executor, mailboxId: string): Promise<boolean> => Boolean(await firstUnindexed(ex, mailboxId));

export type BackfillResult = { indexed: number; purged: number; unreadable: number; remaining: boolean };

/**
 * Indexes messages stored before the search index (0032), a batch per transaction, oldest mailbox rows first:
 * each batch claims its rows with a compare-and-set on `search_key_version` (so two processes never index one
 * message twice), opens their content, writes their entries and records one `search_index.built` audit event with
 * the count (the content was read by the system). A message that cannot be opened is left unindexed (its mailbox
 * keeps the decrypting search) and counted as unreadable; a purged one is marked with version 0 (no entries).
 */
export const createSearchBackfill = (d: {
  store: Store;
  ring: KeyRing;
  clock: { now(): Date };
  audit: Pick<AuditService, 'record'>;
  batch?: number;
}) => {
  const batch = d.batch ?? 200;
  const skip = new Set<string>();
  const runOnce = async (): Promise<BackfillResult> => {
    const r: BackfillResult = { indexed: 0, purged: 0, unreadable: 0, remaining: false };
    for (;;) {
      const page = await unindexedPage(d.store.db, batch + skip.size);
      const todo = page.filter((m) => !skip.has(m.id)).slice(0, batch);
      if (todo.length === 0) return r;
      await d.store.db.transaction().execute(async (tx) => {
        const byOrg = new Map<string, number>();
        for (const m of todo) {
          if (m.content_purged_at) {
            if (await setSearchKeyVersion(tx, m.id, 0, true)) r.purged++;
            continue;
          }
          let c: MessageContent;
          try {
            c = openContent(d.ring, m, m.content_sealed);
          } catch {
            skip.add(m.id);
            r.unreadable++;
            continue;
          }
          const k = await activeIndexKey(tx, d.ring, m.org_id, d.clock.now().toISOString());
          if (!(await setSearchKeyVersion(tx, m.id, k.version, true))) continue; // another process indexed it
          await insertSearchEntry(tx, searchEntryFor(m, c, searchKeyOf(k)));
          byOrg.set(m.org_id, (byOrg.get(m.org_id) ?? 0) + 1);
          r.indexed++;
        }
        for (const [orgId, count] of byOrg)
          await d.audit.record(tx, {
            action: 'search_index.built',
            actor: systemActor(orgId),
            target: { type: 'organization', id: orgId },
            outcome: 'success',
            requestId: null,
            clientIp: null,
            details: { messages: count },
          });
      });
    }
  };

  /** `mailward serve`: a first pass a second after start, then every ten minutes (a no-op once all is indexed). */
  const start = (opts: { logger?: Logger; firstAfterMs?: number; everyMs?: number } = {}) =>
    startPeriodic(
      async () => {
        const r = await runOnce();
        if (r.indexed + r.purged + r.unreadable > 0) opts.logger?.info(r, 'search index back-filled');
      },
      {
        firstAfterMs: opts.firstAfterMs ?? 1000,
        everyMs: opts.everyMs ?? 600_000,
        onError: (e) => opts.logger?.error({ code: isAppError(e) ? e.code : 'unexpected' }, 'search index back-fill failed'),
      },
    );
  return { runOnce, start };
};

/**
 * The compactor: folds pending rows into segments (compactMailbox), one mailbox per transaction. `force` folds
 * every mailbox with a pending row (tests, benches, and the last pass before `serve` stops); otherwise only those
 * with COMPACT_MIN rows waiting or a row older than COMPACT_AFTER_MS. No audit event: it moves keyed hashes the
 * store already holds and reads no content.
 */
export const createSearchCompactor = (d: { store: Store; clock: { now(): Date } }) => {
  const runOnce = async (opts: { force?: boolean; mailboxId?: string } = {}): Promise<{ mailboxes: number; messages: number }> => {
    let q = d.store.db
      .selectFrom('search_pending')
      .select((eb) => ['mailbox_id', eb.fn.countAll().as('n')])
      .groupBy('mailbox_id');
    if (opts.mailboxId) q = q.where('mailbox_id', '=', opts.mailboxId);
    const r = { mailboxes: 0, messages: 0 };
    const now = d.clock.now();
    for (const m of await q.execute()) {
      if (!opts.force && Number(m.n) < COMPACT_MIN) {
        // PostgreSQL has no min() of bytea: the mailbox's oldest pending row by its key.
        const oldest = await d.store.db
          .selectFrom('search_pending')
          .select('message_ref')
          .where('mailbox_id', '=', m.mailbox_id)
          .orderBy('message_ref')
          .limit(1)
          .executeTakeFirst();
        if (!oldest || now.getTime() - Buffer.from(oldest.message_ref).readUIntBE(0, 6) < COMPACT_AFTER_MS) continue;
      }
      const n = await d.store.db.transaction().execute((tx) => compactMailbox(tx, m.mailbox_id, { force: opts.force, now }));
      if (n > 0) {
        r.mailboxes++;
        r.messages += n;
      }
    }
    // PostgreSQL keeps deleted rows until a vacuum: the folded pending rows' space is made reusable at once (a small
    // table), so the next messages' rows take it instead of growing the table. Segments are left to autovacuum.
    if (r.messages > 0 && d.store.dialect === 'postgres') await sql`vacuum search_pending`.execute(d.store.db);
    return r;
  };
  /** `mailward serve`: every five seconds. */
  const start = (opts: { logger?: Logger; everyMs?: number } = {}) =>
    startPeriodic(() => runOnce(), {
      firstAfterMs: opts.everyMs ?? 5000,
      everyMs: opts.everyMs ?? 5000,
      onError: (e) => opts.logger?.warn({ code: isAppError(e) ? e.code : 'unexpected' }, 'search index compaction failed'),
    });
  return { runOnce, start };
};
