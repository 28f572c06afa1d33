import { sql } from 'kysely';
import type { Executor } from '../store/db.js';
import type { EventRow } from './audit-chain.js';
import { contentHashOfStored, hexOfStored } from './audit-columns.js';

/**
 * Reading audit events as the chain is defined over them (EventRow): every reader of whole rows goes through
 * here, so the storage form (migration 0040: the delegation chain by reference, hashes as raw bytes) stays in
 * one place. The chain is a LEFT join: an event whose chain row is missing reads as `null` and fails its hash.
 */
export const selectEventRows = (ex: Executor) =>
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
      'e.prev_hash',
      'e.hash',
    ]);

type Selected = Omit<EventRow, 'delegation_chain' | 'prev_hash' | 'hash' | 'content_hash'> & {
  delegation_chain: string | null;
  content_hash: unknown;
  prev_hash: unknown;
  hash: unknown;
};

/** A selected row in the chain's terms (hex hashes, chain text). */
export const toEventRow = (r: Selected): EventRow => ({
  ...r,
  seq: Number(r.seq),
  delegation_chain: r.delegation_chain ?? 'null',
  content_hash: contentHashOfStored(r.content_hash),
  prev_hash: hexOfStored(r.prev_hash),
  hash: hexOfStored(r.hash),
});

/** Runs a selectEventRows query and converts its rows. */
export const eventRows = async (q: ReturnType<typeof selectEventRows>): Promise<EventRow[]> => (await q.execute()).map(toEventRow);
