import type { ApprovalsTable, MessagesTable, OutboxTable } from './schema.js';

/*
 * Typed rows of the lifecycle tables (messages, approvals, outbox): what their repos return, with every JSON
 * column parsed and checked (STYLE.md: one repo per table, the mapping of JSON columns lives there). The repos
 * are src/mail/messages-repo.ts, src/oversight/approvals-repo.ts and src/queue/outbox-repo.ts; these types sit
 * in store so that oversight, which sees mail only through its port (oversight/held-mail.ts), shares them.
 * Column names stay those of the table, so a record reads like the row it came from.
 */

/** A stored PHI finding: type, place and confidence, never the matched text. */
export type StoredPhiFinding = {
  type: string;
  field: 'subject' | 'text' | 'html' | 'attachment' | 'attachment_name';
  attachment?: number;
  start: number;
  end: number;
  confidence: number;
};

/**
 * Sender-authentication results of one inbound message (`messages.auth_results`), as shown to agents and
 * reviewers. Built from mailauth's `authenticate()` output; holds domains and verdicts only, never content or
 * addresses of people.
 */
export type InboundAuthResults = {
  spf: { result: string; domain: string | null } | null;
  dkim: { result: string; domain: string | null; selector: string | null; algo: string | null; aligned: boolean }[];
  dmarc: { result: string; policy: string | null; domain: string | null } | null;
  arc: { result: string } | null;
  /** Problems a reader must see, e.g. `dmarc_fail`, `dkim_fail`, `spf_fail`, `no_authentication`. Empty when all passed. */
  flags: string[];
};

/** The clinician a message was sent for (the grant it was sent under). */
export type OnBehalfOf = { id: string; name: string; npi: string | null; category: string; grant_id: string };

/** A reason, as data: `{code, ...facts}` (hold reasons, status reasons, decision reasons). */
export type ReasonRecord = { code: string; [k: string]: unknown };

/** The typed values of the messages table's JSON columns. */
export type MessageJson = {
  references_ids: string[];
  tags: string[];
  system_tags: string[];
  status_reason: Record<string, unknown> | null;
  /** Empty when none were stored. */
  phi_findings: StoredPhiFinding[];
  auth_results: InboundAuthResults | null;
  on_behalf_of: OnBehalfOf | null;
};

/** A row (or a projection of one) of `messages` with its JSON columns typed. */
export type AsMessageRecord<R> = { [K in keyof R]: K extends keyof MessageJson ? MessageJson[K] : R[K] };
export type MessageRecord = AsMessageRecord<Required<MessagesTable>>;

/** The columns list, thread and search read before opening content (no sealed blobs), with the sealed size. */
export const MESSAGE_META = [
  'id',
  'org_id',
  'mailbox_id',
  'direction',
  'status',
  'status_reason',
  'thread_id',
  'message_id',
  'tags',
  'system_tags',
  'is_read',
  'created_at',
  'auth_results',
] as const;
export type MessageMeta = Pick<MessageRecord, (typeof MESSAGE_META)[number]>;
export type MessageMetaRow = MessageMeta & { sealed_len: number };

export type EditDiff = { field: string; before_hash: string; after_hash: string };
export type SignatureRecord = { signer_id: string; signer_name: string; signed_at: string; meaning: string; auth_method: string };

/** The typed values of the approvals table's JSON columns. */
export type ApprovalJson = {
  reasons: ReasonRecord[];
  decision_reason: ReasonRecord | null;
  /** Empty while pending and when a reviewer changed nothing. */
  edits: EditDiff[];
  signature: SignatureRecord | null;
};
export type AsApprovalRecord<R> = { [K in keyof R]: K extends keyof ApprovalJson ? ApprovalJson[K] : R[K] };
export type ApprovalRecord = AsApprovalRecord<Required<ApprovalsTable>>;

/** One link of the delegation chain a job was queued under. */
export type ChainLink = { type: string; id: string; name: string };
export type OutboxRecord = Omit<OutboxTable, 'actor_chain'> & { actor_chain: ChainLink[] };
