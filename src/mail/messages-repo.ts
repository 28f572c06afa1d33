import { type ExpressionBuilder, sql } from 'kysely';
import type { SealedValue } from '../kernel/crypto/envelope.js';
import { appendEvent } from '../events/events-log.js';
import { newId } from '../kernel/ids.js';
import { compiledFor, type Dialect, type Executor, runCompiled } from '../store/db.js';
import { mapColumns, objectList, objectOrNull, stringList } from '../store/json-column.js';
import { type AsMessageRecord, MESSAGE_META, type MessageJson, type MessageMetaRow, type MessageRecord } from '../store/records.js';
import type { Database, MessagesTable } from '../store/schema.js';
import type { KeyRing } from '../kernel/crypto/keyring.js';
import type { MessageStatus } from './message-lifecycle.js';
import { activeIndexKey, type IndexedContent, type IndexKey, indexMessage } from './recipient-index.js';
import { deleteSearchEntries, refOf } from './search-index.js';

/**
 * The messages table's repo (STYLE.md: one repo per table; the vault repo is the model). Every read of
 * `messages` is here and answers typed records (`MessageRecord`, JSON columns parsed and checked by
 * `toMessageRecord`). Status changes go through `moveMessage` (message-lifecycle.ts); every other write of
 * `messages` and `message_events` is here, with JSON columns mapped from typed values, and the domain events of
 * a new or held message appended in the same transaction.
 */

/** The one mapping of the messages table's JSON columns to typed values (STYLE.md: JSON is mapped in the repo). */
const MESSAGE_JSON: { [K in keyof MessageJson]: (s: string | null) => MessageJson[K] } = {
  references_ids: (s) => stringList(s, 'messages.references_ids'),
  tags: (s) => stringList(s, 'messages.tags'),
  system_tags: (s) => stringList(s, 'messages.system_tags'),
  status_reason: (s) => objectOrNull(s, 'messages.status_reason'),
  phi_findings: (s) => objectList(s, 'messages.phi_findings', (f) => typeof f.type === 'string'),
  auth_results: (s) => objectOrNull(s, 'messages.auth_results', (a) => Array.isArray(a.flags) && Array.isArray(a.dkim)),
  on_behalf_of: (s) => objectOrNull(s, 'messages.on_behalf_of', (o) => typeof o.id === 'string' && typeof o.name === 'string'),
};

/** A messages row, or any projection of one, with the JSON columns it has parsed; 500 `internal` when one is malformed. */
export const toMessageRecord = <R extends object>(row: R): AsMessageRecord<R> => mapColumns(row, MESSAGE_JSON) as AsMessageRecord<R>;

export type { MessageMeta, MessageMetaRow, MessageRecord } from '../store/records.js';

/** What a new message row is made of, typed (outbound sends and inbound receipt both build rows here). */
export type NewMessage = {
  id: string;
  orgId: string;
  mailboxId: string;
  direction: MessagesTable['direction'];
  status: Extract<MessageStatus, 'pending_approval' | 'received' | 'quarantined'>;
  threadId: string;
  messageId: string;
  inReplyTo: string | null;
  references: string[];
  createdBy: { type: string; id: string | null };
  contentSealed: SealedValue;
  contentHash: string;
  rawSealed?: SealedValue | null;
  rawHash?: string | null;
  sizeBytes?: number;
  /** The agent's own labels. */
  tags?: string[];
  /** Labels Mailward derived from the content (phi, part2, categories, bounce, unparsed). */
  systemTags?: string[];
  statusReason?: Record<string, unknown> | null;
  oversightMode: string;
  isRead: boolean;
  at: string;
  /** Stored PHI findings (type, field, offsets, confidence; never the text). */
  phiFindings: unknown[];
  phiSensitivity: string | null;
  /** Inbound: the authentication results (SPF, DKIM, DMARC, ARC). */
  authResults?: unknown;
  category?: string | null;
  /** The rejected message this one revises. */
  revisionOf?: string | null;
  /** Outbound: the approved template version the message was rendered from. */
  template?: { id: string; version: number } | null;
};

