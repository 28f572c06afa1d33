import { open } from '../kernel/crypto/envelope.js';
import type { KeyRing } from '../kernel/crypto/keyring.js';
import type { ApprovalRecord, MessageRecord } from '../store/records.js';
import type { ApprovalsTable } from '../store/schema.js';

/** Associated data of an approval's sealed comment: a ciphertext copied to another approval does not open. */
export const approvalAad = (a: Pick<ApprovalsTable, 'org_id' | 'mailbox_id' | 'id'>) =>
  `mailward/approval/v1|${a.org_id}|${a.mailbox_id}|${a.id}|comment`;

export type { EditDiff } from '../store/records.js';

/** An approval as reviewers see it, with the PHI findings of its message (`m`: the message row, or its two PHI columns). */
export const approvalView = (ring: KeyRing, a: ApprovalRecord, m?: Pick<MessageRecord, 'phi_findings' | 'phi_sensitivity'> | null) => ({
  id: a.id,
  email_id: a.message_id,
  mailbox_id: a.mailbox_id,
  direction: a.direction,
  status: a.status,
  reasons: a.reasons,
  phi_findings: m?.phi_findings ?? [],
  phi_sensitivity: m?.phi_sensitivity ?? null,
  created_at: a.created_at,
  expires_at: a.expires_at,
  decided_at: a.decided_at,
  decided_by: a.decided_by,
  decision_reason: a.decision_reason,
  comment: a.comment_sealed ? open(ring, a.comment_sealed, approvalAad(a)).toString() : null,
  edits: a.edits,
  revision_of: a.revision_of ?? null,
  // 21 CFR 11.50 signature manifestation; null while pending and for expiries.
  signature: a.signature,
});

export type { SignatureRecord as SignatureView } from '../store/records.js';
