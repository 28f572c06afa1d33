import type { SealedColumn } from '../kernel/crypto/sealed-columns.js';
import { messageAad } from '../mail/message-store.js';
import { approvalAad } from '../oversight/approval-views.js';
import { humanTotpAad } from '../accounts/accounts-service.js';
import { ssoSecretAad } from '../accounts/sso-service.js';
import { outboxAad } from '../mail/outbound-pipeline.js';
import { vaultAad } from '../vault/vault-repo.js';
import { webhookSecretAad, webhookUrlAad } from '../webhooks/webhooks-repo.js';

const messagePart = (part: 'content' | 'original' | 'raw'): SealedColumn => ({
  label: `message ${part}`,
  table: 'messages',
  idColumn: 'id',
  sealedColumn: `${part}_sealed`,
  columns: ['org_id', 'mailbox_id'],
  // Same associated data as src/mail/message-store.ts messageAad.
  aad: (r) => messageAad({ org_id: String(r.org_id), mailbox_id: String(r.mailbox_id), id: String(r.id) }, part),
});

/**
 * Every column in the store that holds sealed values. `mailward keys rotate`
 * re-wraps all of them and start-up checks that the key ring opens every key
 * version they use: a domain that starts sealing data adds its column here
 * (test/key-rotation-coverage.test.ts fails until it does). Null values are
 * skipped (nullable sealed columns).
 */
export const SEALED_COLUMNS: SealedColumn[] = [
  {
    label: 'signing keys',
    table: 'signing_keys',
    idColumn: 'id',
    sealedColumn: 'private_key_sealed',
    columns: ['purpose', 'kid'],
    // Same associated data as src/identity/signing-keys.ts sealContext.
    aad: (r) => `mailward/signing-key/v1|${String(r.purpose)}|${String(r.kid)}`,
  },
  {
    label: 'vault secret versions',
    table: 'vault_secret_versions',
    idColumn: 'id',
    sealedColumn: 'sealed',
    columns: ['org_id', 'agent_id', 'name', 'version', 'kind', 'metadata'],
    aad: (r) =>
      vaultAad({
        org_id: String(r.org_id),
        agent_id: String(r.agent_id),
        name: String(r.name),
        version: Number(r.version),
        kind: r.kind as 'password',
        metadata: String(r.metadata),
      }),
  },
  {
    label: 'breach individuals',
    table: 'breach_individuals',
    idColumn: 'id',
    sealedColumn: 'address_sealed',
    columns: ['incident_id', 'contact_hash'],
    // Same associated data as src/compliance/breach-service.ts individualAad.
    aad: (r) => `mailward/breach-individual/v1|${String(r.incident_id)}|${String(r.contact_hash)}`,
  },
  messagePart('content'),
  messagePart('original'),
  messagePart('raw'),
  {
    label: 'approval comments',
    table: 'approvals',
    idColumn: 'id',
    sealedColumn: 'comment_sealed',
    columns: ['org_id', 'mailbox_id'],
    aad: (r) => approvalAad({ org_id: String(r.org_id), mailbox_id: String(r.mailbox_id), id: String(r.id) }),
  },
  {
    label: 'outbox envelopes',
    table: 'outbox',
    idColumn: 'id',
    sealedColumn: 'envelope_sealed',
    columns: ['org_id', 'message_id'],
    // Same associated data as src/mail/outbound-pipeline.ts where the job is queued.
    aad: (r) => outboxAad(String(r.org_id), String(r.message_id), String(r.id)),
  },
  {
    label: 'human TOTP seeds',
    table: 'human_credentials',
    idColumn: 'human_id',
    sealedColumn: 'totp_sealed',
    columns: ['org_id'],
    aad: (r) => humanTotpAad(String(r.org_id), String(r.human_id)),
  },
  {
    label: 'SSO client secrets',
    table: 'sso_configs',
    idColumn: 'org_id',
    sealedColumn: 'client_secret_sealed',
    columns: [],
    aad: (r) => ssoSecretAad(String(r.org_id)),
  },
  {
    label: 'webhook endpoint URLs',
    table: 'webhook_endpoints',
    idColumn: 'id',
    sealedColumn: 'url_sealed',
    columns: ['org_id'],
    // Same associated data as src/webhooks/webhooks-repo.ts webhookUrlAad.
    aad: (r) => webhookUrlAad({ org_id: String(r.org_id), id: String(r.id) }),
  },
  {
    label: 'webhook signing secrets',
    table: 'webhook_secrets',
    idColumn: 'id',
    sealedColumn: 'secret_sealed',
    columns: ['org_id', 'endpoint_id'],
    aad: (r) => webhookSecretAad({ org_id: String(r.org_id), endpoint_id: String(r.endpoint_id), id: String(r.id) }),
  },
];
