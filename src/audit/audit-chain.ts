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

/** hash = SHA-256(prev_hash (32 raw bytes) || JCS(event)), hex. */
export const chainHash = (prevHashHex: string, event: ChainedEvent): string =>
  createHash('sha256').update(Buffer.from(prevHashHex, 'hex')).update(canonicalJson(event)).digest('hex');
