import type { SealedValue } from '../kernel/crypto/envelope.js';
import type { OutboundContent } from '../phi/outbound-screen.js';
import type { Executor, Tx } from '../store/db.js';
import type { MessageRecord } from '../store/records.js';
import type { MailboxesTable, MessagesTable } from '../store/schema.js';

/** A held message's content as a reviewer edits it (the shape mail seals). */
export type HeldContent = OutboundContent & { from: { name: string; address: string } };

/** The lifecycle transitions a decision makes (the names of mail's transition table). */
export type HeldTransition = 'approve' | 'reject' | 'expire' | 'release' | 'withhold' | 'expireInbound';

/**
 * What the approvals service needs of mail, as a port (STYLE.md: oversight owns decisions, mail owns messages):
 * mail implements it (src/mail/held-mail.ts) and the container wires the two, so oversight imports no mail code.
 */
export type HeldMail = {
  /** The status a transition reaches. */
  statusAfter: (t: HeldTransition) => string;
  /** The transition's compare-and-set; resolves to how many messages moved (0: another process moved it first). */
  move: (tx: Executor, id: string, t: HeldTransition, set: Partial<Omit<MessagesTable, 'id' | 'status'>>) => Promise<number>;
  /** Appends to the message's own history (GET /v1/emails/{id}). */
  note: (tx: Executor, messageId: string, at: string, type: string, details: Record<string, unknown>) => Promise<unknown>;
  /** The held message (read through mail's messages repo), or undefined. */
  byId: (ex: Executor, id: string) => Promise<MessageRecord | undefined>;
  /** Held messages by id (a page of the queue), in no order. */
  byIds: (ex: Executor, ids: readonly string[]) => Promise<MessageRecord[]>;
  /** The PHI columns of messages by id (a page of approvals shows each finding's type and place). */
  phiOf: (ex: Executor, ids: readonly string[]) => Promise<Pick<MessageRecord, 'id' | 'phi_findings' | 'phi_sensitivity'>[]>;
  open: (m: MessageRecord, sealed: SealedValue, part?: 'content' | 'original') => HeldContent;
  seal: (m: MessageRecord, c: HeldContent, part?: 'content' | 'original') => { sealed: SealedValue; hash: string };
  /**
   * After a reviewer's edit: the message's recipient-index and search entries follow its new content (`before` is
   * what the entries were computed from).
   */
  reindex: (tx: Executor, m: MessageRecord, before: HeldContent, after: HeldContent) => Promise<void>;
  /** Plans and writes the outbox jobs of an approved message (signed later by the delivery worker). */
  queue: (tx: Tx, m: MessageRecord, content: HeldContent, mailbox: MailboxesTable) => Promise<void>;
};

/** A reviewer's decision body (REST and MCP share it: `approveBody` in the mail schemas is its wire shape). */
export type DecisionInput = {
  comment?: string;
  category?: string;
  edits?: { subject?: string; text?: string; html?: string; to?: string[]; cc?: string[] };
};
