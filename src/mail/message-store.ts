import { open, seal } from '../kernel/crypto/envelope.js';
import { sha256Hex } from '../kernel/crypto/hash.js';
import type { KeyRing } from '../kernel/crypto/keyring.js';
import type { MessagesTable } from '../store/schema.js';
import type { MessageContent } from './mime.js';

/**
 * Associated data binding a sealed part to its organisation, mailbox and
 * message (45 CFR 164.312(a)(2)(iv)): a ciphertext copied to another row does
 * not open.
 */
export const messageAad = (m: Pick<MessagesTable, 'org_id' | 'mailbox_id' | 'id'>, part: 'content' | 'original' | 'raw') =>
  `mailward/message/v1|${m.org_id}|${m.mailbox_id}|${m.id}|${part}`;

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
