import { open, type SealedValue, seal } from '../kernel/crypto/envelope.js';
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

/*
 * Message parts are deflated before sealing (kept only when smaller): mail text
 * and HTML shrink to a third or less. Compress-then-encrypt is safe here because
 * these are data at rest; their compressed length is never observed per guess
 * as in CRIME (src/kernel/crypto/envelope.ts SealOptions).
 */
const AT_REST = { compress: true } as const;

export const sealContent = (
  ring: KeyRing,
  m: Pick<MessagesTable, 'org_id' | 'mailbox_id' | 'id'>,
  c: MessageContent,
  part: 'content' | 'original' = 'content',
) => {
  const bytes = contentBytes(c);
  return { sealed: seal(ring, bytes, messageAad(m, part), AT_REST), hash: sha256Hex(bytes) };
};

export const openContent = (
  ring: KeyRing,
  m: Pick<MessagesTable, 'org_id' | 'mailbox_id' | 'id'>,
  sealed: SealedValue,
  part: 'content' | 'original' = 'content',
): MessageContent => JSON.parse(open(ring, sealed, messageAad(m, part)).toString()) as MessageContent;

/** Seals a message's RFC 5322 bytes (received, or signed for sending), deflated like the content. */
export const sealRaw = (ring: KeyRing, m: Pick<MessagesTable, 'org_id' | 'mailbox_id' | 'id'>, raw: Buffer) =>
  seal(ring, raw, messageAad(m, 'raw'), AT_REST);

export const openRaw = (ring: KeyRing, m: Pick<MessagesTable, 'org_id' | 'mailbox_id' | 'id'>, sealed: SealedValue) =>
  open(ring, sealed, messageAad(m, 'raw'));
