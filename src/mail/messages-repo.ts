import type { SealedValue } from '../kernel/crypto/envelope.js';
import { appendEvent } from '../events/events-log.js';
import { newId } from '../kernel/ids.js';
import type { Executor } from '../store/db.js';
import type { MessagesTable } from '../store/schema.js';
import type { KeyRing } from '../kernel/crypto/keyring.js';
import type { MessageStatus } from './message-lifecycle.js';
import type { MessageContent } from './mime.js';
import { indexMessage } from './recipient-index.js';

/**
 * The messages table's writer (STYLE.md: one repo per table; the vault repo is the model). Status changes go
 * through `moveMessage` (message-lifecycle.ts); every other write of `messages` and `message_events` is here,
 * with JSON columns mapped from typed values, and the domain events of a new or held message appended in the
 * same transaction.
 */

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
 * Stores a new message with its domain event: `email.submitted` (outbound) or `email.received` (inbound, with
 * the status it was stored in), and its addresses' HMACs in the recipient index (recipient-index.ts), all in one
 * transaction. Facts are non-PHI only.
 */
export const insertMessage = async (
  tx: Executor,
  row: MessagesTable,
  index: { ring: KeyRing; content: Pick<MessageContent, 'from' | 'to' | 'cc' | 'bcc'> },
  facts: Record<string, unknown> = {},
) => {
  await tx.insertInto('messages').values(row).execute();
  await indexMessage(tx, index.ring, row, index.content);
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
 * them first (that copy wins, so every retry and route sends the same bytes).
 */
export const storeSignedOnce = async (ex: Executor, id: string, sealed: SealedValue, hash: string, size: number): Promise<boolean> => {
  const u = await ex
    .updateTable('messages')
    .set({ raw_sealed: sealed, raw_hash: hash, size_bytes: size })
    .where('id', '=', id)
    .where('raw_sealed', 'is', null)
    .executeTakeFirst();
  return Number(u.numUpdatedRows) > 0;
};

/** Appends one event to a message's own history (what the agent sees on GET /v1/emails/{id}). */
export const addMessageEvent = (tx: Executor, messageId: string, at: string, type: string, details: Record<string, unknown> = {}) =>
  tx
    .insertInto('message_events')
    .values({ id: newId('event'), message_id: messageId, at, type, details: JSON.stringify(details) })
    .execute();

/**
 * Retention: replaces a message's sealed content with a sealed tombstone and drops the original and signed
 * bytes, keeping the row's metadata and hashes (so the audit log still verifies). False when it was purged
 * already (another process).
 */
export const purgeContent = async (tx: Executor, id: string, tombstone: SealedValue, at: string): Promise<boolean> => {
  const u = await tx
    .updateTable('messages')
    .set({ content_sealed: tombstone, original_sealed: null, raw_sealed: null, content_purged_at: at })
    .where('id', '=', id)
    .where('content_purged_at', 'is', null)
    .executeTakeFirst();
  return Number(u.numUpdatedRows) === 1;
};
