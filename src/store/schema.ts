import type { Generated } from 'kysely';

/**
 * Row types of every table, shared by both dialects. Timestamps are ISO-8601
 * UTC text; booleans are 0/1 integers; JSON is text. One shape, one set of queries.
 */
import type { SealedValue } from '../kernel/crypto/envelope.js';

export type OrganizationsTable = {
  id: string;
  name: string;
  domain: string;
  created_at: string;
  /** Days after a message's last status change before its sealed content is purged (0012; at least 2190). */
  message_retention_days: number;
  /** A send whose category a recipient's consent does not cover: `hold` (default) or `refuse` (0020). */
  consent_category_mismatch: 'hold' | 'refuse';
  /** The organisation's type-2 NPI (0024). */
  npi?: string | null;
};

export type DepartmentsTable = {
  id: string;
  org_id: string;
  name: string;
  parent_id: string | null;
  created_at: string;
};

export type HumansTable = {
  id: string;
  org_id: string;
  name: string;
  email: string;
  roles: string; // JSON array
  is_active: number;
  created_at: string;
  deactivated_at: string | null;
  /** National Provider Identifier of a clinician (0024). */
  npi?: string | null;
};

export type AgentsTable = {
  id: string;
  org_id: string;
  department_id: string;
  responsible_human_id: string;
  name: string;
  address: string;
  is_active: number;
  created_at: string;
  deactivated_at: string | null;
};

export type ApiKeysTable = {
  id: string;
  org_id: string;
  principal_type: 'human' | 'agent';
  principal_id: string;
  secret_hash: string;
  scopes: string; // JSON array: roles for humans, scopes for agents
  created_at: string;
  created_by: string | null;
  revoked_at: string | null;
  last_used_at: string | null;
  /** 1: the key may only read (GET and HEAD); human keys only. */
  read_only?: number;
};

export type SigningKeysTable = {
  id: string;
  org_id: string | null;
  purpose: 'dkim-ed25519' | 'dkim-rsa' | 'identity-es256' | 'audit-ed25519';
  kid: string;
  public_key: string;
  private_key_sealed: SealedValue;
  created_at: string;
  retired_at: string | null;
};

export type KeyRingTable = { version: string; fingerprint: string; created_at: string; retired_at: string | null };

export type SettingsTable = { key: string; value: string };

export type RateLimitBucketsTable = { bucket: string; count: number; expires_at: string };

/**
 * `audit_events` is a read-only view since migration 0048 (the stored rows are `audit_event_rows`, with the kind's
 * columns by reference to `audit_kinds`): the columns below are what it reads as, the kind's joined back.
 */
export type AuditEventsTable = {
  seq: number;
  /** Id bytes (src/audit/audit-columns.ts storedOfId; migration 0042), as are org_id, actor_id, target_id and request_id. */
  id: Buffer;
  /** Milliseconds since the epoch (bigint on PostgreSQL, read as text there), with `at_text` (storedOfAt; migration 0046). */
  at: number;
  org_id: Buffer | null;
  action: string;
  actor_type: string;
  actor_id: Buffer | null;
  /** The delegation chain, by reference (`audit_chains.id`: one row per distinct chain; migration 0040). */
  chain_id: number;
  target_type: string | null;
  target_id: Buffer | null;
  outcome: 'success' | 'denied' | 'error';
  request_id: Buffer | null;
  client_ip: string | null;
  /** Tagged bytes: 0x01 + SHA-256, or 0x00 + UTF-8 text (src/audit/audit-columns.ts). */
  content_hash: Buffer | null;
  details: string; // JSON
  /** 32 raw bytes (BLOB / bytea); src/audit/event-rows.ts gives readers the hex form the chain is defined over. The previous row's is its prev_hash (not stored, migration 0042). */
  hash: Buffer;
  /** '' when the time's text is the ISO-8601 form of `at`, else `=` and the text (src/audit/audit-columns.ts storedOfAt). */
  at_text: string;
  /** The event's `audit_kinds` row (migration 0048). */
  kind_id: number;
};

/**
 * The stored audit events (migration 0048): AuditEventsTable's columns without the kind's, which are stored once per
 * distinct combination in `audit_kinds` and referred to by `kind_id`. Written by the integrator only; append-only
 * (the retention purge deletes below its boundary).
 */
export type AuditEventRowsTable = Omit<AuditEventsTable, 'action' | 'actor_type' | 'target_type' | 'outcome' | 'at_text'>;