/** The one builder of a message row. */
export const messageRow = (m: NewMessage): MessagesTable => ({
  id: m.id,
  org_id: m.orgId,
  mailbox_id: m.mailboxId,
  direction: m.direction,
  status: m.status,
  thread_id: m.threadId,
  message_id: m.messageId,
  in_reply_to: m.inReplyTo,
  references_ids: JSON.stringify(m.references),
  created_by_type: m.createdBy.type,
  created_by_id: m.createdBy.id,
  content_sealed: m.contentSealed,
  original_sealed: null,
  raw_sealed: m.rawSealed ?? null,
  content_hash: m.contentHash,
  raw_hash: m.rawHash ?? null,
  size_bytes: m.sizeBytes ?? 0,
  tags: JSON.stringify(m.tags ?? []),
  system_tags: JSON.stringify(m.systemTags ?? []),
  status_reason: m.statusReason ? JSON.stringify(m.statusReason) : null,
  approval_id: null,
  oversight_mode: m.oversightMode,
  is_read: m.isRead ? 1 : 0,
  created_at: m.at,
  updated_at: m.at,
  delivered_at: null,
  phi_findings: JSON.stringify(m.phiFindings),
  phi_sensitivity: m.phiSensitivity,
  auth_results: m.authResults === undefined || m.authResults === null ? null : JSON.stringify(m.authResults),
  category: m.category ?? null,
  content_purged_at: null,
  revision_of: m.revisionOf ?? null,
  template_id: m.template?.id ?? null,
  template_version: m.template?.version ?? null,
});

/**
 * One row's insert, compiled once per table and set of columns (src/store/db.ts compiledFor): every stored message
 * runs it. A column whose value is `undefined` is left out, as Kysely's `values()` leaves it out, so the column
 * keeps its default; the columns present name the shape, so rows of different shapes never share a statement.
 */
export const insertRowQuery = <T extends keyof Database>(ex: Executor, table: T, row: Record<string, unknown>) => {
  const cols = Object.keys(row).filter((c) => row[c] !== undefined);
  const compiled = compiledFor(ex, `insertRow:${table}:${cols.join(',')}`, cols.length, (values) =>
    ex.insertInto(table).values(Object.fromEntries(cols.map((c, i) => [c, values[i]])) as never),
  );
  return compiled(...cols.map((c) => row[c]));
};

/**
 * Stores a new message with its domain event: `email.submitted` (outbound) or `email.received` (inbound, with
 * the status it was stored in), its addresses' HMACs in the recipient index and its words in the blind search
 * index (recipient-index.ts, search-index.ts) under the organisation's active content-index key, all in one
 * transaction. Facts are non-PHI only.
 */
export const insertMessage = async (
  tx: Executor,
  row: MessagesTable,
  index: { ring: KeyRing; content: IndexedContent; key?: IndexKey | undefined },
  facts: Record<string, unknown> = {},
) => {
  // `key`: the organisation's newest live key as the caller read it in this transaction (receive-service.ts reads
  // it with the mailbox), the same row activeIndexKey reads first.
  const k = index.key ?? (await activeIndexKey(tx, index.ring, row.org_id, row.created_at));
  await runCompiled(tx, insertRowQuery(tx, 'messages', { ...row, search_key_version: k.version }));
  await indexMessage(tx, k, row, index.content);
  await appendEvent(tx, {
    orgId: row.org_id,
    type: row.direction === 'outbound' ? 'email.submitted' : 'email.received',
    at: row.created_at,
    mailboxId: row.mailbox_id,
    emailId: row.id,
    data: { status: row.status, direction: row.direction, ...facts },
  });
};

/**
 * Records the content-index key a message's search entries were computed under (re-key, back-fill); with
 * `onlyIfUnindexed`, a compare-and-set that is false when another process indexed it first.
 */
