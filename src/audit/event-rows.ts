import { sql } from 'kysely';
import { paddedIn } from '../store/batch.js';
import type { Executor } from '../store/db.js';
import { type EventRow, GENESIS_HASH } from './audit-chain.js';
import { atOfStored, contentHashOfStored, hexOfStored, idKeyOfStored, idKeySql, idOfStored, storedOfId } from './audit-columns.js';

/**
 * Reading audit events as the chain is defined over them (EventRow): every reader of whole rows goes through
 * here, so the storage form (migrations 0040 and 0042: the delegation chain by reference, hashes and ids as bytes,
 * no stored prev_hash; migration 0046: `at` as milliseconds) stays in one place. The chain is a LEFT join: an event whose chain row is missing reads as
 * `null` and fails its hash.
 */
const columns = (ex: Executor) =>
  ex
    .selectFrom('audit_events as e')
    .leftJoin('audit_chains as c', 'c.id', 'e.chain_id')
    .select([
      'e.seq',
      'e.id',
      'e.at',
      'e.org_id',
      'e.action',
      'e.actor_type',
      'e.actor_id',
      sql<string | null>`c.chain`.as('delegation_chain'),
      'e.target_type',
      'e.target_id',
      'e.outcome',
      'e.request_id',
      'e.client_ip',
      'e.content_hash',
      'e.details',
      'e.hash',
      'e.at_text',
    ]);

/**
 * Whole rows with their prev_hash: the previous row's hash (a primary-key lookup), for the first row after a
 * retention purge the purge boundary's anchor, for seq 1 the genesis hash.
 */
export const selectEventRows = (ex: Executor) =>
  columns(ex).select([
    sql<unknown>`(select p.hash from audit_events p where p.seq = e.seq - 1)`.as('prev_hash'),
    sql<string | null>`(select u.boundary from audit_purges u where u.through_seq = e.seq - 1)`.as('purge_boundary'),
  ]);

/** Whole rows without prev_hash (it reads as ''): for `audit verify`, which chains from the previous row itself. */
export const selectChainRows = (ex: Executor) => columns(ex);

type Selected = {
  seq: number | string;
  id: unknown;
  at: unknown;
  at_text: unknown;
  org_id: unknown;
  action: string;
  actor_type: string;
  actor_id: unknown;
  delegation_chain: string | null;
  target_type: string | null;
  target_id: unknown;
  outcome: string;
  request_id: unknown;
  client_ip: string | null;
  content_hash: unknown;
  details: string;
  hash: unknown;
  prev_hash?: unknown;
  purge_boundary?: string | null;
};

const prevOf = (r: Selected): string => {
  if (r.prev_hash === undefined) return '';
  if (r.prev_hash !== null) return hexOfStored(r.prev_hash);
  if (r.purge_boundary) {
    try {
      const anchor = (JSON.parse(r.purge_boundary) as { anchor_hash?: unknown }).anchor_hash;
      if (typeof anchor === 'string') return anchor;
    } catch {
      /* a boundary that does not parse: verify reports it */
    }
  }
  // No previous row: the genesis hash for the first event, else a value that is no hash (the row is missing).
  return Number(r.seq) === 1 ? GENESIS_HASH : '!missing';
};

/** A selected row in the chain's terms (hex hashes, chain text, ids as text). */
export const toEventRow = (r: Selected): EventRow => ({
  seq: Number(r.seq),
  id: idOfStored(r.id) ?? '!null',
  at: atOfStored(r.at, r.at_text),
  org_id: idOfStored(r.org_id),
  action: r.action,
  actor_type: r.actor_type,
  actor_id: idOfStored(r.actor_id),
  delegation_chain: r.delegation_chain ?? 'null',
  target_type: r.target_type,
  target_id: idOfStored(r.target_id),
  outcome: r.outcome,
  request_id: idOfStored(r.request_id),
  client_ip: r.client_ip,
  content_hash: contentHashOfStored(r.content_hash),
  details: r.details,
  prev_hash: prevOf(r),
  hash: hexOfStored(r.hash),
});

/** Runs a selectEventRows or selectChainRows query and converts its rows. */
export const eventRows = async (q: { execute: () => Promise<Selected[]> }): Promise<EventRow[]> => (await q.execute()).map(toEventRow);

/**
 * `col = text` for an id column of audit_events (stored as id bytes, 0042): the index key first (migration 0046
 * indexes `substr(col, from, length)`, audit-columns.ts idKeySql, written here as there so both planners use the
 * index), then the whole value.
 */
export const idIs = (col: string, text: string) => {
  const b = storedOfId(text);
  return sql<boolean>`(${keyOf(col)} = ${idKeyOfStored(bare(col), b)} and ${sql.ref(col)} = ${b})`;
};
/** The column without its table alias (`e.id` is `id`). */
const bare = (col: string) => col.slice(col.lastIndexOf('.') + 1);
/** The index key expression of an id column (audit-columns.ts idKeySql), with literal positions as the index has them. */
const keyOf = (col: string) => {
  const k = idKeySql(bare(col));
  return sql`substr(${sql.ref(col)}, ${sql.lit(k.from)}, ${sql.lit(k.length)})`;
};
/** The same for several values (`col in (...)`, padded to a power of two: paddedIn); an empty list matches nothing. */
export const idIn = (col: string, texts: string[]) => {
  if (texts.length === 0) return sql<boolean>`(1 = 0)`;
  const bs = paddedIn(texts.map(storedOfId));
  return sql<boolean>`(${keyOf(col)} in (${sql.join(bs.map((b) => idKeyOfStored(bare(col), b)))}) and ${sql.ref(col)} in (${sql.join(bs)}))`;
};

/** The stored `at` (milliseconds, migration 0046) of an ISO-8601 time bound, for `where at >= ...` on the time index. */
export const atBound = (iso: string): number => {
  const ms = Date.parse(iso);
  if (!Number.isFinite(ms)) throw new RangeError('audit: a time bound that is not a time');
  return ms;
};

/**
 * The first sequence number at or after a time (`'min', '>='`), or the last before one (`'max', '<'`): an export's
 * `--since` / `--until`, the retention cutoff. A bare `min(seq)` / `max(seq)` lets both SQLite and PostgreSQL answer by
 * walking the primary key from one end and filtering on `at` (their min/max shortcut): a recent `--since`, or the
 * retention cutoff six years back, then walks nearly the whole log. `seq + 0` is not the key, so the shortcut does not
 * apply and the planner takes the time index for the range: the work is proportional to the events in the range,
 * which the export reads and the purge deletes anyway. (`at` is not monotonic in `seq`, since events are sequenced
 * after they commit, so the bound cannot be read off the first index entry.)
 */
export const seqAtBoundQuery = (ex: Executor, fn: 'min' | 'max', op: '>=' | '<', iso: string) =>
  ex
    .selectFrom('audit_events')
    .select(fn === 'min' ? sql<number | null>`min(seq + 0)`.as('s') : sql<number | null>`max(seq + 0)`.as('s'))
    .where('at', op, atBound(iso));
export const seqAtBound = async (ex: Executor, fn: 'min' | 'max', op: '>=' | '<', iso: string): Promise<number | null> => {
  const r = await seqAtBoundQuery(ex, fn, op, iso).executeTakeFirst();
  return r?.s == null ? null : Number(r.s);
};