/**
 * Distinct `(action, actor_type, target_type, outcome, at_text)` of audit events (migration 0048), append-only;
 * events refer to them by `id` (at most 32,767: smallint on PostgreSQL).
 */
export type AuditKindsTable = {
  id: number;
  action: string;
  actor_type: string;
  target_type: string | null;
  outcome: 'success' | 'denied' | 'error';
  at_text: string;
};

/** Distinct delegation chains (RFC 8785 JSON), append-only; events refer to them by `id`. */
export type AuditChainsTable = { id: number; chain: string };

/** Audit events committed but not yet sequenced (src/audit/integrator.ts); `pid` orders them. */
export type AuditPendingTable = {
  pid: number;
  id: string;
  at: string;
  org_id: string | null;
  action: string;
  actor_type: string;
  actor_id: string | null;
  target_type: string | null;
  target_id: string | null;
  outcome: string;
  request_id: string | null;
  client_ip: string | null;
  content_hash: string | null;
  details: string; // JSON
  delegation_chain: string; // JSON (RFC 8785); the integrator stores it by reference
};
export type AuditPendingInsert = Omit<AuditPendingTable, 'pid'>;
/** As Kysely sees the table: `pid` is assigned by the database. */
export type AuditPendingDbTable = Omit<AuditPendingTable, 'pid'> & { pid: Generated<number> };

export type AuditHeadTable = { id: number; seq: number; hash: string };

/** Stored complete Merkle subtrees (level >= 4) over the audit leaves; see src/audit/tree-store.ts. */
export type AuditTreeNodesTable = { level: number; idx: number; hash: string };

export type AuditTreeStateTable = { id: number; size: number };

export type AuditCheckpointsTable = {
  tree_size: number;
  root_hash: string;
  at: string;
  origin: string;
  key_id: string;
  signature: string; // base64 Ed25519 over the checkpoint text
  note: string; // C2SP signed note
};

/** One witness's answer for one checkpoint (c2sp.org/tlog-witness); written only by audit/witness-client.ts. */
export type AuditCosignaturesTable = {
  tree_size: number;
  witness: string; // the witness's key name
  status: 'cosigned' | 'refused' | 'unreachable';
  http_status: number | null;
  known_size: number | null; // 409: the size the witness last cosigned
  signature_line: string | null; // the tlog-cosignature note line, when cosigned
  cosigned_at: number | null; // its timestamp (POSIX seconds)
  at: string;
};

export type AuditPurgesTable = { id: string; through_seq: number; at: string; cutoff: string; boundary: string /* JSON */ };

export type AuditLegalHoldsTable = {
  id: string;
  org_id: string;
  matter: string;
  created_by: string;
  created_at: string;
  released_by: string | null;
  released_at: string | null;
};

export type VaultSecretKind = 'password' | 'api_key' | 'token' | 'note' | 'totp';

export type VaultSecretsTable = {
  id: string;
  org_id: string;
  agent_id: string;
  name: string;
  kind: VaultSecretKind;
  current_version: number;
  metadata: string; // JSON object, never secret
  created_at: string;
  updated_at: string;
  deleted_at: string | null;
};

export type VaultSecretVersionsTable = {
  id: string;
  secret_id: string;
  org_id: string;
  agent_id: string;
  name: string;
  version: number;
  kind: VaultSecretKind;
  metadata: string; // JSON object
  sealed: SealedValue; // envelope (src/kernel/crypto/envelope.ts)
  created_at: string;
  created_by: string | null;
  deleted_at: string | null;
};

export type OversightMode = 'autonomous' | 'monitored' | 'gated_send' | 'gated_all' | 'read_only';

export type MailboxesTable = {
  id: string;
  org_id: string;
  agent_id: string;
  address: string;
  display_name: string;
  oversight_mode: OversightMode;
  forward_to: string | null;
  created_at: string;
  updated_at: string;
  phi_policy: string | null; // JSON MailboxPhiPolicy; null = the default policy (0006)
  dmarc_failure: 'flag' | 'quarantine'; // inbound mail failing DMARC: flagged or quarantined (0007; quarantine the default since 0010)
  allow_templates?: number; // optional on insert (column default 0); 1: an approved template's sends flow as monitored in gated_send (0021); 0 the default
};