export const setSearchKeyVersion = async (tx: Executor, id: string, version: number, onlyIfUnindexed = false): Promise<boolean> => {
  let q = tx.updateTable('messages').set({ search_key_version: version }).where('id', '=', id);
  if (onlyIfUnindexed) q = q.where('search_key_version', 'is', null);
  return Number((await q.executeTakeFirst()).numUpdatedRows) === 1;
};

/**
 * Ties a held (or, inbound, quarantined) message to the approval that holds it, with the domain event
 * `email.held` or `email.quarantined` and the reasons' codes.
 */
export const holdMessage = async (
  tx: Executor,
  m: Pick<MessagesTable, 'id' | 'org_id' | 'mailbox_id' | 'direction' | 'status'>,
  hold: {
    approvalId: string;
    reasons: readonly Record<string, unknown>[];
    at: string;
    expiresAt: string;
    statusReason?: Record<string, unknown>;
  },
) => {
  await tx
    .updateTable('messages')
    .set({ approval_id: hold.approvalId, ...(hold.statusReason ? { status_reason: JSON.stringify(hold.statusReason) } : {}) })
    .where('id', '=', m.id)
    .execute();
  await appendEvent(tx, {
    orgId: m.org_id,
    type: m.status === 'quarantined' ? 'email.quarantined' : 'email.held',
    at: hold.at,
    mailboxId: m.mailbox_id,
    emailId: m.id,
    approvalId: hold.approvalId,
    data: { direction: m.direction, reasons: hold.reasons.map((r) => String(r.code)), expires_at: hold.expiresAt },
  });
};

/** An agent opened an inbound message. */
export const markRead = (tx: Executor, id: string, at: string) =>
  tx.updateTable('messages').set({ is_read: 1, updated_at: at }).where('id', '=', id).execute();

/** Replaces the agent's own tags (system tags are another column and stay). */
export const setAgentTags = (tx: Executor, id: string, tags: string[], at: string) =>
  tx
    .updateTable('messages')
    .set({ tags: JSON.stringify(tags), updated_at: at })
    .where('id', '=', id)
    .execute();

/**
 * Keeps the signed bytes of a message the first time it is signed; false when another route or process stored
 * them first (that copy wins, so every retry and route sends the same bytes), or when its content was purged
 * (retention: purged bytes are never written back).
 */
export const storeSignedOnce = async (ex: Executor, id: string, sealed: SealedValue, hash: string, size: number): Promise<boolean> => {
  // Compiled once (src/store/db.ts compiledFor): every first delivery attempt runs it.
  const compiled = compiledFor(ex, 'storeSignedOnce', 4, ([bytes, digest, length, message]) =>
    ex
      .updateTable('messages')
      .set({ raw_sealed: bytes as SealedValue, raw_hash: digest as string, size_bytes: length as number })
      .where('id', '=', message as string)
      .where('raw_sealed', 'is', null)
      .where('content_purged_at', 'is', null),
  );
  return Number((await runCompiled(ex, compiled(sealed, hash, size, id))).numAffectedRows ?? 0) > 0;
};

/** Appends one event to a message's own history (what the agent sees on GET /v1/emails/{id}). */
export const addMessageEvent = async (
  tx: Executor,
  messageId: string,
  at: string,
  type: string,
  details: Record<string, unknown> = {},
): Promise<void> => {
  // Compiled once (src/store/db.ts compiledFor): a sent message writes two or three of these.
  const compiled = compiledFor(tx, 'addMessageEvent', 5, ([id, message, when, kind, facts]) =>
    tx
      .insertInto('message_events')
      .values({ id: id as string, message_id: message as string, at: when as string, type: kind as string, details: facts as string }),
  );
  await runCompiled(tx, compiled(newId('event'), messageId, at, type, JSON.stringify(details)));
};

/**
 * Appends a delivery attempt's event and the event it led to (`delivered`) to a message's history in one
 * statement, in this order (ids taken in order, as two addMessageEvent calls would). Compiled once.
 */
