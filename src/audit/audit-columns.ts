/**
 * The columns of an audit row as the chain is defined over them, in one order: the prepared insert's parameters
 * (audit-service) and the verifier's select (verify-worker, which runs on worker threads and so imports only this).
 * `delegation_chain` is stored by reference (`audit_chains`, joined on `chain_id`); `prev_hash` and `hash` are
 * stored as 32 raw bytes, `content_hash` as tagged bytes (migration 0040).
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

/**
 * The stored form of `content_hash` (bytes): 0x01 + 32 bytes for a SHA-256 in lowercase hex (what every caller
 * passes), 0x00 + UTF-8 for any other text, so every value reads back exactly (the chain covers the text).
 * Hand-written rather than a library: a two-case tag byte, nothing to parse.
 */
export const storedOfContentHash = (text: string | null): Buffer | null => {
  if (text === null) return null;
  if (/^[0-9a-f]{64}$/.test(text)) return Buffer.concat([Buffer.of(1), Buffer.from(text, 'hex')]);
  return Buffer.concat([Buffer.of(0), Buffer.from(text, 'utf8')]);
};
/** The text of a stored `content_hash` (see storedOfContentHash); a value of another form reads as text that never verifies. */
export const contentHashOfStored = (b: unknown): string | null => {
  if (b === null || b === undefined) return null;
  if (!(b instanceof Uint8Array)) return `!${String(b)}`;
  const buf = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  if (buf[0] === 1 && buf.length === 33) return buf.subarray(1).toString('hex');
  if (buf[0] === 0) return buf.subarray(1).toString('utf8');
  return `!${buf.toString('hex')}`;
};

/** The stored form of a hex hash. */
export const storedOfHex = (hex: string): Buffer => Buffer.from(hex, 'hex');
