import { eventRefsOf, messageIdHash, RECEIPT_ACTION } from '../audit/receipts.js';
import type { AuditService } from '../audit/audit-service.js';
import { eventHashRef } from '../audit/integrator.js';
import { sha256Hex } from '../kernel/crypto/hash.js';
import type { Executor } from '../store/db.js';
import { IDENTITY_HEADER } from './identity-header.js';
import { headerValue, relaxedBodyHash, splitMessage } from './mime.js';

/**
 * What a recipient can recompute from the message it holds (a relay adds
 * header fields above ours, so the whole bytes are not it): the Message-ID,
 * the relaxed body (the DKIM bh= digest, in hex) and the X-Agent-Identity token.
 */
export const receiptHashes = (raw: Buffer) => {
  const { header, body } = splitMessage(raw);
  return {
    messageIdHash: messageIdHash(headerValue(header, 'Message-ID') ?? ''),
    contentHash: Buffer.from(relaxedBodyHash(body), 'base64').toString('hex'),
    identityHeaderHash: sha256Hex((headerValue(header, IDENTITY_HEADER) ?? '').replace(/\s+/g, '')),
  };
};

/**
 * Appends the delivered message's receipt leaf, in the delivery's transaction:
 * only hashes, no organisation, actor, address or name, so the public receipt
 * endpoint reveals nothing else. It names the submission, approval and delivery
 * events by chain hash, so one inclusion proof binds all three. Those events may not be sequenced yet:
 * they are named by id and the integrator writes their chain hashes in (integrator.ts, eventHashRef).
 */
export const recordReceipt = async (
  tx: Executor,
  audit: Pick<AuditService, 'record'>,
  emailId: string,
  raw: Buffer,
  rawHash: string | null,
  deliveryEventId: string,
  opts: { approved?: boolean; submissionEventId?: string | null } = {},
) => {
  const h = receiptHashes(raw);
  // The message row keeps its submission event's id (0047): named by id, the integrator writes its chain hash in
  // whether or not it is sequenced yet, with no look-up here. Messages stored before 0047 look it up by target.
  const submitted = opts.submissionEventId
    ? [{ hash: eventHashRef(opts.submissionEventId) }]
    : await eventRefsOf(tx, emailId, ['email.submitted']);
  // The reviewer's decision (a successful email.approved is audited against the email; refusals against the approval).
  // A message that never had an approval (`approved: false`: its approval_id is null) has no such event to look up.
  const approved = opts.approved === false ? [] : await eventRefsOf(tx, emailId, ['email.approved']);
  await audit.record(tx, {
    action: RECEIPT_ACTION,
    actor: { type: 'system', id: null, orgId: null, chain: [] },
    orgId: null,
    target: { type: 'message_id_hash', id: h.messageIdHash },
    contentHash: h.contentHash,
    details: {
      identity_header_hash: h.identityHeaderHash,
      raw_hash: rawHash,
      submission_event_hash: submitted[0]?.hash ?? null,
      approval_event_hash: approved.at(-1)?.hash ?? null,
      delivery_event_hash: eventHashRef(deliveryEventId),
    },
  });
};
