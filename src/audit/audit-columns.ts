/**
 * The columns of an audit row as the chain is defined over them, in one order: the prepared insert's parameters
 * (audit-service) and the verifier's select (verify-worker, which runs on worker threads and so imports only this).
 * `delegation_chain` is stored by reference (`audit_chains`, joined on `chain_id`); `hash` is stored as 32 raw
 * bytes, `content_hash` as tagged bytes (migration 0040); `id`, `org_id`, `actor_id`, `target_id` and `request_id`
 * as id bytes (storedOfId, migration 0042). `prev_hash` is not stored (0042): it is the previous row's `hash`.
 * `at` is stored as milliseconds since the epoch with `at_text` beside it (storedOfAt, migration 0046).
 * `action`, `actor_type`, `target_type`, `outcome` and `at_text` are stored by reference (`audit_kinds`, joined on
 * `kind_id`; migration 0048).
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

/**
 * The columns an event's kind holds (migration 0048): stored once per distinct combination in `audit_kinds`, the
 * event refers to it by `kind_id`. `at_text` (storedOfAt) is '' on every row the writers store, so it costs nothing
 * there and a byte per row in the event.
 */
export const KIND_COLUMNS = ['action', 'actor_type', 'target_type', 'outcome', 'at_text'] as const;
export type EventKind = { action: string; actor_type: string; target_type: string | null; outcome: string; at_text: string };
/** A kind's lookup key (kinds are compared whole: equal keys, equal kinds). */
export const kindKey = (k: EventKind): string => JSON.stringify([k.action, k.actor_type, k.target_type, k.outcome, k.at_text]);
/** The most kinds a log can hold: `kind_id` is a smallint on PostgreSQL (migration 0048). */
export const MAX_KINDS = 32_767;

/**
 * The columns of a stored audit_event_rows row (migration 0048), fixed-width first as the table has them: the
 * delegation chain by its `chain_id` and the kind by its `kind_id`, the rest of EVENT_COLUMNS in its order.
 */
export const STORED_EVENT_COLUMNS = [
  'seq',
  'at',
  'chain_id',
  'kind_id',
  ...EVENT_COLUMNS.filter((c) => c !== 'seq' && c !== 'at' && c !== 'delegation_chain' && !(KIND_COLUMNS as readonly string[]).includes(c)),
] as readonly (Exclude<(typeof EVENT_COLUMNS)[number], 'delegation_chain' | (typeof KIND_COLUMNS)[number]> | 'chain_id' | 'kind_id')[];

/** The stored table of audit events (migration 0048; `audit_events` is a read-only view of it with the kinds joined). */
export const STORED_EVENT_TABLE = 'audit_event_rows';

/** The columns stored as id bytes (storedOfId). */
export const ID_COLUMNS = ['id', 'org_id', 'actor_id', 'target_id', 'request_id'] as const;

/**
 * The select of EVENT_COLUMNS from the stored tables (`e` events, `c` chains, `k` kinds), for raw SQL readers: `at`
 * is the stored milliseconds, and `at_text` follows `hash` (index 16; atOfStored turns the two into the text). LEFT
 * joins: an event whose chain or kind row is missing reads with nulls there, and fails its hash.
 */
export const EVENT_SELECT = `select ${EVENT_COLUMNS.map((c) =>
  c === 'delegation_chain' ? 'c.chain as delegation_chain' : (KIND_COLUMNS as readonly string[]).includes(c) ? `k.${c}` : `e.${c}`,
).join(
  ', ',
)}, k.at_text from ${STORED_EVENT_TABLE} e left join audit_chains c on c.id = e.chain_id left join audit_kinds k on k.id = e.kind_id`;

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

/**
 * The stored form of `at` (migration 0046): the milliseconds since the epoch (an integer column: 6-8 bytes and a
 * small time index instead of 24 bytes of text) and `at_text`, which is '' when the text is exactly
 * `new Date(ms).toISOString()` (what every writer stores: the clock's ISO-8601 UTC form, STYLE.md), else `=` and
 * the text itself, so every value reads back exactly (the chain covers the text). A text kept that way orders by
 * Date.parse of it, or 0 when it does not parse. Hand-written rather than a library: two cases, nothing to parse.
 */
