/**
 * One error type for the whole application. Adapters map it once: HTTP to
 * application/problem+json, MCP to an isError result, SMTP to a 4xx/5xx reply,
 * the CLI to stderr and a non-zero exit. `detail` must never carry PHI,
 * message bodies, addresses or secrets.
 */
export class AppError extends Error {
  readonly code: string;
  readonly status: number;
  readonly temporary: boolean;
  readonly detail: string;
  readonly extra: Record<string, unknown> | undefined;

  constructor(
    code: string,
    status: number,
    detail: string,
    opts: { temporary?: boolean; extra?: Record<string, unknown>; cause?: unknown } = {},
  ) {
    super(detail, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'AppError';
    this.code = code;
    this.status = status;
    this.detail = detail;
    this.temporary = opts.temporary ?? false;
    this.extra = opts.extra;
  }
}

export const isAppError = (e: unknown): e is AppError => e instanceof AppError;

export const badRequest = (code: string, detail: string, extra?: Record<string, unknown>) => new AppError(code, 400, detail, { extra });
export const unauthorized = (detail = 'A valid API key is required.') => new AppError('unauthorized', 401, detail);
export const forbidden = (code: string, detail: string) => new AppError(code, 403, detail);
/** Resources of another tenant or agent answer 404, never 403 (CONTRACT.md, Auth). */
export const notFound = (what = 'resource') => new AppError('not_found', 404, `No such ${what}.`);
export const conflict = (code: string, detail: string) => new AppError(code, 409, detail);
export const unprocessable = (code: string, detail: string) => new AppError(code, 422, detail);
export const unavailable = (code: string, detail: string) => new AppError(code, 503, detail, { temporary: true });

/** One entry of the error-code catalogue: what a client sees in `code`, with the HTTP status it comes with. */
export type ErrorCodeEntry = { code: string; status: number; summary: string; temporary?: boolean };

/**
 * Every stable `code` Mailward answers with, as data (STYLE.md "Error codes are a catalogue"). The OpenAPI
 * document lists, for each declared error status of a route, the codes of that status from this table, so SDKs
 * can switch on them; `test/openapi-quality.test.ts` scans the source and fails when a code is thrown that is
 * missing here. `status` is the HTTP status (550 marks the one code only the SMTP adapter maps).
 */
export const ERROR_CODES: readonly ErrorCodeEntry[] = [
  { code: 'bad_request', status: 400, summary: 'The request could not be processed.' },
  { code: 'bad_url', status: 400, summary: 'The request path is not a valid URL.' },
  { code: 'bad_content_length', status: 400, summary: 'Content-Length does not match the body.' },
  { code: 'malformed_json', status: 400, summary: 'The body is not valid JSON, or is empty with a JSON content type.' },
  { code: 'validation_failed', status: 400, summary: 'The body, query, path or headers do not match the schema; `errors[]` says where.' },
  { code: 'invalid_unicode', status: 400, summary: 'NUL, a lone surrogate or an escape that is not UTF-8 in the input.' },
  { code: 'invalid_cursor', status: 400, summary: 'A cursor that did not come from `next_cursor`.' },
  { code: 'invalid_filter', status: 400, summary: 'Filters that contradict each other (since after until; search without a criterion).' },
  { code: 'invalid_idempotency_key', status: 400, summary: 'Idempotency-Key is not 1-255 printable ASCII characters.' },
  { code: 'invalid_in_reply_to', status: 400, summary: '`in_reply_to` is not a message of this mailbox.' },
  { code: 'message_required', status: 400, summary: 'No raw message in a message/rfc822 body.' },
  { code: 'unauthorized', status: 401, summary: 'No valid API key (missing, malformed, revoked, or its principal deactivated).' },
  { code: 'scope_required', status: 403, summary: 'The key lacks the scope this action needs.' },
  {
    code: 'insufficient_scope',
    status: 403,
    summary: 'MCP over OAuth: the access token lacks the scope the tool needs; `WWW-Authenticate` names it (RFC 6750 3.1).',
  },
  {
    code: 'oauth_scope_not_allowed',
    status: 422,
    summary: 'OAuth consent: a scope the client did not request, or that the human may not grant.',
  },
  { code: 'oauth_scope_required', status: 422, summary: 'OAuth consent: no scope was chosen.' },
  { code: 'oauth_interaction_expired', status: 400, summary: 'OAuth consent: the authorization request expired or was already answered.' },
  { code: 'role_required', status: 403, summary: 'The human lacks the role this action needs.' },
  { code: 'admin_required', status: 403, summary: 'Only an admin may do this.' },
  { code: 'agent_required', status: 403, summary: 'Only an agent key may do this.' },
  { code: 'agent_only', status: 403, summary: 'Only the agent itself may do this with its vault.' },
  { code: 'mailbox_read_only', status: 403, summary: 'The mailbox is read_only: nothing can be sent from it.' },
  { code: 'message_held', status: 403, summary: 'The message is held for review; its content is not shown.' },
  { code: 'sender_cannot_approve', status: 403, summary: 'The sender of a message may not decide its approval.' },
  { code: 'consent_grant_requires_human', status: 403, summary: 'Only a human may record consent.' },
  { code: 'not_found', status: 404, summary: 'No such resource, or it belongs to another tenant or agent.' },
  { code: 'route_not_found', status: 404, summary: 'No such route.' },
  { code: 'unknown_tool', status: 404, summary: 'No such MCP tool.' },
  { code: 'method_not_allowed', status: 405, summary: 'The stateless MCP endpoint answers only POST.' },
  { code: 'address_taken', status: 409, summary: 'The address is already used by another agent or mailbox.' },
  { code: 'email_taken', status: 409, summary: 'A human with this email exists.' },
  { code: 'last_admin', status: 409, summary: 'The last active admin cannot be deactivated.' },
  { code: 'human_responsible_for_agents', status: 409, summary: 'The human is still responsible for active agents.' },
  { code: 'idempotency_key_reused', status: 409, summary: 'The Idempotency-Key was used with a different body.' },
  { code: 'approval_decided', status: 409, summary: 'The approval was already decided.' },
  { code: 'approval_expired', status: 409, summary: 'The approval expired before the decision.' },
  { code: 'approval_conflict', status: 409, summary: 'The message changed state while the decision was being made.' },
  { code: 'not_approved', status: 409, summary: 'The message is not approved for sending.' },
  { code: 'not_cancellable', status: 409, summary: 'The message is being sent or already final.' },
  { code: 'concurrent_write', status: 409, summary: 'Written concurrently by another request; retry.' },
  { code: 'legal_hold_active', status: 409, summary: 'A legal hold is active.' },
  { code: 'hold_released', status: 409, summary: 'The legal hold was already released.' },
  { code: 'audit_tampered', status: 409, summary: 'The audit chain does not verify; nothing is purged.' },
  { code: 'org_exists', status: 409, summary: 'The store is already initialised.' },
  { code: 'store_not_initialised', status: 409, summary: 'The store has no organisation yet; run mailward init.' },
  { code: 'kek_retired', status: 409, summary: 'The key-encryption key version is retired.' },
  { code: 'master_key_from_env', status: 409, summary: 'The master key comes from the environment; rotate it there.' },
  { code: 'payload_too_large', status: 413, summary: 'The body is larger than this route accepts.' },
  { code: 'message_too_large', status: 413, summary: 'The message is larger than MAILWARD_MAX_MESSAGE_BYTES.' },
  { code: 'unsupported_media_type', status: 415, summary: 'This route does not accept that content type.' },
  { code: 'address_off_domain', status: 422, summary: "The address is not on the organisation's domain." },
  { code: 'forward_to_required', status: 422, summary: 'A monitored mailbox needs forward_to.' },
  { code: 'responsible_human_inactive', status: 422, summary: 'The responsible human is deactivated.' },
  { code: 'principal_inactive', status: 422, summary: 'The human or agent is deactivated.' },
  { code: 'role_not_held', status: 422, summary: "A key's scopes must be roles the human holds." },
  { code: 'incompatible_scopes', status: 422, summary: 'No key may both send and approve.' },
  { code: 'no_consent', status: 422, summary: 'A recipient refused electronic communication.' },
  { code: 'consent_category', status: 422, summary: "A recipient's consent does not cover the message's category." },
  { code: 'categories_without_consent', status: 422, summary: 'Categories given for a refusal of consent.' },
  { code: 'recorded_at_in_future', status: 422, summary: 'recorded_at lies in the future.' },
  { code: 'inbound_not_editable', status: 422, summary: 'Inbound messages cannot be edited on approval.' },
  { code: 'agent_id_required', status: 422, summary: 'An admin must name the agent (`agent_id`) of the vault.' },
  { code: 'value_required', status: 422, summary: 'This kind of secret needs a value.' },
  { code: 'not_totp', status: 422, summary: 'The secret is not a TOTP secret.' },
  { code: 'invalid_totp', status: 422, summary: 'The TOTP seed or otpauth URI is invalid.' },
  { code: 'totp_fields_not_allowed', status: 422, summary: 'TOTP fields on a secret that is not TOTP.' },
  { code: 'totp_not_revealable', status: 422, summary: 'A TOTP seed is never revealed; ask for a code.' },
  { code: 'export_empty', status: 422, summary: 'The audit export range holds no events.' },
  { code: 'proof_unavailable', status: 422, summary: 'No proof for that sequence number and tree size.' },
  { code: 'tree_size_order', status: 422, summary: 'The first tree size must not exceed the second.' },
  { code: 'tree_size_too_small', status: 422, summary: 'The tree size does not include the event.' },
  { code: 'tree_size_too_large', status: 422, summary: 'The tree size is larger than the log.' },
  { code: 'rate_limited', status: 429, summary: 'Too many requests for this key; retry after `retry_after` seconds.', temporary: true },
  { code: 'too_many_concurrent_requests', status: 429, summary: 'Too many MCP requests in flight for this key.', temporary: true },
  { code: 'internal', status: 500, summary: 'An internal error occurred (the log has the request id).' },
  { code: 'secret_integrity_failed', status: 500, summary: 'A sealed secret failed its integrity check (audited).' },
  { code: 'decrypt_failed', status: 500, summary: 'A sealed value could not be opened.' },
  { code: 'audit_chain_broken', status: 500, summary: 'The audit chain is broken.' },
  { code: 'audit_inconsistent', status: 500, summary: 'The audit log is inconsistent with a published checkpoint.' },
  { code: 'audit_tree_incomplete', status: 500, summary: 'The Merkle tree is incomplete.' },
  { code: 'audit_key_missing', status: 500, summary: 'The key that signed a checkpoint is gone.' },
  { code: 'signing_key_missing', status: 500, summary: 'No active DKIM or identity signing key.' },
  { code: 'dkim_failed', status: 500, summary: 'DKIM signing failed.' },
  { code: 'sign_failed', status: 500, summary: 'Signing the message failed.' },
  { code: 'kek_unknown', status: 500, summary: 'A value is sealed under an unknown key-encryption key version.' },
  { code: 'master_key_missing', status: 500, summary: 'The master key is missing.' },
  { code: 'master_key_invalid', status: 500, summary: 'The master key is malformed.' },
  { code: 'master_key_mismatch', status: 500, summary: 'The master key does not open this store.' },
  { code: 'master_key_incomplete', status: 500, summary: 'The key ring lacks a version still in use.' },
  { code: 'migration_failed', status: 500, summary: 'A migration failed.' },
  { code: 'tls_config_invalid', status: 500, summary: 'The TLS key or certificate is invalid.' },
  { code: 'oauth_config_invalid', status: 500, summary: 'An OAuth setting cannot be used (MAILWARD_OAUTH_CIMD_CA_FILE unreadable).' },
  { code: 'dns_overrides_invalid', status: 500, summary: 'MAILWARD_DNS_OVERRIDES is not valid.' },
  {
    code: 'server_busy',
    status: 503,
    summary: 'Too many requests are in progress or waiting; retry after `Retry-After` seconds.',
    temporary: true,
  },
  { code: 'store_busy', status: 503, summary: 'The store is busy with another process; retry shortly.', temporary: true },
  { code: 'store_unavailable', status: 503, summary: 'The store is unreachable or cannot write; retry shortly.', temporary: true },
  { code: 'store_read_only', status: 503, summary: 'The store cannot write (disk full or read-only).', temporary: true },
  { code: 'migration_locked', status: 503, summary: 'Another process holds the migration lock.', temporary: true },
  { code: 'analysis_failed', status: 503, summary: 'The message could not be analysed; retry.', temporary: true },
  { code: 'audit_key_missing', status: 503, summary: 'The installation has no audit signing key; run mailward init.', temporary: true },
  { code: 'already_revised', status: 409, summary: 'The rejected message was revised already; revise the newest revision.' },
  { code: 'backup_dialect_mismatch', status: 400, summary: 'The backup was taken from the other store kind (SQLite or PostgreSQL).' },
  { code: 'backup_exists', status: 409, summary: 'The backup file exists already; choose another --out.' },
  { code: 'backup_invalid', status: 400, summary: 'The backup archive is damaged or not a Mailward backup.' },
  { code: 'backup_missing', status: 400, summary: 'The backup file does not exist.' },
  { code: 'backup_too_new', status: 400, summary: 'The backup holds a newer schema than this Mailward knows; upgrade first.' },
  { code: 'category_required', status: 422, summary: 'A message sent on behalf of a clinician must name its category.' },
  {
    code: 'csrf_failed',
    status: 403,
    summary: 'A state-changing call made with a session lacked the CSRF token or came from another origin.',
  },
  { code: 'data_dir_not_empty', status: 409, summary: 'Restore goes into an empty data directory only.' },
  { code: 'database_not_empty', status: 409, summary: 'Restore goes into an empty database only.' },
  { code: 'expired', status: 422, summary: 'The given expiry is not in the future.' },
  { code: 'grant_expiry', status: 422, summary: 'A grant expires in the future and at most a year ahead.' },
  { code: 'grant_revoked', status: 409, summary: 'The grant was revoked already.' },
  { code: 'invalid_directory', status: 400, summary: 'The key directory given to verify_email is not a valid directory document.' },
  { code: 'invalid_issuer', status: 422, summary: 'The SSO issuer URL does not publish valid OpenID metadata.' },
  { code: 'last_factor', status: 409, summary: 'The last second factor cannot be removed; enrol another first.' },
  { code: 'legal_hold_released', status: 409, summary: 'The legal hold was released already.' },
  { code: 'no_grant', status: 403, summary: 'No live grant lets this agent send for that clinician in this category.' },
  { code: 'no_part2_consent', status: 422, summary: 'Part 2 content to a recipient no live Part 2 consent names; nothing was sent.' },
  { code: 'not_a_clinician', status: 422, summary: 'Only a human with the clinician role can grant authority to send on their behalf.' },
  { code: 'not_revisable', status: 409, summary: 'Only a rejected outbound message can be revised.' },
  { code: 'part2_consent_revoked', status: 409, summary: 'The Part 2 consent was revoked already.' },
  { code: 'passkey_failed', status: 401, summary: 'The passkey assertion did not verify.' },
  { code: 'password_mismatch', status: 422, summary: 'The two passwords typed do not match.' },
  { code: 'pg_dump_failed', status: 500, summary: 'pg_dump failed; its message says why.' },
  { code: 'pg_restore_failed', status: 500, summary: 'pg_restore failed; its message says why.' },
  { code: 'phi_model_unavailable', status: 500, summary: 'MAILWARD_PHI_MODEL names a model that is missing or does not load.' },
  {
    code: 'public_url_required',
    status: 503,
    summary: 'Set MAILWARD_PUBLIC_URL: the console is reached through a host that is not loopback.',
    temporary: true,
  },
  { code: 'read_only_humans_only', status: 422, summary: 'Only human keys can be read-only.' },
  { code: 'read_only_key', status: 403, summary: 'A read-only key may only read.' },
  { code: 'receipt_not_found', status: 404, summary: 'No receipt for this message (not delivered, or not yours).' },
  { code: 'receipt_pending', status: 409, summary: 'No checkpoint covers the delivery yet; retry after the next checkpoint.' },
  { code: 'recipient_required', status: 422, summary: 'Give exactly one of recipient_address or recipient_domain.' },
  { code: 'retention_too_short', status: 422, summary: 'Message retention is at least 2190 days (six years).' },
  { code: 'revision_replies_to_rejected', status: 422, summary: 'A revision cannot reply to the rejected message it replaces.' },
  { code: 'second_factor_failed', status: 401, summary: 'The second factor was wrong or already used.' },
  { code: 'sign_in_failed', status: 401, summary: 'The email or password is wrong (the answer never says which).' },
  {
    code: 'sso_unavailable',
    status: 503,
    summary: 'The identity provider cannot be reached; retry or sign in with a password.',
    temporary: true,
  },
  { code: 'step_up_required', status: 403, summary: 'Deciding through a session needs a recent second factor: `step_up_url` says where.' },
  { code: 'too_many_attempts', status: 429, summary: 'Too many sign-in attempts; wait for Retry-After.', temporary: true },
  { code: 'totp_enrolled', status: 409, summary: 'A TOTP authenticator is enrolled already.' },
  { code: 'weak_password', status: 422, summary: 'The password is too short or on the list of common passwords.' },
  { code: 'wrong_stage', status: 409, summary: 'The session is not at the step this call belongs to.' },
  { code: 'api_key_required', status: 400, summary: 'The command needs MAILWARD_API_KEY (or --key).' },
  { code: 'invalid_time', status: 400, summary: 'A time given to the command is not ISO 8601.' },
  { code: 'breach_notified', status: 409, summary: 'Notices of this breach went out already; its scope is fixed.' },
  { code: 'breach_not_scoped', status: 409, summary: 'Scope the breach incident before sending notices.' },
  { code: 'author_cannot_approve', status: 403, summary: 'The author of a template version can never approve it.' },
  { code: 'comment_required', status: 422, summary: 'A rejection needs a comment.' },
  { code: 'invalid_last_event_id', status: 400, summary: 'Last-Event-ID is not a sequence number this stream issued.' },
  { code: 'invalid_rows', status: 400, summary: 'A row of the bulk file is not valid JSON of the row shape.' },
  { code: 'invalid_slot', status: 422, summary: 'A slot value does not match its type (the slot is named, never the value).' },
  { code: 'template_name_taken', status: 409, summary: 'A template with this name exists already.' },
  { code: 'template_not_approved', status: 409, summary: 'The template has no approved version yet.' },
  { code: 'template_version_decided', status: 409, summary: 'This template version was decided already.' },
  { code: 'template_version_stale', status: 409, summary: 'A newer version of the template exists; approve that one.' },
  { code: 'templates_unavailable', status: 501, summary: 'Template sends are not wired in this process.' },
  { code: 'too_many_streams', status: 429, summary: 'Too many open event streams for this key; close one.', temporary: true },
  { code: 'unknown_slot', status: 422, summary: 'A placeholder names a slot the template does not declare.' },
  { code: 'webhook_disabled', status: 422, summary: 'The webhook endpoint is disabled; enable it first.' },
  { code: 'webhook_url_refused', status: 422, summary: 'The webhook URL is refused by the SSRF rules (`reason` says which).' },
  { code: 'no_recipients', status: 550, summary: 'SMTP only: no valid recipient (550 5.1.1).' },
];

/** The catalogued codes a response of `status` can carry, in catalogue order. */
export const errorCodesFor = (status: number): string[] => [...new Set(ERROR_CODES.filter((e) => e.status === status).map((e) => e.code))];