export type MessagesTable = {
  id: string;
  org_id: string;
  mailbox_id: string;
  direction: 'inbound' | 'outbound';
  status: string;
  thread_id: string;
  message_id: string;
  in_reply_to: string | null;
  references_ids: string; // JSON array of RFC 5322 message ids
  created_by_type: string;
  created_by_id: string | null;
  content_sealed: SealedValue; // sealed content document (JSON): addresses, subject, bodies, attachments
  original_sealed: SealedValue | null; // the agent's content before a reviewer's edit
  raw_sealed: SealedValue | null; // the signed RFC 5322 bytes, once queued
  content_hash: string;
  raw_hash: string | null;
  size_bytes: number;
  tags: string; // JSON array: the agent's own labels (inbound, since 0010; outbound: from the send body)
  system_tags: string; // JSON array: tags Mailward derived from content (phi, part2, categories, bounce, unparsed); agents cannot change them (0010)
  status_reason: string | null; // JSON
  approval_id: string | null;
  oversight_mode: string;
  is_read: number;
  created_at: string;
  updated_at: string;
  delivered_at: string | null;
  phi_findings: string | null; // JSON [{type, field, attachment?, start, end, confidence}], never the text (0006)
  phi_sensitivity: string | null; // none | low | moderate | high | restricted (0006)
  /**
   * Inbound only (0007): JSON InboundAuthResults of src/inbound (spf, dkim[], dmarc, arc, flags[]); null for outbound.
   */
  auth_results: string | null;
  /** Outbound only (0009): the consent category the message was sent or approved under (CONSENT_CATEGORIES); null when none was given. */
  category: string | null;
  /** When retention destroyed the sealed content (0012); null while it is kept. */
  content_purged_at: string | null;
  /** The rejected message this one revises (0020). */
  revision_of: string | null;
  /** JSON {id, name, npi, category, grant_id}: the clinician this message was sent for (0024). */
  on_behalf_of?: string | null;
  /** `{id, name, client_id, grant_id}` (JSON) of the human whose OAuth consent let a client send this as the agent (0028). */
  granted_by?: string | null;
  /** Outbound only (0021): the template and version the message was rendered from; null when it was written freely. */
  template_id?: string | null;
  template_version?: number | null;
  /** The content-index key version its search entries were computed under (0032, 0041); null until it is indexed. */
  search_key_version?: number | null;
  /** Outbound (0047): the id of the message's `email.submitted` audit event, which its delivery receipt names; null before 0047 and inbound. */
  submission_event_id?: string | null;
};

export type MessageEventsTable = { id: string; message_id: string; at: string; type: string; details: string };

export type IdempotencyKeysTable = {
  scope: string;
  key: string;
  request_hash: string;
  message_id: string;
  created_at: string;
  expires_at: string;
};

export type ApprovalsTable = {
  id: string;
  org_id: string;
  message_id: string;
  mailbox_id: string;
  direction: string;
  status: 'pending' | 'approved' | 'rejected';
  reasons: string; // JSON array of {code, ...}
  created_at: string;
  expires_at: string;
  decided_at: string | null;
  decided_by: string | null;
  decision_reason: string | null; // JSON {code}
  comment_sealed: SealedValue | null;
  edits: string | null; // JSON [{field, before_hash, after_hash}]
  /** The approval of the rejected message this one revises (0020). */
  revision_of: string | null;
  signature?: string | null; // JSON {signer_id, signer_name, signed_at, meaning, auth_method} (21 CFR 11.50)
};

export type OutboxTable = {
  id: string;
  org_id: string;
  message_id: string;
  kind: 'deliver' | 'copy';
  route: string;
  envelope_sealed: SealedValue;
  actor_chain: string; // JSON: delegation chain the message was sent under
  status: 'pending' | 'sending' | 'done' | 'bounced' | 'failed';
  attempts: number;
  next_attempt_at: string;
  lease_until: string | null;
  claimed_by: string | null;
  last_code: string | null;
  created_at: string;
  updated_at: string;
};

/** Consent to electronic communication per organisation and contact; keyed by SHA-256 of the normalised address (no address stored). */
export type ContactConsentsTable = {
  org_id: string;
  address_hash: string;
  electronic: number;
  categories: string; // JSON array
  source: string;
  recorded_at: string;
  recorded_by_type: 'human' | 'agent';
  recorded_by_id: string;
  version: number;
  updated_at: string;
};