export const addMessageEventPair = async (
  tx: Executor,
  messageId: string,
  at: string,
  first: { type: string; details: Record<string, unknown> },
  second: { type: string; details: Record<string, unknown> },
): Promise<void> => {
  const compiled = compiledFor(tx, 'addMessageEventPair', 10, ([id1, m1, at1, k1, d1, id2, m2, at2, k2, d2]) =>
    tx.insertInto('message_events').values([
      { id: id1 as string, message_id: m1 as string, at: at1 as string, type: k1 as string, details: d1 as string },
      { id: id2 as string, message_id: m2 as string, at: at2 as string, type: k2 as string, details: d2 as string },
    ]),
  );
  const firstId = newId('event');
  const secondId = newId('event');
  await runCompiled(
    tx,
    compiled(
      firstId,
      messageId,
      at,
      first.type,
      JSON.stringify(first.details),
      secondId,
      messageId,
      at,
      second.type,
      JSON.stringify(second.details),
    ),
  );
};

/**
 * Retention: replaces a message's sealed content with a sealed tombstone and drops the original and signed
 * bytes and its search entries, keeping the row's metadata, hashes and recipient-index rows (so the audit log
 * still verifies and disclosures stay accountable). False when it was purged already (another process).
 */
export const purgeContent = async (
  tx: Executor,
  m: Pick<MessagesTable, 'id' | 'org_id' | 'mailbox_id' | 'content_sealed' | 'search_key_version'>,
  tombstone: SealedValue,
  at: string,
): Promise<boolean> => {
  const u = await tx
    .updateTable('messages')
    .set({ content_sealed: tombstone, original_sealed: null, raw_sealed: null, content_purged_at: at })
    .where('id', '=', m.id)
    .where('content_purged_at', 'is', null)
    .executeTakeFirst();
  if (Number(u.numUpdatedRows) !== 1) return false;
  await deleteSearchEntries(tx, m.mailbox_id, [refOf(m.id)]);
  return true;
};

// ---- Readers. Every query of `messages` outside the lifecycle's compare-and-set is below. ----

/** A message by id, whoever owns it (callers that got the id from a row they may see: a job, an approval). */
export const messageById = async (ex: Executor, id: string): Promise<MessageRecord | undefined> => {
  const r = await ex.selectFrom('messages').selectAll().where('id', '=', id).executeTakeFirst();
  return r && (toMessageRecord(r) as MessageRecord);
};

/**
 * A message as the delivery worker reads it before an attempt, with how many outbox jobs it has ever had (every
 * route and copy; done ones included) in the same statement: a message with one job can keep its signed bytes in
 * the attempt's outcome commit (delivery-worker.ts rawFor).
 */
export const messageForDelivery = async (ex: Executor, id: string): Promise<(MessageRecord & { outbox_jobs: number }) | undefined> => {
  // Compiled once (src/store/db.ts compiledFor): every delivery attempt reads it.
  const compiled = compiledFor(ex, 'messageForDelivery', 1, ([message]) =>
    ex
      .selectFrom('messages')
      .selectAll('messages')
      .select((eb) =>
        eb
          .selectFrom('outbox')
          .select(eb.fn.countAll<number>().as('n'))
          .whereRef('outbox.message_id', '=', 'messages.id')
          .as('outbox_jobs'),
      )
      .where('messages.id', '=', message as string),
  );
  const r = (await runCompiled(ex, compiled(id))).rows[0];
  return r && ({ ...(toMessageRecord(r) as MessageRecord), outbox_jobs: Number(r.outbox_jobs) } as MessageRecord & { outbox_jobs: number });
};

/** Messages by id, in no order (missing ids are left out). */
export const messagesByIds = async (ex: Executor, ids: readonly string[]): Promise<MessageRecord[]> =>
  ids.length === 0
    ? []
    : (await ex.selectFrom('messages').selectAll().where('id', 'in', ids).execute()).map((r) => toMessageRecord(r) as MessageRecord);

