/**
 * The columns of an audit row as the chain is defined over them, in one order: the prepared insert's parameters
 * (audit-service) and the verifier's select (verify-worker, which runs on worker threads and so imports only this).
 * `delegation_chain` is stored by reference (`audit_chains`, joined on `chain_id`); `prev_hash` and `hash` are
 * stored as 32 raw bytes (migration 0031).
 */
export const EVENT_COLUMNS = [
  'seq',
  'id',
  'at',
  'org_id',
  'action',
  'actor_type',
  'actor_id',
  'delegation_chain',
  'target_type',
  'target_id',
  'outcome',
  'request_id',
  'client_ip',
  'content_hash',
  'details',
  'prev_hash',
  'hash',
] as const;

/** The select of EVENT_COLUMNS from the stored tables (`e` events, `c` chains), for raw SQL readers. */
export const EVENT_SELECT = `select ${EVENT_COLUMNS.map((c) => (c === 'delegation_chain' ? 'c.chain as delegation_chain' : `e.${c}`)).join(', ')} from audit_events e left join audit_chains c on c.id = e.chain_id`;

/**
 * Hex of a stored hash: 32 bytes. Anything else (a tampered or unmigrated value) reads as a distinct string that
 * is not 64 hex characters, so it never verifies and never equals another row's hash.
 */
export const hexOfStored = (b: unknown): string => {
  if (b instanceof Uint8Array) {
    const hex = Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
    return b.byteLength === 32 ? hex : `!${hex}`;
  }
  return `!${String(b)}`;
};

/** The stored form of a hex hash. */
export const storedOfHex = (hex: string): Buffer => Buffer.from(hex, 'hex');