/** Per-organisation HMAC keys of the recipient index (0025), wrapped under the key ring. */
export type RecipientIndexKeysTable = {
  org_id: string;
  version: number;
  key_wrapped: string;
  created_at: string;
  retired_at: string | null;
};

/** HMAC of each normalised sender and recipient address of a message (0025); never the address. */
export type RecipientIndexTable = {
  org_id: string;
  message_id: string;
  role: 'from' | 'to' | 'cc' | 'bcc';
  address_mac: string;
  key_version: number;
  direction: string;
  created_at: string;
};

/**
 * The blind search index (0041, src/mail/search-index.ts): truncated HMACs of (mailbox, field, word), never the
 * word. `message_ref` and the segment bounds are message ids' 16 UUID bytes.
 */
export type SearchPendingTable = { mailbox_id: string; message_ref: Buffer; macs: Buffer };
export type SearchSegmentsTable = { mailbox_id: string; lo: Buffer; hi: Buffer; n: number; gen: number; refs: Buffer };
export type SearchPostingsTable = { lo: Buffer; bucket: number; gen: number; entries: Buffer };

/** A breach incident (0026, 45 CFR 164.400-414). JSON columns: scope, risk_assessment, notice. */
export type BreachIncidentsTable = {
  id: string;
  org_id: string;
  title: string;
  description: string;
  discovered_at: string;
  deadline_at: string;
  state: string | null;
  status: string;
  scope: string | null;
  risk_assessment: string | null;
  notice: string | null;
  created_by: string;
  created_at: string;
  updated_at: string;
};

/** An individual affected by a breach (0026); the address is sealed. */
export type BreachIndividualsTable = {
  id: string;
  incident_id: string;
  contact_hash: string;
  address_sealed: SealedValue;
  phi_types: string;
  message_ids: string;
  email_allowed: number;
  notice_email_id: string | null;
  notified_at: string | null;
};

/** A deadline reminder sent (0026). */
export type BreachRemindersTable = { incident_id: string; days_before: number; sent_at: string };

export type Database = {
  organizations: OrganizationsTable;
  departments: DepartmentsTable;
  humans: HumansTable;
  agents: AgentsTable;
  api_keys: ApiKeysTable;
  signing_keys: SigningKeysTable;
  key_ring: KeyRingTable;
  settings: SettingsTable;
  rate_limit_buckets: RateLimitBucketsTable;
  audit_events: AuditEventsTable;
  audit_event_rows: AuditEventRowsTable;
  audit_kinds: AuditKindsTable;
  audit_chains: AuditChainsTable;
  audit_head: AuditHeadTable;
  audit_pending: AuditPendingDbTable;
  audit_tree_nodes: AuditTreeNodesTable;
  audit_tree_state: AuditTreeStateTable;
  audit_checkpoints: AuditCheckpointsTable;
  audit_cosignatures: AuditCosignaturesTable;
  audit_purges: AuditPurgesTable;
  audit_legal_holds: AuditLegalHoldsTable;
  mailboxes: MailboxesTable;
  messages: MessagesTable;
  message_events: MessageEventsTable;
  idempotency_keys: IdempotencyKeysTable;
  approvals: ApprovalsTable;
  outbox: OutboxTable;
  vault_secrets: VaultSecretsTable;
  vault_secret_versions: VaultSecretVersionsTable;
  contact_consents: ContactConsentsTable;
  event_heads: EventHeadsTable;
  domain_events: DomainEventsTable;
  mail_legal_holds: MailLegalHoldsTable;
  part2_consents: Part2ConsentsTable;
  grants: GrantsTable;
  oauth_records: OauthRecordsTable;
  oauth_client_orgs: OauthClientOrgsTable;
  human_credentials: HumanCredentialsTable;
  human_invitations: HumanInvitationsTable;
  human_sessions: HumanSessionsTable;
  webauthn_credentials: WebauthnCredentialsTable;
  recovery_codes: RecoveryCodesTable;
  auth_challenges: AuthChallengesTable;
  signin_throttles: SigninThrottlesTable;
  sso_configs: SsoConfigsTable;
  webhook_endpoints: WebhookEndpointsTable;
  webhook_secrets: WebhookSecretsTable;
  webhook_deliveries: WebhookDeliveriesTable;
  webhook_attempts: WebhookAttemptsTable;
  templates: TemplatesTable;
  template_versions: TemplateVersionsTable;
  recipient_index_keys: RecipientIndexKeysTable;
  recipient_index: RecipientIndexTable;
  search_pending: SearchPendingTable;
  search_segments: SearchSegmentsTable;
  search_postings: SearchPostingsTable;
  breach_incidents: BreachIncidentsTable;
  breach_individuals: BreachIndividualsTable;
  breach_reminders: BreachRemindersTable;
  reviewer_notification_prefs: ReviewerNotificationPrefsTable;
  approval_escalations: ApprovalEscalationsTable;
};