/** The PHI columns of messages by id (findings' type and place, never text), in no order. */
export const phiOfMessages = async (ex: Executor, ids: readonly string[]) =>
  ids.length === 0
    ? []
    : (await ex.selectFrom('messages').select(['id', 'phi_findings', 'phi_sensitivity']).where('id', 'in', ids).execute()).map(
        toMessageRecord,
      );

/** A message of the organisation (tenant isolation: another organisation's id reads as missing). */
export const messageInOrg = async (ex: Executor, orgId: string, id: string): Promise<MessageRecord | undefined> => {
  const r = await ex.selectFrom('messages').selectAll().where('id', '=', id).where('org_id', '=', orgId).executeTakeFirst();
  return r && (toMessageRecord(r) as MessageRecord);
};

/** A message of the mailbox (isolation by mailbox). */
export const messageInMailbox = async (ex: Executor, mailboxId: string, id: string): Promise<MessageRecord | undefined> => {
  const r = await ex.selectFrom('messages').selectAll().where('id', '=', id).where('mailbox_id', '=', mailboxId).executeTakeFirst();
  return r && (toMessageRecord(r) as MessageRecord);
};

/** A message of the mailbox by its RFC 5322 Message-ID. */
export const messageByMessageId = async (
  ex: Executor,
  mailbox: { id: string; org_id: string },
  messageId: string,
): Promise<MessageRecord | undefined> => {
  const r = await ex
    .selectFrom('messages')
    .selectAll()
    .where('org_id', '=', mailbox.org_id)
    .where('mailbox_id', '=', mailbox.id)
    .where('message_id', '=', messageId)
    .executeTakeFirst();
  return r && (toMessageRecord(r) as MessageRecord);
};

/** The id of the message that revises `id`, if any. */
export const revisionOfMessage = async (ex: Executor, id: string): Promise<string | undefined> =>
  (await ex.selectFrom('messages').select('id').where('revision_of', '=', id).executeTakeFirst())?.id;

/** Where a message stands, without its content: status, thread and delivery time. */
export const messageState = (ex: Executor, id: string) =>
  ex.selectFrom('messages').select(['id', 'status', 'thread_id', 'delivered_at']).where('id', '=', id).executeTakeFirst();

/** The sealed signed bytes of a message and their hash (null until it is first signed). */
export const signedBytesOf = (ex: Executor, id: string) =>
  ex.selectFrom('messages').select(['id', 'org_id', 'mailbox_id', 'raw_sealed', 'raw_hash']).where('id', '=', id).executeTakeFirst();

/** Whether the organisation has a message in the thread. */
export const threadExists = async (ex: Executor, orgId: string, threadId: string): Promise<boolean> =>
  (await ex.selectFrom('messages').select('thread_id').where('thread_id', '=', threadId).where('org_id', '=', orgId).executeTakeFirst()) !==
  undefined;

/**
 * Size of a row's sealed content without reading it where the store allows: PostgreSQL's pg_column_size
 * reads the TOAST header only (length() would detoast every document twice); SQLite reads it from the page cache.
 */
const sealedSize = (dialect: Dialect, col: 'content_sealed' | 'messages.content_sealed') =>
  (dialect === 'postgres' ? sql<number>`pg_column_size(${sql.ref(col)})` : sql<number>`length(${sql.ref(col)})`).as('sealed_len');

/** The SQL filters of a list or search page (the content filters are matched on opened content by the scan). */
export type MessageScanFilter = {
  direction?: 'inbound' | 'outbound';
  status?: string;
  unread?: boolean;
  since?: string;
  until?: string;
  tag?: string;
};

/**
 * One keyset page of a mailbox's messages, newest first, below `before` (an id; src/kernel/cursor.ts carries it
 * on the wire): the list columns (MESSAGE_META) and the sealed content's size, never the content itself.
 */
