import type { SealedColumn } from '../kernel/crypto/sealed-columns.js';
import { vaultAad } from '../vault/vault-repo.js';

/**
 * Every column in the store that holds sealed values. `mailward keys rotate`
 * re-wraps all of them: a domain that starts sealing data adds its column
 * here (and must, or its values become unreadable once an old key is dropped).
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
];