/** A pre-approved message template (0021); its content lives in its versions. */
export type TemplatesTable = {
  id: string;
  org_id: string;
  name: string;
  created_by: string;
  created_at: string;
  updated_at: string;
  current_version: number;
};

/** One version of a template (0021): approved once by a reviewer who is not its author. */
export type TemplateVersionsTable = {
  template_id: string;
  version: number;
  org_id: string;
  subject: string;
  text: string;
  html: string | null;
  slots: string; // JSON [{name, type, max_length?}]
  category: string | null;
  allowed_phi_types: string; // JSON array of finding types of the version's own text with placeholder values
  content_hash: string; // SHA-256 of the canonical {subject, text, html, slots, category}: what the approval signs
  created_by: string;
  created_at: string;
  status: 'pending' | 'approved' | 'superseded';
  approved_by: string | null;
  approved_at: string | null;
  signature: string | null; // JSON {signer:{id,name}, meaning, method, key_id, at, content_hash}
};

/** A reviewer's notification preference and when the last digest went out (migration 0022). */
export type ReviewerNotificationPrefsTable = {
  human_id: string;
  org_id: string;
  enabled: number;
  batch_minutes: number;
  last_digest_at: string | null;
  updated_at: string;
};

/** An approval already escalated as close to expiry (migration 0022). */
export type ApprovalEscalationsTable = { approval_id: string; org_id: string; escalated_at: string };

/** The last domain-event number given out per organisation (migration 0011). */
export type EventHeadsTable = { org_id: string; seq: number };

/** One fact of the lifecycle log: ids, types and non-PHI facts only (migration 0011). */
export type DomainEventsTable = {
  org_id: string;
  seq: number;
  id: string;
  type: string;
  occurred_at: string;
  mailbox_id: string | null;
  email_id: string | null;
  approval_id: string | null;
  /** JSON object. */
  data: string;
};

/** A legal hold on messages (0012): scope `mailbox` (mailbox id), `thread` (thread id) or `contact` (contact hash). */
export type MailLegalHoldsTable = {
  id: string;
  org_id: string;
  scope: 'mailbox' | 'thread' | 'contact';
  scope_value: string;
  matter: string;
  created_by: string;
  created_at: string;
  released_by: string | null;
  released_at: string | null;
};

/** 42 CFR 2.31: consent to disclose Part 2 records to a recipient (0020): `address` (contact hash) or `domain`. */
export type Part2ConsentsTable = {
  id: string;
  org_id: string;
  recipient_kind: 'address' | 'domain';
  recipient_value: string;
  purpose: string;
  source: string;
  granted_by: string;
  created_at: string;
  expires_at: string | null;
  revoked_at: string | null;
  revoked_by: string | null;
};

export type HumanCredentialsTable = {
  human_id: string;
  org_id: string;
  password_hash: string | null;
  totp_sealed: SealedValue | null;
  totp_confirmed_at: string | null;
  totp_last_step: number | null;
  sso_subject: string | null;
  locked_at: string | null;
  updated_at: string;
};

export type HumanInvitationsTable = {
  id: string;
  org_id: string;
  human_id: string;
  token_hash: string;
  created_at: string;
  created_by: string | null;
  expires_at: string;
  used_at: string | null;
};

/** stage: `enrol` (must enrol a second factor), `second_factor` (password checked, factor not yet), `full`. */
export type HumanSessionsTable = {
  id: string;
  token_hash: string;
  org_id: string;
  human_id: string;
  stage: 'enrol' | 'second_factor' | 'full';
  csrf_token: string;
  auth_method: string | null;
  /** JSON array: roles narrowed by the identity provider's claim at SSO sign-in; null: the human's roles. */
  roles: string | null;
  second_factor_at: string | null;
  second_factor_method: string | null;
  created_at: string;
  last_seen_at: string;
  expires_at: string;
  ended_at: string | null;
  end_reason: string | null;
  client_ip: string | null;
  user_agent: string | null;
};