export const mailboxScanPage = async (
  ex: Executor,
  dialect: Dialect,
  mailboxId: string,
  f: MessageScanFilter,
  before: string | undefined,
  limit: number,
  /** The blind index's candidates (search-index.ts): only these ids are read, and `before` is theirs. */
  only?: readonly string[],
): Promise<MessageMetaRow[]> => {
  let q = ex
    .selectFrom('messages')
    .select([...MESSAGE_META, sealedSize(dialect, 'content_sealed')])
    .where('mailbox_id', '=', mailboxId)
    .orderBy('id', 'desc')
    .limit(limit);
  if (f.direction) q = q.where('direction', '=', f.direction);
  if (f.status) q = q.where('status', '=', f.status);
  if (f.unread !== undefined) q = q.where('is_read', '=', f.unread ? 0 : 1);
  if (f.since) q = q.where('created_at', '>=', f.since);
  if (f.until) q = q.where('created_at', '<', f.until);
  // Tags are a JSON array of [A-Za-z0-9:_.-]; LIKE narrows (escaping _), the caller's exact check on the record decides.
  if (f.tag) {
    const like = `%"${f.tag.replace(/[\\%_]/g, (ch) => `\\${ch}`)}"%`;
    q = q.where((eb) =>
      eb.or([sql<boolean>`${sql.ref('tags')} like ${like} escape '\\'`, sql<boolean>`${sql.ref('system_tags')} like ${like} escape '\\'`]),
    );
  }
  if (only) q = q.where('id', 'in', only);
  else if (before) q = q.where('id', '<', before);
  return (await q.execute()).map((r) => toMessageRecord(r) as MessageMetaRow);
};

/**
 * A thread's messages in the organisation, oldest first, at most 500: the list columns and the sealed size.
 * `agentId` narrows to that agent's mailboxes (an agent reads only its own mail).
 */
export const threadScanPage = async (
  ex: Executor,
  dialect: Dialect,
  q: { orgId: string; threadId: string; agentId: string | null },
): Promise<MessageMetaRow[]> => {
  let s = ex
    .selectFrom('messages')
    .innerJoin('mailboxes', 'mailboxes.id', 'messages.mailbox_id')
    .select([...MESSAGE_META.map((c) => `messages.${c}` as const), sealedSize(dialect, 'messages.content_sealed')])
    .where('messages.thread_id', '=', q.threadId)
    .where('messages.org_id', '=', q.orgId)
    .orderBy('messages.id')
    .limit(500);
  if (q.agentId !== null) s = s.where('mailboxes.agent_id', '=', q.agentId);
  return (await s.execute()).map((r) => toMessageRecord(r) as MessageMetaRow);
};

/** The sealed content of messages by id (a scan's batch), keyed by id. */
export const sealedContentOf = async (ex: Executor, ids: readonly string[]): Promise<Map<string, SealedValue>> =>
  new Map(
    ids.length === 0
      ? []
      : (await ex.selectFrom('messages').select(['id', 'content_sealed']).where('id', 'in', ids).execute()).map((x) => [
          x.id,
          x.content_sealed,
        ]),
  );

/** The mailbox's outbound messages with these RFC 5322 Message-IDs (a bounce report names them). */
export const outboundByMessageIds = (ex: Executor, mailbox: { id: string; org_id: string }, messageIds: readonly string[]) =>
  messageIds.length === 0
    ? Promise.resolve([])
    : ex
        .selectFrom('messages')
        .select(['id', 'status', 'raw_hash', 'thread_id'])
        .where('org_id', '=', mailbox.org_id)
        .where('mailbox_id', '=', mailbox.id)
        .where('direction', '=', 'outbound')
        .where('message_id', 'in', messageIds)
        .execute();

/** A message of the mailbox already stored from the same bytes under the same Message-ID (an SMTP retry). */
export const duplicateOf = async (
  ex: Executor,
  m: Pick<MessagesTable, 'org_id' | 'mailbox_id' | 'message_id'>,
  rawHash: string,
): Promise<string | undefined> =>
  (
    await ex
      .selectFrom('messages')
      .select('id')
      .where('org_id', '=', m.org_id)
      .where('message_id', '=', m.message_id)
      .where('mailbox_id', '=', m.mailbox_id)
      .where('raw_hash', '=', rawHash)
      .executeTakeFirst()
  )?.id;

