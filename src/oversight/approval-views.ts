import { open } from '../kernel/crypto/envelope.js';
import type { KeyRing } from '../kernel/crypto/keyring.js';
import { parseFindings } from '../phi/outbound-screen.js';
import type { ApprovalsTable, MessagesTable } from '../store/schema.js';

/** Associated data of an approval's sealed comment: a ciphertext copied to another approval does not open. */
export const approvalAad = (a: Pick<ApprovalsTable, 'org_id' | 'mailbox_id' | 'id'>) =>
  `mailward/approval/v1|${a.org_id}|${a.mailbox_id}|${a.id}|comment`;

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
  revision_of: a.revision_of ?? null,
  // 21 CFR 11.50 signature manifestation; null while pending and for expiries.
  signature: a.signature ? (JSON.parse(a.signature) as SignatureView) : null,
});

export type SignatureView = { signer_id: string; signer_name: string; signed_at: string; meaning: string; auth_method: string };