export type WebauthnCredentialsTable = {
  id: string;
  org_id: string;
  human_id: string;
  public_key: string;
  counter: number;
  transports: string;
  created_at: string;
  last_used_at: string | null;
};

export type RecoveryCodesTable = { id: string; human_id: string; code_hash: string; created_at: string; used_at: string | null };

export type AuthChallengesTable = {
  key_hash: string;
  kind: string;
  org_id: string | null;
  human_id: string | null;
  payload: string;
  expires_at: string;
  used_at: string | null;
};

export type SigninThrottlesTable = { subject: string; failures: number; window_started_at: string; last_failure_at: string };

export type SsoConfigsTable = {
  org_id: string;
  issuer: string;
  client_id: string;
  client_secret_sealed: SealedValue;
  role_claim: string | null;
  role_map: string | null;
  updated_at: string;
};

/** A clinician's authority for an agent to send on their behalf, per category, until an expiry (0024). */
/** OAuth authorization-server state (migration 0027); written only by oauth/oauth-records-repo.ts. */
export type OauthRecordsTable = {
  model: string;
  id_hash: string;
  payload: string;
  grant_id: string | null;
  uid_hash: string | null;
  user_code_hash: string | null;
  expires_at: string | null;
  consumed_at: string | null;
  /** The agent and the granting human of the payload's `accountId` (0039), for revoking their grants. */
  agent_id: string | null;
  human_id: string | null;
};

/** The organisations an OAuth client was let into by a human's first consent (0044); written only by oauth/oauth-consent.ts. */
export type OauthClientOrgsTable = {
  org_id: string;
  client_id: string;
  first_granted_at: string;
  first_granted_by: string;
};

export type GrantsTable = {
  id: string;
  org_id: string;
  agent_id: string;
  clinician_id: string;
  /** JSON array of GRANT_CATEGORIES. */
  categories: string;
  created_by: string;
  created_at: string;
  expires_at: string;
  revoked_at: string | null;
  revoked_by: string | null;
};

/** A webhook receiver of an organisation (migration 0018). `url_sealed`: the URL, sealed (it may carry a token). */
export type WebhookEndpointsTable = {
  id: string;
  org_id: string;
  url_sealed: SealedValue;
  description: string;
  /** JSON array of event types; [] means every type. */
  event_types: string;
  /** JSON array of mailbox ids; [] means every mailbox. */
  mailbox_ids: string;
  status: 'active' | 'disabled';
  disabled_reason: string | null;
  /** The last event `seq` of the organisation's log this endpoint's dispatcher has fanned out. */
  cursor: number;
  /** The highest `seq` handed out for a first attempt from a range lease; (cursor, leased_to] may hold recorded outcomes (0045). */
  leased_to: number;
  /** The worker holding the endpoint's range lease, and until when (0045). */
  leased_by: string | null;
  lease_until: string | null;
  last_success_at: string | null;
  last_failure_at: string | null;
  consecutive_failures: number;
  created_at: string;
  updated_at: string;
  deleted_at: string | null;
};

/** A signing secret of an endpoint (sealed); live while `expires_at` is null or in the future (migration 0018). */
export type WebhookSecretsTable = {
  id: string;
  endpoint_id: string;
  org_id: string;
  secret_sealed: SealedValue;
  created_at: string;
  expires_at: string | null;
};

/** One delivery job: an event for an endpoint (migration 0018). */
export type WebhookDeliveriesTable = {
  id: string;
  org_id: string;
  endpoint_id: string;
  event_id: string;
  event_seq: number;
  is_replay: number;
  status: 'pending' | 'sending' | 'done' | 'failed' | 'cancelled';
  attempts: number;
  next_attempt_at: string;
  first_attempt_at: string | null;
  lease_until: string | null;
  claimed_by: string | null;
  last_status_code: number | null;
  last_error: string | null;
  created_at: string;
  updated_at: string;
};

/** The delivery log: one row per attempt, never the response body (migration 0018). */
export type WebhookAttemptsTable = {
  id: string;
  org_id: string;
  endpoint_id: string;
  delivery_id: string;
  event_id: string;
  attempt: number;
  at: string;
  outcome: 'delivered' | 'failed' | 'refused';
  status_code: number | null;
  latency_ms: number;
  error: string | null;
};
