import { createHash } from 'node:crypto';
import { canonicalJson } from './canonical.js';

/** The chain starts from 32 zero bytes. */
export const GENESIS_HASH = '0'.repeat(64);

/** The fields of an event that its hash covers: everything but prev_hash and hash. */
export type ChainedEvent = {
  seq: number;
  id: string;
  at: string;
  org_id: string | null;
  action: string;
  actor: { type: string; id: string | null };
  delegation_chain: unknown;
  target: { type: string; id: string } | null;
  outcome: string;
  request_id: string | null;
  client_ip: string | null;
  content_hash: string | null;
  details: unknown;
};

/**
 * hash = SHA-256(prev_hash (32 raw bytes) || JCS(event)), hex, where JCS is
 * RFC 8785 JSON Canonicalization of the event without prev_hash and hash
 * (see canonical.ts). seq is inside the hashed form, so moving a row breaks it.
 */
export const chainHash = (prevHashHex: string, event: ChainedEvent): string =>
  createHash('sha256').update(Buffer.from(prevHashHex, 'hex')).update(canonicalJson(event)).digest('hex');

/**
 * One event as the chain is defined over it: the stored columns with the delegation chain's RFC 8785 text
 * (stored by reference, `audit_chains`), the ids as text (stored as id bytes) and the hashes in hex (stored as 32
 * raw bytes; prev_hash is the previous row's). event-rows.ts reads it.
 */
export type EventRow = {
  seq: number;
  id: string;
  at: string;
  org_id: string | null;
  action: string;
  actor_type: string;
  actor_id: string | null;
  delegation_chain: string;
  target_type: string | null;
  target_id: string | null;
  outcome: string;
  request_id: string | null;
  client_ip: string | null;
  content_hash: string | null;
  details: string; // JSON (RFC 8785)
  /** The previous event's hash (not stored: migration 0042). */
  prev_hash: string;
  hash: string;
};

const q = JSON.stringify;
const HEX64 = /^[0-9a-f]{64}$/;

/**
 * RFC 8785 form of a stored row built by splicing, without parsing the JSON
 * columns: valid because `record` stores those columns already in RFC 8785
 * form. Members appear in the JCS order (UTF-16 code units): action, actor
 * {id, type}, at, client_ip, content_hash, delegation_chain, details, id,
 * org_id, outcome, request_id, seq, target {id, type}. A test checks this
 * against the generic canonicalizer.
 */
export const canonicalOfRow = (r: EventRow): string =>
  `{"action":${q(r.action)},"actor":{"id":${q(r.actor_id)},"type":${q(r.actor_type)}},"at":${q(r.at)},"client_ip":${q(r.client_ip)},"content_hash":${q(r.content_hash)},"delegation_chain":${r.delegation_chain},"details":${r.details},"id":${q(r.id)},"org_id":${q(r.org_id)},"outcome":${q(r.outcome)},"request_id":${q(r.request_id)},"seq":${Number(r.seq)},"target":${r.target_type && r.target_id ? `{"id":${q(r.target_id)},"type":${q(r.target_type)}}` : 'null'}}`;

/**
 * The stored row of an event: the inverse of `chainedOfRow`. JSON columns are
 * kept in RFC 8785 form so verification can splice instead of re-parsing.
 */
export const rowOfChained = (e: ChainedEvent, prevHash: string, hash: string): EventRow => ({
  seq: e.seq,
  id: e.id,
  at: e.at,
  org_id: e.org_id,
  action: e.action,
  actor_type: e.actor.type,
  actor_id: e.actor.id,
  delegation_chain: canonicalJson(e.delegation_chain),
  target_type: e.target?.type ?? null,
  target_id: e.target?.id ?? null,
  outcome: e.outcome,
  request_id: e.request_id,
  client_ip: e.client_ip,
  content_hash: e.content_hash,
  details: canonicalJson(e.details),
  prev_hash: prevHash,
  hash,
});

/** The event a row stands for, with its JSON columns parsed (throws on malformed JSON). */
export const chainedOfRow = (r: EventRow): ChainedEvent => ({
  seq: Number(r.seq),
  id: r.id,
  at: r.at,
  org_id: r.org_id,
  action: r.action,
  actor: { type: r.actor_type, id: r.actor_id },
  delegation_chain: JSON.parse(r.delegation_chain),
  target: r.target_type && r.target_id ? { type: r.target_type, id: r.target_id } : null,
  outcome: r.outcome,
  request_id: r.request_id,
  client_ip: r.client_ip,
  content_hash: r.content_hash,
  details: JSON.parse(r.details),
});

/**
 * Recomputes a row's chain hash from its content and the given previous hash.
 * Fast path: the spliced canonical form; if that disagrees with the stored
 * hash, the full parse-and-canonicalize path decides (rows written before the
 * JSON columns were stored canonically still verify). Returns null when the
 * content cannot even be parsed.
 */
export const recomputeRowHash = (r: EventRow, prevHashHex: string): string | null => {
  // A previous hash that is no 32-byte hash (a tampered or missing row, event-rows.ts) chains nothing.
  if (!HEX64.test(prevHashHex)) return null;
  const fast = createHash('sha256').update(prevHashHex, 'hex').update(canonicalOfRow(r), 'utf8').digest('hex');
  if (fast === r.hash) return fast;
  try {
    return chainHash(prevHashHex, chainedOfRow(r));
  } catch {
    return null;
  }
};
