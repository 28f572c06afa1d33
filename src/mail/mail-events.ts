import { EventEmitter } from 'node:events';

/** A message was stored or changed status (after its transaction committed). No content, no addresses. */
export type MailEvent = {
  org_id: string;
  mailbox_id: string;
  message_id: string;
  direction: 'inbound' | 'outbound';
  status: string;
};

/**
 * In-process notifications of new and changed messages, for waiters such as
 * the MCP `wait_for_email` tool. Publish only after the commit; a subscriber
 * must re-read the store (the event is a wake-up, not the data).
 */
export const createMailEvents = () => {
  const ee = new EventEmitter();
  ee.setMaxListeners(0);
  return {
    publish: (e: MailEvent) => {
      ee.emit('message', e);
    },
    subscribe: (fn: (e: MailEvent) => void): (() => void) => {
      ee.on('message', fn);
      return () => ee.off('message', fn);
    },
  };
};

export type MailEvents = ReturnType<typeof createMailEvents>;
