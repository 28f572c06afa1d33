import { sql } from 'kysely';
import type { Executor } from '../store/db.js';
import { type EventRow, GENESIS_HASH } from './audit-chain.js';
import { contentHashOfStored, hexOfStored, idOfStored } from './audit-columns.js';

/**
 * Reading audit events as the chain is defined over them (EventRow): every reader of whole rows goes through
 * here, so the storage form (migrations 0040 and 0042: the delegation chain by reference, hashes and ids as bytes,
 * no stored prev_hash) stays in one place. The chain is a LEFT join: an event whose chain row is missing reads as
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
  at: string;
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
  at: r.at,
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
