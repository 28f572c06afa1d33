/**
 * The columns of an audit row as the chain is defined over them, in one order: the prepared insert's parameters
 * (audit-service) and the verifier's select (verify-worker, which runs on worker threads and so imports only this).
 * `delegation_chain` is stored by reference (`audit_chains`, joined on `chain_id`); `hash` is stored as 32 raw
 * bytes, `content_hash` as tagged bytes (migration 0040); `id`, `org_id`, `actor_id`, `target_id` and `request_id`
 * as id bytes (storedOfId, migration 0042). `prev_hash` is not stored (0042): it is the previous row's `hash`.
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
  'hash',
] as const;

/** The columns of a stored audit_events row, in EVENT_COLUMNS' order: the delegation chain by its `chain_id`. */
export const STORED_EVENT_COLUMNS = EVENT_COLUMNS.map((c) => (c === 'delegation_chain' ? 'chain_id' : c)) as readonly (
  | Exclude<(typeof EVENT_COLUMNS)[number], 'delegation_chain'>
  | 'chain_id'
)[];

/** The columns stored as id bytes (storedOfId). */
export const ID_COLUMNS = ['id', 'org_id', 'actor_id', 'target_id', 'request_id'] as const;

/** The select of EVENT_COLUMNS from the stored tables (`e` events, `c` chains), for raw SQL readers. */
export const EVENT_SELECT = `select ${EVENT_COLUMNS.map((c) => (c === 'delegation_chain' ? 'c.chain as delegation_chain' : `e.${c}`)).join(', ')} from audit_events e left join audit_chains c on c.id = e.chain_id`;

/** The drivers hand bytes over as Buffers already; anything else Uint8Array is viewed as one (no copy). */
const asBuffer = (b: Uint8Array): Buffer => (Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength));

/**
 * Hex of a stored hash: 32 bytes. Anything else (a tampered or unmigrated value) reads as a distinct string that
 * is not 64 hex characters, so it never verifies and never equals another row's hash.
 */
export const hexOfStored = (b: unknown): string => {
  if (b instanceof Uint8Array) {
    const hex = asBuffer(b).toString('hex');
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
  const buf = asBuffer(b);
  if (buf[0] === 1 && buf.length === 33) return buf.subarray(1).toString('hex');
  if (buf[0] === 0) return buf.subarray(1).toString('utf8');
  return `!${buf.toString('hex')}`;
};

/** The stored form of a hex hash. */
export const storedOfHex = (hex: string): Buffer => Buffer.from(hex, 'hex');

/**
 * The stored form of an id column (migration 0042). A Mailward id (STYLE.md: a three-letter prefix, `_`, the 32
 * lowercase hex digits of a UUIDv7) is stored as its 3 prefix bytes + the 16 bytes of the UUID (19 bytes instead of
 * 36); any other text as 0x00 + its UTF-8. The first byte tells the forms apart (a-z or 0x00), so every value reads
 * back exactly (the chain covers the text) and equal texts have equal bytes (the indexes and `where` use them).
 * Hand-written rather than a library: a fixed layout, nothing to parse.
 */
export const storedOfId = (text: string): Buffer => {
  if (ID_RE.test(text)) {
    const b = Buffer.allocUnsafe(19);
    b.write(text, 0, 3, 'latin1');
    b.write(text.slice(4), 3, 16, 'hex');
    return b;
  }
  return Buffer.concat([ZERO, Buffer.from(text, 'utf8')]);
};
const ID_RE = /^[a-z]{3}_[0-9a-f]{32}$/;
const ZERO = Buffer.of(0);
export const storedOfIdOrNull = (text: string | null | undefined): Buffer | null =>
  text === null || text === undefined ? null : storedOfId(text);

/** The text of a stored id column (see storedOfId); a value of another form reads as text that never verifies. */
export const idOfStored = (b: unknown): string | null => {
  if (b === null || b === undefined) return null;
  if (!(b instanceof Uint8Array)) return `!${String(b)}`;
  const buf = asBuffer(b);
  // One hex conversion of the whole value, sliced: about a third of the CPU of converting the parts (every reader of rows pays it).
  if (buf.length === 19 && isLower(buf[0]!) && isLower(buf[1]!) && isLower(buf[2]!))
    return `${String.fromCharCode(buf[0]!, buf[1]!, buf[2]!)}_${buf.toString('hex').slice(6)}`;
  if (buf.length > 0 && buf[0] === 0) return buf.toString('utf8', 1);
  return `!${buf.toString('hex')}`;
};
const isLower = (c: number) => c >= 0x61 && c <= 0x7a;
