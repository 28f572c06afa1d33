import type { KeyRing } from '../kernel/crypto/keyring.js';
import type { HeldMail } from '../oversight/held-mail.js';
import { MESSAGE_TRANSITIONS, moveMessage } from './message-lifecycle.js';
import { openContent, sealContent } from './message-store.js';
import { addMessageEvent, messageById, messagesByIds, phiOfMessages } from './messages-repo.js';
import type { OutboundPipeline } from './outbound-pipeline.js';
import { reindexMessage } from './recipient-index.js';

/** Mail's side of the approvals port: the lifecycle's transitions, sealing and the outbox, for oversight's decisions. */
export const createHeldMail = ({ ring, pipeline }: { ring: KeyRing; pipeline: Pick<OutboundPipeline, 'plan' | 'write'> }): HeldMail => ({
  statusAfter: (t) => MESSAGE_TRANSITIONS[t].to,
  move: (tx, id, t, set) => moveMessage(tx, id, t, set),
  note: (tx, messageId, at, type, details) => addMessageEvent(tx, messageId, at, type, details),
  byId: messageById,
  byIds: messagesByIds,
  phiOf: phiOfMessages,
  open: (m, sealed, part) => openContent(ring, m, sealed, part),
  seal: (m, c, part) => sealContent(ring, m, c, part),
  reindex: (tx, m, before, after) => reindexMessage(tx, ring, m, before, after),
  queue: async (tx, m, content, mailbox) => pipeline.write(tx, m, await pipeline.plan(tx, m, content, mailbox)),
});