export const storedOfAt = (text: string): { at: number; at_text: string } => {
  const ms = Date.parse(text);
  if (Number.isFinite(ms) && isoOfMs(ms) === text) return { at: ms, at_text: '' };
  return { at: Number.isFinite(ms) ? ms : 0, at_text: `=${text}` };
};

/**
 * The text of a stored `at` (see storedOfAt). A row whose two columns disagree (a canonical time kept as text, so
 * that `at` could be moved in the time index without changing the hashed text; or a value of another form) reads as
 * text that never verifies: a stored time cannot be changed without failing verification.
 */
export const atOfStored = (at: unknown, atText: unknown): string => {
  const ms = typeof at === 'number' ? at : typeof at === 'bigint' || typeof at === 'string' ? Number(at) : Number.NaN;
  if (atText === '' && Number.isSafeInteger(ms)) return isoOfMs(ms);
  if (typeof atText === 'string' && atText.startsWith('=')) {
    const text = atText.slice(1);
    const kept = storedOfAt(text);
    if (kept.at_text === atText && kept.at === ms) return text;
  }
  return `!${String(at)}!${String(atText)}`;
};

/**
 * `new Date(ms).toISOString()` for the common case, with the date part cached: readers turn every row's `at` back
 * into text, and most consecutive rows share their day. Years 0-9999 only (else the Date form, which differs).
 */
const DAY_MS = 86_400_000;
let cachedDay = Number.NaN;
let cachedPrefix = '';
export const isoOfMs = (ms: number): string => {
  if (!Number.isSafeInteger(ms)) return new Date(ms).toISOString();
  const day = Math.floor(ms / DAY_MS);
  if (day !== cachedDay) {
    const d = new Date(day * DAY_MS);
    if (Number.isNaN(d.getTime()) || d.getUTCFullYear() < 0 || d.getUTCFullYear() > 9999) return new Date(ms).toISOString();
    cachedDay = day;
    cachedPrefix = d.toISOString().slice(0, 11);
  }
  let r = ms - day * DAY_MS;
  const milli = r % 1000;
  r = (r - milli) / 1000;
  const sec = r % 60;
  r = (r - sec) / 60;
  const min = r % 60;
  const hour = (r - min) / 60;
  return `${cachedPrefix}${two(hour)}:${two(min)}:${two(sec)}.${milli < 10 ? '00' : milli < 100 ? '0' : ''}${milli}Z`;
};
const two = (n: number) => (n < 10 ? `0${n}` : String(n));

/**
 * The keys of the id columns' indexes (migration 0046), so an index entry is 8 bytes with its length instead of 20
 * (and on PostgreSQL fits one 8-byte alignment unit beside the row pointer). Not unique: a lookup matches the key
 * (the index) and then the whole value (event-rows.ts idIs). The same expressions, as text, in the migration and in
 * the queries: both planners match an expression index by its expression.
 * - `org_id`, `actor_id`, `target_id`: `substr(col, 13, 7)`, the last 7 of a Mailward id's 19 bytes (random bits of
 *   its UUIDv7), so two organisations, actors or targets rarely share a key;
 * - `id`: `substr(id, 4, 7)`, the event id's UUIDv7 timestamp and the byte after it: events are integrated in about
 *   the order their ids were made, so the index grows at its right edge (full pages) instead of at random places
 *   (half-full pages after splits); the events made in one millisecond share a key, which a lookup then rechecks.
 * SQLite's and PostgreSQL's substr of bytes agree on every length (a shorter value gives fewer or no bytes).
 */
export const idKeyOfStored = (col: string, b: Buffer): Buffer => (col === 'id' ? b.subarray(3, 10) : b.subarray(12, 19));
export const idKeySql = (col: string): { from: number; length: number } =>
  col === 'id' ? { from: 4, length: 7 } : { from: 13, length: 7 };