/**
 * duplicateOf as a scalar subquery, for a statement that reads it together with other tables in one round trip (the
 * inbound store transaction's mailbox read, src/inbound/receive-service.ts): the same rows, at most one id.
 */
export const duplicateIdOf = (
  eb: ExpressionBuilder<Database, 'mailboxes'>,
  m: { org_id: string; mailbox_id: string; message_id: string },
  rawHash: string,
) =>
  eb
    .selectFrom('messages')
    .select('messages.id')
    .where('messages.org_id', '=', m.org_id)
    .where('messages.message_id', '=', m.message_id)
    .where('messages.mailbox_id', '=', m.mailbox_id)
    .where('messages.raw_hash', '=', rawHash)
    .limit(1);

/** The mailbox's messages with these RFC 5322 Message-IDs (threading by In-Reply-To and References), oldest first. */
export const threadLinksOf = (ex: Executor, mailbox: { id: string; org_id: string }, messageIds: readonly string[]) =>
  messageIds.length === 0
    ? Promise.resolve([])
    : ex
        .selectFrom('messages')
        .select(['id', 'thread_id', 'message_id'])
        .where('org_id', '=', mailbox.org_id)
        .where('mailbox_id', '=', mailbox.id)
        .where('message_id', 'in', messageIds)
        .orderBy('id')
        .execute();

/** The mailbox's newest messages since `since` of at most `maxBytes`, newest first (threading by subject). */
export const recentSmallMessages = async (
  ex: Executor,
  mailboxId: string,
  q: { since: string; maxBytes: number; limit: number },
): Promise<MessageRecord[]> =>
  (
    await ex
      .selectFrom('messages')
      .selectAll()
      .where('mailbox_id', '=', mailboxId)
      .where('created_at', '>=', q.since)
      .where('size_bytes', '<=', q.maxBytes)
      .orderBy('id', 'desc')
      .limit(q.limit)
      .execute()
  ).map((r) => toMessageRecord(r) as MessageRecord);

/** Retention: one keyset page (by id, after `after`) of the organisation's settled, unpurged messages last changed before `cutoff`. */
export const purgeCandidates = async (
  ex: Executor,
  q: { orgId: string; cutoff: string; statuses: readonly string[]; after: string; limit: number },
): Promise<MessageRecord[]> =>
  (
    await ex
      .selectFrom('messages')
      .selectAll()
      .where('org_id', '=', q.orgId)
      .where('content_purged_at', 'is', null)
      .where('updated_at', '<', q.cutoff)
      .where('status', 'in', q.statuses)
      .where('id', '>', q.after)
      .orderBy('id')
      .limit(q.limit)
      .execute()
  ).map((r) => toMessageRecord(r) as MessageRecord);

/** Re-keying the recipient index: one keyset page (by id, after `after`) of the organisation's messages. */
export const indexPage = (ex: Executor, orgId: string, after: string, limit: number) =>
  ex
    .selectFrom('messages')
    .select(['id', 'org_id', 'mailbox_id', 'direction', 'created_at', 'content_sealed', 'content_purged_at', 'search_key_version'])
    .where('org_id', '=', orgId)
    .where('id', '>', after)
    .orderBy('id')
    .limit(limit)
    .execute();

/** A message of the mailbox the search back-fill has not indexed yet (partial index 0032), if any. */
export const firstUnindexed = (ex: Executor, mailboxId: string) =>
  ex
    .selectFrom('messages')
    .select('id')
    .where('mailbox_id', '=', mailboxId)
    .where('search_key_version', 'is', null)
    .where('content_purged_at', 'is', null)
    .limit(1)
    .executeTakeFirst();

/** The next messages the search back-fill indexes, oldest first. */
export const unindexedPage = (ex: Executor, limit: number) =>
  ex
    .selectFrom('messages')
    .select(['id', 'org_id', 'mailbox_id', 'content_sealed', 'content_purged_at'])
    .where('search_key_version', 'is', null)
    .orderBy('id')
    .limit(limit)
    .execute();

