import { createHmac, hkdfSync } from 'node:crypto';
import type { Logger } from '../kernel/log.js';
import type { AuditService } from '../audit/audit-service.js';
import { systemActor } from '../identity/principal.js';
import type { KeyRing } from '../kernel/crypto/keyring.js';
import { isAppError } from '../kernel/errors.js';
import { startPeriodic } from '../kernel/schedule.js';
import type { SealedValue } from '../kernel/crypto/envelope.js';
import type { Executor, Store } from '../store/db.js';
import type { SearchIndexTable } from '../store/schema.js';
import { openContent } from './message-store.js';
import { firstUnindexed, setSearchKeyVersion, unindexedPage } from './messages-repo.js';
import type { MessageContent } from './mime.js';
import { activeIndexKey, indexKeys } from './recipient-index.js';

/**
 * The blind search index (writer of `search_index`; migration 0032). Search must not decrypt a whole mailbox, and
 * no word of a message may be stored in plaintext, so each message is indexed as a set of keyed hashes:
 *
 * - entries: every word of the body (`b|word`), and every prefix of two or more characters of every word of the
 *   sender (name and address, `f|pre`) and of the subject (`s|pre`). A word is a run of Unicode letters and digits
 *   after NFKC and lower-casing (`foldText`), so `Jane.Doe@Lab.example` gives `jane`, `doe`, `lab`, `example`.
 * - each entry is stored as the first 8 bytes of HMAC-SHA-256(k, mailbox id | entry), where k is derived by HKDF from
 *   the organisation's content-index key (the recipient index's keys, recipient-index.ts: one key ring, one rotation).
 *   The mailbox id in the MAC makes entries of two mailboxes unlinkable.
 *
 * Semantics (what a query finds): the folded query must occur in the sender or subject starting at a word, or in the
 * body as whole words (a word or a phrase). The index narrows a request to the messages holding every word of the
 * query (two characters or more) as an entry; those candidates are then opened and the exact rule decides, so a
 * truncated-MAC collision costs one decryption and never a wrong answer. A query with no word of two characters
 * falls back to decrypting the mailbox within the scan budget, as before the index.
 *
 * Leakage, for someone holding the database but not the master key: per mailbox, which messages share an entry (so
 * how often an unknown word recurs, and the number of distinct words of each message); nothing across mailboxes;
 * no word can be tested without the key. Key rotation (`mailward keys rotate`) recomputes every entry under a new
 * key, so entries made before a rotation cannot be linked to entries made after it.
 */

const MAC_BYTES = 8;
/** Sender and subject words longer than this are indexed (and looked up) by their first PREFIX_MAX characters. */
const PREFIX_MAX = 24;
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

/** Case- and width-insensitive matching, blind to runs of whitespace (wrapped lines, HTML layout). */
export const foldText = (s: string) => s.normalize('NFKC').toLowerCase().replace(/\s+/g, ' ');

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

/** The distinct entries of a message (see the module comment). */
export const entriesOf = (c: Pick<MessageContent, 'from' | 'subject' | 'text' | 'html'>): Set<string> => {
  const f = searchFields(c);
  const out = new Set<string>();
  for (const [tag, text] of [
    ['f', f.from],
    ['s', f.subject],
  ] as const) {
    for (const w of wordsOf(text)) {
      const cs = chars(w);
      // The whole word from two characters, its prefixes from three.
      if (cs.length === MIN_WORD) out.add(`${tag}|${w}`);
      for (let n = PREFIX_MIN; n <= Math.min(cs.length, PREFIX_MAX); n++) out.add(`${tag}|${cs.slice(0, n).join('')}`);
    }
  }
  for (const w of wordsOf(f.body)) {
    const cs = chars(w);
    if (cs.length >= MIN_WORD && !STOPWORDS.has(w)) out.add(`b|${cs.slice(0, WORD_MAX).join('')}`);
  }
  return out;
};

export type SearchKey = { version: number; key: Buffer };

