import { sha256Hex } from '../kernel/crypto/hash.js';
import { compileOnce, type Dialect, type Executor, runCompiled } from '../store/db.js';
import type { VaultSecretsTable, VaultSecretVersionsTable } from '../store/schema.js';

/**
 * Associated data of a vault ciphertext: organisation, agent, name, version,
 * kind and a hash of the metadata. A ciphertext copied to another agent, name
 * or version, or a row whose kind or metadata was edited, fails to decrypt
 * (NIST SP 800-38D: GCM authenticates the AAD with the ciphertext).
 */
export const vaultAad = (r: Pick<VaultSecretVersionsTable, 'org_id' | 'agent_id' | 'name' | 'version' | 'kind' | 'metadata'>) =>
  `mailward/vault/v1|${r.org_id}|${r.agent_id}|${r.name}|${Number(r.version)}|${r.kind}|${metadataHash(r.metadata)}`;

/**
 * SHA-256 of a metadata text, remembered for the last texts seen (the TOTP hot path opens the same version
 * many times a second). Metadata is not secret (listing secrets shows it); the memo is emptied when full.
 */
const metadataHashes = new Map<string, string>();
const metadataHash = (metadata: string): string => {
  let h = metadataHashes.get(metadata);
  if (h === undefined) {
    h = sha256Hex(metadata);
    if (metadata.length <= 4096) {
      if (metadataHashes.size >= 1024) metadataHashes.clear();
      metadataHashes.set(metadata, h);
    }
  }
  return h;
};

export const versionId = (secretId: string, version: number) => `${secretId}.v${version}`;

export const createVaultRepo = ({ dialect }: { dialect: Dialect }) => {
  /** The head row of (agent, name), deleted or not; locked on PostgreSQL when writing. */
  const head = (ex: Executor, agentId: string, name: string, lock = false) => {
    let q = ex.selectFrom('vault_secrets').selectAll().where('agent_id', '=', agentId).where('name', '=', name);
    if (lock && dialect === 'postgres') q = q.forUpdate();
    return q.executeTakeFirst();
  };

  // The TOTP hot path, compiled once each: the head by (agent, name), then its current version by
  // (secret, version), both through their unique indexes. Two point look-ups, not one LEFT JOIN: on SQLite
  // 3.54 the joined form ran at about 30 us a call against about 2 us for the pair (raw better-sqlite3, a
  // seeded server database, inside a write transaction), a quarter of the server CPU per code.
  const compileHead = (ex: Executor) =>
    compileOnce(
      (v) =>
        ex
          .selectFrom('vault_secrets')
          .select(['id', 'kind', 'current_version'])
          .where('agent_id', '=', v[0]!)
          .where('name', '=', v[1]!)
          .where('deleted_at', 'is', null),
      2,
    );
  const compileVersion = (ex: Executor) =>
    compileOnce(
      (v) =>
        ex
          .selectFrom('vault_secret_versions')
          .select(['id', 'org_id', 'agent_id', 'name', 'version', 'kind', 'metadata', 'sealed'])
          .where('secret_id', '=', v[0]!)
          .where('version', '=', v[1]!),
      2,
    );
  let headQuery: ReturnType<typeof compileHead> | undefined;
  let versionQuery: ReturnType<typeof compileVersion> | undefined;

  /**
   * The current version of a live secret, with its head (the TOTP hot path). Version columns are null
   * when the head points at a version that is missing: the caller treats that as an integrity failure,
   * not as 404. Undefined when there is no live secret of that name.
   */
  const current = async (ex: Executor, agentId: string, name: string) => {
    headQuery ??= compileHead(ex);
    versionQuery ??= compileVersion(ex);
    const h = (await runCompiled(ex, headQuery(agentId, name))).rows[0];
    if (!h) return undefined;
    const v = (await runCompiled(ex, versionQuery(h.id, h.current_version))).rows[0];
    return {
      secret_id: h.id,
      head_kind: h.kind,
      current_version: h.current_version,
      id: v?.id ?? null,
      org_id: v?.org_id ?? null,
      agent_id: v?.agent_id ?? null,
      name: v?.name ?? null,
      version: v?.version ?? null,
      kind: v?.kind ?? null,
      metadata: v?.metadata ?? null,
      sealed: v?.sealed ?? null,
    };
  };

  const list = (ex: Executor, agentId: string) =>
    ex
      .selectFrom('vault_secrets')
      .select(['name', 'kind', 'current_version', 'metadata', 'created_at', 'updated_at'])
      .where('agent_id', '=', agentId)
      .where('deleted_at', 'is', null)
      .orderBy('name')
      .execute();

  const insertHead = (ex: Executor, row: VaultSecretsTable) => ex.insertInto('vault_secrets').values(row).execute();

  const updateHead = (ex: Executor, id: string, set: Partial<Omit<VaultSecretsTable, 'id'>>) =>
    ex.updateTable('vault_secrets').set(set).where('id', '=', id).execute();

  const insertVersion = (ex: Executor, row: VaultSecretVersionsTable) => ex.insertInto('vault_secret_versions').values(row).execute();

  const markVersionsDeleted = (ex: Executor, secretId: string, at: string) =>
    ex
      .updateTable('vault_secret_versions')
      .set({ deleted_at: at })
      .where('secret_id', '=', secretId)
      .where('deleted_at', 'is', null)
      .execute();

  /**
   * Retention: up to `limit` versions past retention, oldest secrets first:
   * versions of secrets deleted before `cutoff`, and versions superseded (a
   * newer version written) before `cutoff`. Never the current version of a
   * live secret: it has no newer version and no deletion time. Nothing of an
   * organisation under an active legal hold.
   */
  const purgeCandidates = (ex: Executor, cutoff: string, limit: number) =>
    ex
      .selectFrom('vault_secret_versions as v')
      .select(['v.id', 'v.secret_id', 'v.org_id', 'v.agent_id', 'v.name', 'v.version'])
      .where((eb) =>
        eb.or([
          eb('v.deleted_at', '<', cutoff),
          eb.exists(
            eb
              .selectFrom('vault_secret_versions as n')
              .select('n.id')
              .whereRef('n.secret_id', '=', 'v.secret_id')
              .whereRef('n.version', '>', 'v.version')
              .where('n.created_at', '<', cutoff),
          ),
        ]),
      )
      // A legal hold of the organisation preserves its records, vault versions included.
      .where('v.org_id', 'not in', (eb) => eb.selectFrom('audit_legal_holds').select('org_id').where('released_at', 'is', null))
      .orderBy('v.secret_id')
      .orderBy('v.version')
      .limit(limit)
      .execute();

  /** Deletes the given versions; returns those this call deleted (another process may have taken some). */
  const deleteVersions = (ex: Executor, ids: string[]) =>
    ex
      .deleteFrom('vault_secret_versions')
      .where('id', 'in', ids)
      .returning(['id', 'secret_id', 'org_id', 'agent_id', 'name', 'version'])
      .execute();

  return { head, current, list, insertHead, updateHead, insertVersion, markVersionsDeleted, purgeCandidates, deleteVersions };
};

export type VaultRepo = ReturnType<typeof createVaultRepo>;
