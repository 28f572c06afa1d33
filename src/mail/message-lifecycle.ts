import type { DomainEventType } from '../events/event-types.js';
import { appendEvents } from '../events/events-log.js';
import type { Executor } from '../store/db.js';
import type { MessagesTable } from '../store/schema.js';

/** CONTRACT.md, Message statuses: outbound, then the inbound ones not already named. */
export const MESSAGE_STATUSES = [
  'pending_approval',
  'rejected',
  'queued',
  'sending',
  'deferred',
  'delivered',
  'bounced',
  'failed',
  'cancelled',
  'received',
  'quarantined',
] as const;
export type MessageStatus = (typeof MESSAGE_STATUSES)[number];

/**
 * Every status change a message may make, as data (STYLE.md: state machines are data). A transition
 * names the statuses it leaves from and the one it reaches; `moveMessage` applies it with a
 * compare-and-set on the status, so when two processes race only one moves the message. The message
 * event and audit action each caller writes are named here too, so the table reads as the lifecycle;
 * the domain event (`domain`) is written by `moveMessage` itself, in the same transaction, for every
 * message it moves.
 */
export const MESSAGE_TRANSITIONS = {
  // Outbound. A new message is stored as pending_approval, then held (an approval opens) or queued.
  queue: { from: ['pending_approval', 'queued'], to: 'queued', event: 'queued', audit: 'email.queued', domain: 'email.queued' },
  approve: { from: ['pending_approval'], to: 'queued', event: 'approved', audit: 'email.approved', domain: 'email.approved' },
  reject: { from: ['pending_approval'], to: 'rejected', event: 'rejected', audit: 'email.rejected', domain: 'email.rejected' },
  expire: { from: ['pending_approval'], to: 'rejected', event: 'expired', audit: 'email.expired', domain: 'email.expired' },
  claim: { from: ['queued', 'deferred'], to: 'sending', event: null, audit: null, domain: null },
  defer: { from: ['queued', 'sending', 'deferred'], to: 'deferred', event: 'deferred', audit: null, domain: 'email.deferred' },
  // A message with several routes is delivered when its last route is; a route that bounced first does not undo that.
  deliver: {
    from: ['queued', 'sending', 'deferred', 'bounced', 'failed'],
    to: 'delivered',
    event: 'delivered',
    audit: 'email.delivered',
    domain: 'email.delivered',
  },
  bounce: {
    from: ['queued', 'sending', 'deferred', 'delivered', 'bounced', 'failed'],
    to: 'bounced',
    event: 'bounced',
    audit: 'email.bounced',
    domain: 'email.bounced',
  },
  fail: {
    from: ['queued', 'sending', 'deferred', 'delivered', 'bounced', 'failed'],
    to: 'failed',
    event: 'failed',
    audit: 'email.failed',
    domain: 'email.failed',
  },
  cancel: {
    from: ['pending_approval', 'queued', 'deferred'],
    to: 'cancelled',
    event: 'cancelled',
    audit: 'email.cancelled',
    domain: 'email.cancelled',
  },
  // Inbound. A received message is stored as received, pending_approval (gated_all, held) or quarantined.
  release: {
    from: ['pending_approval', 'quarantined'],
    to: 'received',
    event: 'released',
    audit: 'email.released',
    domain: 'email.released',
  },
  withhold: { from: ['pending_approval'], to: 'quarantined', event: 'rejected', audit: 'email.rejected', domain: 'email.quarantined' },
  expireInbound: { from: ['pending_approval'], to: 'quarantined', event: 'expired', audit: 'email.expired', domain: 'email.expired' },
} as const satisfies Record<
  string,
  { from: readonly MessageStatus[]; to: MessageStatus; event: string | null; audit: string | null; domain: DomainEventType | null }
>;
export type MessageTransition = keyof typeof MESSAGE_TRANSITIONS;

/** True when some transition of the table takes a message from `from` to `to`. */
export const isLegalTransition = (from: string, to: string): boolean =>
  Object.values(MESSAGE_TRANSITIONS).some((t) => t.to === to && (t.from as readonly string[]).includes(from));

/**
 * Applies one transition of the table to one message or several (the claim of a delivery batch): the
 * status becomes `to` only where it is still one of `from` (compare-and-set), with any other columns
 * in `set`, and each moved message gets the transition's domain event (with `facts`: non-PHI only) in
 * the same transaction. Returns how many messages moved; 0 means another process moved them first, and
 * the caller decides whether that is a 409 or nothing to do. The only code that writes `messages.status`.
 */
export const moveMessage = async (
  tx: Executor,
  ids: string | string[],
  transition: MessageTransition,
  set: Partial<Omit<MessagesTable, 'id' | 'status'>> = {},
  facts: Record<string, unknown> = {},
): Promise<number> => {
  const list = typeof ids === 'string' ? [ids] : ids;
  if (list.length === 0) return 0;
  const t = MESSAGE_TRANSITIONS[transition];
  const update = tx
    .updateTable('messages')
    .set({ ...set, status: t.to })
    .where('id', 'in', list)
    .where('status', 'in', [...t.from]);
  if (t.domain === null) return Number((await update.executeTakeFirst()).numUpdatedRows);
  const moved = await update.returning(['id', 'org_id', 'mailbox_id', 'direction']).execute();
  const at = set.updated_at ?? new Date().toISOString();
  const domain = t.domain;
  await appendEvents(
    tx,
    moved.map((m) => ({
      orgId: m.org_id,
      type: domain,
      at,
      mailboxId: m.mailbox_id,
      emailId: m.id,
      data: { status: t.to, direction: m.direction, ...facts },
    })),
  );
  return moved.length;
};
