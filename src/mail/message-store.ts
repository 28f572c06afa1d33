import { open, seal } from '../kernel/crypto/envelope.js';
import { sha256Hex } from '../kernel/crypto/hash.js';
import type { KeyRing } from '../kernel/crypto/keyring.js';
import { newId } from '../kernel/ids.js';
import { parseFindings } from '../phi/outbound-screen.js';
import type { Executor } from '../store/db.js';
import type { ApprovalsTable, MessagesTable } from '../store/schema.js';
import type { MessageContent } from './mime.js';

/**
 * Associated data binding a sealed part to its organisation, mailbox and
 * message (45 CFR 164.312(a)(2)(iv)): a ciphertext copied to another row does
 * not open.
 */
export const messageAad = (m: Pick<MessagesTable, 'org_id' | 'mailbox_id' | 'id'>, part: 'content' | 'original' | 'raw') =>
  `mailward/message/v1|${m.org_id}|${m.mailbox_id}|${m.id}|${part}`;

export const approvalAad = (a: Pick<ApprovalsTable, 'org_id' | 'mailbox_id' | 'id'>) =>
  `mailward/approval/v1|${a.org_id}|${a.mailbox_id}|${a.id}|comment`;

/** The exact bytes sealed for a content document; their SHA-256 is the audit `content_hash`. */
export const contentBytes = (c: MessageContent) => Buffer.from(JSON.stringify(c));

export const sealContent = (
  ring: KeyRing,
  m: Pick<MessagesTable, 'org_id' | 'mailbox_id' | 'id'>,
  c: MessageContent,
  part: 'content' | 'original' = 'content',
) => {
  const bytes = contentBytes(c);
  return { sealed: seal(ring, bytes, messageAad(m, part)), hash: sha256Hex(bytes) };
};

export const openContent = (
  ring: KeyRing,
  m: Pick<MessagesTable, 'org_id' | 'mailbox_id' | 'id'>,
  sealed: string,
  part: 'content' | 'original' = 'content',
): MessageContent => JSON.parse(open(ring, sealed, messageAad(m, part)).toString()) as MessageContent;

/** Appends one event to a message's own history (what the agent sees on GET /v1/emails/{id}). */
export const addMessageEvent = (tx: Executor, messageId: string, at: string, type: string, details: Record<string, unknown> = {}) =>
  tx
    .insertInto('message_events')
    .values({ id: newId('event'), message_id: messageId, at, type, details: JSON.stringify(details) })
    .execute();

export type EditDiff = { field: string; before_hash: string; after_hash: string };

/** An approval as reviewers see it, with the PHI findings of its message (`m`: the message row, or its two PHI columns). */
export const approvalView = (ring: KeyRing, a: ApprovalsTable, m?: Pick<MessagesTable, 'phi_findings' | 'phi_sensitivity'> | null) => ({
  id: a.id,
  email_id: a.message_id,
  mailbox_id: a.mailbox_id,
  direction: a.direction,
  status: a.status,
  reasons: JSON.parse(a.reasons) as Record<string, unknown>[],
  phi_findings: parseFindings(m?.phi_findings ?? null),
  phi_sensitivity: m?.phi_sensitivity ?? null,
  created_at: a.created_at,
  expires_at: a.expires_at,
  decided_at: a.decided_at,
  decided_by: a.decided_by,
  decision_reason: a.decision_reason ? (JSON.parse(a.decision_reason) as Record<string, unknown>) : null,
  comment: a.comment_sealed ? open(ring, a.comment_sealed, approvalAad(a)).toString() : null,
  edits: a.edits ? (JSON.parse(a.edits) as EditDiff[]) : [],
  // 21 CFR 11.50 signature manifestation; null while pending and for expiries.
  signature: a.signature ? (JSON.parse(a.signature) as SignatureView) : null,
});

export type SignatureView = { signer_id: string; signer_name: string; signed_at: string; meaning: string; auth_method: string };