/** Whether a message of the organisation still has search entries under content-index key `version`. */
export const searchKeyInUse = (ex: Executor, orgId: string, version: number) =>
  ex
    .selectFrom('messages')
    .select('id')
    .where('org_id', '=', orgId)
    .where('search_key_version', '=', version)
    .where('content_purged_at', 'is', null)
    .executeTakeFirst();

// ---- Compliance readers (accounting of disclosures, breach scope): joins read from here too. ----

/**
 * Outbound messages delivered to any of `macs` (the recipient index's HMACs of one contact), with the role the
 * contact had, the sending agent and the approver: the rows of an accounting of disclosures (45 CFR 164.528),
 * ordered by delivery time then id. A message to the contact in several roles appears once per role.
 */
export const deliveredTo = async (ex: Executor, orgId: string, macs: readonly string[], q: { since?: string; until?: string }) => {
  let sel = ex
    .selectFrom('recipient_index as r')
    .innerJoin('messages as m', 'm.id', 'r.message_id')
    .innerJoin('mailboxes as b', 'b.id', 'm.mailbox_id')
    .leftJoin('agents as a', 'a.id', 'b.agent_id')
    .leftJoin('approvals as p', 'p.id', 'm.approval_id')
    .leftJoin('humans as h', 'h.id', 'p.decided_by')
    .select([
      'm.id as email_id',
      'm.delivered_at',
      'm.phi_findings',
      'm.category',
      'r.role',
      'a.id as agent_id',
      'a.name as agent_name',
      'p.decided_by',
      'h.name as approver_name',
    ])
    .where('r.org_id', '=', orgId)
    .where('m.org_id', '=', orgId)
    .where('r.address_mac', 'in', macs)
    .where('r.direction', '=', 'outbound')
    .where('r.role', 'in', ['to', 'cc', 'bcc'])
    .where('m.delivered_at', 'is not', null);
  if (q.since) sel = sel.where('m.delivered_at', '>=', q.since);
  if (q.until) sel = sel.where('m.delivered_at', '<=', q.until);
  return (await sel.orderBy('m.delivered_at').orderBy('m.id').execute()).map(toMessageRecord);
};

/** The filters of a breach scope, as the messages table answers them (`macs`: recipient-index HMACs, null for no recipient filter). */
export type BreachCandidateQuery = {
  orgId: string;
  since?: string;
  until?: string;
  mailboxIds?: readonly string[];
  agentIds?: readonly string[];
  messageIds?: readonly string[];
  macs: readonly string[] | null;
};

/** The organisation's outbound messages matching every given filter, by id: what a breach scope may cover (45 CFR 164.404). */
export const breachCandidates = async (ex: Executor, f: BreachCandidateQuery) => {
  let q = ex
    .selectFrom('messages as m')
    .innerJoin('mailboxes as b', 'b.id', 'm.mailbox_id')
    .select(['m.id', 'm.org_id', 'm.mailbox_id', 'm.content_sealed', 'm.content_purged_at', 'm.phi_findings', 'm.tags', 'm.system_tags'])
    .where('m.org_id', '=', f.orgId)
    .where('m.direction', '=', 'outbound');
  if (f.since) q = q.where('m.created_at', '>=', f.since);
  if (f.until) q = q.where('m.created_at', '<=', f.until);
  if (f.mailboxIds?.length) q = q.where('m.mailbox_id', 'in', f.mailboxIds);
  if (f.agentIds?.length) q = q.where('b.agent_id', 'in', f.agentIds);
  if (f.messageIds?.length) q = q.where('m.id', 'in', f.messageIds);
  if (f.macs) {
    const macs = f.macs;
    if (macs.length === 0) q = q.where('m.id', '=', '');
    else
      q = q.where('m.id', 'in', (eb) =>
        eb.selectFrom('recipient_index').select('message_id').where('org_id', '=', f.orgId).where('address_mac', 'in', macs),
      );
  }
  return (await q.orderBy('m.id').execute()).map(toMessageRecord);
};