/** The search key derived from an organisation's content-index key (HKDF-SHA-256, RFC 5869). */
export const searchKeyOf = (indexKey: { version: number; key: Buffer }): SearchKey => ({
  version: indexKey.version,
  key: Buffer.from(hkdfSync('sha256', indexKey.key, Buffer.alloc(0), 'mailward/search-index/v1', 32)),
});

const macOf = (key: Buffer, mailboxId: string, entry: string) =>
  createHmac('sha256', key).update(`${mailboxId}|${entry}`).digest().subarray(0, MAC_BYTES);

/** The 16 bytes of a prefixed UUIDv7 id (`msg_` + 32 hex), which sort as the ids do. */
export const refOf = (messageId: string) => Buffer.from(messageId.slice(messageId.indexOf('_') + 1), 'hex');
export const idOfRef = (ref: Buffer) => `msg_${ref.toString('hex')}`;

/** The index rows of a message under `k`. */
export const searchRowsFor = (
  m: { id: string; mailbox_id: string },
  c: Pick<MessageContent, 'from' | 'subject' | 'text' | 'html'>,
  k: SearchKey,
): SearchIndexTable[] => {
  const ref = refOf(m.id);
  const seen = new Set<string>();
  const rows: SearchIndexTable[] = [];
  for (const e of entriesOf(c)) {
    const mac = macOf(k.key, m.mailbox_id, e);
    const hex = mac.toString('hex');
    if (seen.has(hex)) continue; // a truncated-MAC collision within one message
    seen.add(hex);
    rows.push({ mac, message_ref: ref });
  }
  return rows;
};

/** Inserts a new message's index rows (its transaction; a message indexed for the first time). */
export const insertSearchRows = async (tx: Executor, rows: SearchIndexTable[]) => {
  for (let i = 0; i < rows.length; i += 500)
    await tx
      .insertInto('search_index')
      .values(rows.slice(i, i + 500))
      .execute();
};

/**
 * Deletes a message's index rows by their primary key, recomputed from its content under the key it was indexed
 * with (`search_key_version`), so no second index by message is needed. A message that cannot be opened, or whose
 * key is gone, is deleted by a scan of the table: rare (corruption), and correct.
 */
export const deleteSearchRows = async (
  tx: Executor,
  ring: KeyRing,
  m: { id: string; org_id: string; mailbox_id: string; content_sealed: SealedValue; search_key_version?: number | null },
  opened?: MessageContent,
) => {
  if (!m.search_key_version) return; // never indexed (null), or nothing to index (0)
  const ref = refOf(m.id);
  const key = (await indexKeys(tx, ring, m.org_id)).find((k) => k.version === Number(m.search_key_version));
  let c: MessageContent | null = opened ?? null;
  try {
    c ??= openContent(ring, m, m.content_sealed);
  } catch {
    c = null;
  }
  if (!key || !c) {
    await tx.deleteFrom('search_index').where('message_ref', '=', ref).execute();
    return;
  }
  const macs = searchRowsFor(m, c, searchKeyOf(key)).map((r) => r.mac);
  for (let i = 0; i < macs.length; i += 500)
    await tx
      .deleteFrom('search_index')
      .where('mac', 'in', macs.slice(i, i + 500))
      .where('message_ref', '=', ref)
      .execute();
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
 * Up to `limit` message ids, newest first and below `before`, whose entries match every group: the candidates of
 * one scan chunk. One indexed range read per MAC; the intersection is the store's (INTERSECT).
 */
export const searchCandidates = async (ex: Executor, groups: Buffer[][], before: string | undefined, limit: number): Promise<string[]> => {
  const branch = (g: Buffer[]) => {
    let q = ex.selectFrom('search_index').select('message_ref').where('mac', 'in', g);
    if (before) q = q.where('message_ref', '<', refOf(before));
    return q;
  };
  let q = branch(groups[0]!);
  for (const g of groups.slice(1)) q = q.intersect(branch(g));
  const rows = await q.orderBy('message_ref', 'desc').limit(limit).execute();
  return rows.map((r) => idOfRef(Buffer.from(r.message_ref)));
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
          await insertSearchRows(tx, searchRowsFor(m, c, searchKeyOf(k)));
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
