import type { AuditService } from '../audit/audit-service.js';
import type { Guard, Target } from '../identity/guard.js';
import { actorOf, hasRole, hasScope, type RequestContext, type Scope, systemActor } from '../identity/principal.js';
import type { Clock } from '../kernel/clock.js';
import { open, type SealedValue, seal } from '../kernel/crypto/envelope.js';
import type { KeyRing } from '../kernel/crypto/keyring.js';
import { AppError, conflict, forbidden, isAppError, notFound, unprocessable } from '../kernel/errors.js';
import { newId } from '../kernel/ids.js';
import { startPeriodic } from '../kernel/schedule.js';
import type { Logger } from '../kernel/log.js';
import type { Db, Executor } from '../store/db.js';
import { isUniqueViolation } from '../store/errors.js';
import type { VaultSecretKind } from '../store/schema.js';
import { createDataKeyCache, DATA_KEY_CACHE_DEFAULTS, type DataKeyCacheOptions } from './data-key-cache.js';
import { parseOtpauthUri, parseTotpSeed, type TotpSeed, totpCode } from './totp.js';
import type { VaultRepo } from './vault-repo.js';
import { vaultAad, versionId } from './vault-repo.js';
import type { PutSecretBody } from './vault-schemas.js';

type Deps = {
  db: Db;
  repo: VaultRepo;
  guard: Guard;
  audit: Pick<AuditService, 'record' | 'recordAlone'>;
  ring: KeyRing;
  clock: Clock;
  /** How long deleted and superseded versions are kept (MAILWARD_AUDIT_RETENTION_DAYS; six years by default). */
  retentionDays?: number;
  /** Bounds of the cache of unwrapped data keys of opened versions (data-key-cache.ts); `maxEntries: 0` turns it off. */
  dataKeyCache?: DataKeyCacheOptions;
};

/** Six years: 45 CFR 164.316(b)(2), the config default of MAILWARD_AUDIT_RETENTION_DAYS. */
const DEFAULT_RETENTION_DAYS = 2190;
/** Versions destroyed per transaction, with their audit events. */
const PURGE_CHUNK = 500;

export type VaultPurgeResult = { cutoff: string; dry_run: boolean; versions: number; secrets: number };

/** The sealed payload of one version. TOTP seeds are sealed like any value and never leave this module. */
type Payload = { value?: string; username?: string; totp?: TotpSeed };

/** Envelope failures that mean the stored bytes are not what was sealed for this owner and version. */
const INTEGRITY_CODES = new Set(['decrypt_failed', 'kek_unknown']);

const integrityError = () =>
  new AppError(
    'secret_integrity_failed',
    500,
    'The stored secret failed its integrity check: it was altered, or sealed for another agent, name or version. Nothing was returned; the event is in the audit log.',
  );

/**
 * Reads of secrets (list, reveal, code) lock nothing and await only queries,
 * so concurrent callers may share one transaction and one commit with their
 * audit events (guard.change groupCommit); writes keep a transaction each.
 */
const GROUP = { groupCommit: true } as const;

const requireScope = (ctx: RequestContext, scope: Scope) => {
  if (!hasScope(ctx.principal, scope)) throw forbidden('scope_required', `This needs an agent key with the ${scope} scope.`);
};

/**
 * The agent vault: secrets per agent and name, every write a new version,
 * each version sealed with its own data key (164.312(a)(2)(iv)), every access
 * audited with the caller's delegation chain (164.312(b)).
 */
export const createVaultService = ({
  db,
  repo,
  guard,
  audit,
  ring,
  clock,
  retentionDays = DEFAULT_RETENTION_DAYS,
  dataKeyCache = DATA_KEY_CACHE_DEFAULTS,
}: Deps) => {
  const now = () => clock.now().toISOString();
  // Opening a version (codes, reveals) unwraps its data key through a bounded cache; sealing uses the ring itself.
  const keys = createDataKeyCache(ring, dataKeyCache, () => clock.now().getTime());

  /**
   * Whose vault: an agent always its own (another agent's id answers 404);
   * an admin may manage (store, list, delete) an agent's vault with
   * `agent_id`, but never reveal values or get codes.
   */
  const owner = async (
    ex: Executor,
    ctx: RequestContext,
    agentId: string | undefined,
    scope: Scope,
    adminMay: boolean,
  ): Promise<{ orgId: string; agentId: string }> => {
    const p = ctx.principal;
    if (p.type === 'agent') {
      if (agentId && agentId !== p.id) throw notFound('secret');
      requireScope(ctx, scope);
      return { orgId: p.orgId, agentId: p.id };
    }
    if (!adminMay) throw forbidden('agent_only', 'Only the agent that owns a vault can reveal its values or get its codes.');
    if (!hasRole(p, 'admin')) throw forbidden('admin_required', 'Managing an agent vault needs an admin.');
    if (!agentId) throw unprocessable('agent_id_required', 'Name the agent whose vault to manage with ?agent_id=agt_...');
    const a = await ex.selectFrom('agents').select('id').where('id', '=', agentId).where('org_id', '=', p.orgId).executeTakeFirst();
    if (!a) throw notFound('agent');
    return { orgId: p.orgId, agentId };
  };

  const targetOf = (agentId: string | undefined, ctx: RequestContext): Target => ({
    type: 'agent',
    id: agentId ?? ctx.principal.id,
  });

  const openVersion = (
    orgId: string,
    agentId: string,
    name: string,
    row: {
      org_id: string | null;
      agent_id: string | null;
      name: string | null;
      version: number | null;
      current_version: number;
      kind: VaultSecretKind | null;
      metadata: string | null;
      sealed: SealedValue | null;
      head_kind: VaultSecretKind;
    },
  ): Payload => {
    if (row.sealed === null || row.kind === null || row.metadata === null) {
      throw new AppError('decrypt_failed', 500, 'The current version of the secret is missing.');
    }
    // Every stored column must agree with what was asked for; the AAD below covers the rest.
    const consistent =
      row.org_id === orgId &&
      row.agent_id === agentId &&
      row.name === name &&
      Number(row.version) === Number(row.current_version) &&
      row.kind === row.head_kind;
    if (!consistent) throw new AppError('decrypt_failed', 500, 'The stored version does not match its secret.');
    // The expected owner comes from the request, not from the row: a row moved to another agent fails.
    const aad = vaultAad({ org_id: orgId, agent_id: agentId, name, version: Number(row.version), kind: row.kind, metadata: row.metadata });
    const pt = open(keys.ring, row.sealed, aad);
    try {
      return JSON.parse(pt.toString('utf8')) as Payload;
    } finally {
      pt.fill(0);
    }
  };

  /** Runs `fn` (a guard.change); an integrity failure is audited as `error` outside the rolled-back transaction. */
  const withIntegrity = async <T>(ctx: RequestContext, action: string, target: Target, name: string, fn: () => Promise<T>): Promise<T> => {
    try {
      return await fn();
    } catch (e) {
      if (!isAppError(e) || !INTEGRITY_CODES.has(e.code)) throw e;
      await audit.recordAlone({
        action,
        actor: actorOf(ctx),
        target,
        outcome: 'error',
        requestId: ctx.requestId,
        clientIp: ctx.clientIp,
        details: { code: 'secret_integrity_failed', cause: e.code, name },
      });
      throw integrityError();
    }
  };

  const payloadOf = (body: PutSecretBody): Payload => {
    const hasTotpParams = body.algorithm !== undefined || body.digits !== undefined || body.period !== undefined;
    if (body.kind === 'totp') {
      if (body.otpauth_uri && body.value)
        throw unprocessable('invalid_totp', 'Give either otpauth_uri or value (a base32 seed), not both.');
      if (body.otpauth_uri) {
        if (hasTotpParams) throw unprocessable('invalid_totp', 'algorithm, digits and period come from the otpauth URI.');
        return { totp: parseOtpauthUri(body.otpauth_uri), ...(body.username ? { username: body.username } : {}) };
      }
      if (!body.value) throw unprocessable('value_required', 'A totp secret needs otpauth_uri or value (a base32 seed).');
      const seed = parseTotpSeed({ secret: body.value, algorithm: body.algorithm, digits: body.digits, period: body.period });
      return { totp: seed, ...(body.username ? { username: body.username } : {}) };
    }
    if (body.otpauth_uri || hasTotpParams) {
      throw unprocessable('totp_fields_not_allowed', 'otpauth_uri, algorithm, digits and period belong to kind totp only.');
    }
    if (!body.value) throw unprocessable('value_required', `A ${body.kind} secret needs a value.`);
    return { value: body.value, ...(body.username ? { username: body.username } : {}) };
  };

  /**
   * Stores a new version of secret `name` (creating it, or reviving a deleted
   * one with the next version number). Throws 403 scope_required (vault:write) /
   * admin_required, 404 for another agent, 422 for a bad combination or TOTP
   * seed, 409 on a concurrent first write. Writes the sealed version and the
   * audit event `vault.secret.stored` in one transaction.
   */
  const store = (ctx: RequestContext, name: string, body: PutSecretBody, agentId?: string) =>
    guard.change(ctx, 'vault.secret.stored', targetOf(agentId, ctx), async (tx) => {
      const o = await owner(tx, ctx, agentId, 'vault:write', true);
      const payload = payloadOf(body);
      const metadata = JSON.stringify(body.metadata ?? {});
      const at = now();
      const head = await repo.head(tx, o.agentId, name, true);
      const version = head ? Number(head.current_version) + 1 : 1;
      const secretId = head?.id ?? newId('secret');
      try {
        if (head) {
          await repo.updateHead(tx, secretId, { kind: body.kind, current_version: version, metadata, updated_at: at, deleted_at: null });
        } else {
          await repo.insertHead(tx, {
            id: secretId,
            org_id: o.orgId,
            agent_id: o.agentId,
            name,
            kind: body.kind,
            current_version: version,
            metadata,
            created_at: at,
            updated_at: at,
            deleted_at: null,
          });
        }
        const owned = { org_id: o.orgId, agent_id: o.agentId, name, version, kind: body.kind, metadata };
        await repo.insertVersion(tx, {
          id: versionId(secretId, version),
          secret_id: secretId,
          ...owned,
          sealed: seal(ring, JSON.stringify(payload), vaultAad(owned)),
          created_at: at,
          created_by: ctx.principal.id,
          deleted_at: null,
        });
      } catch (e) {
        if (isUniqueViolation(e)) throw conflict('concurrent_write', 'The secret was written concurrently; retry.');
        throw e;
      }
      await guard.recordIn(
        tx,
        ctx,
        'vault.secret.stored',
        { type: 'vault_secret', id: secretId },
        {
          agent_id: o.agentId,
          name,
          kind: body.kind,
          version,
          source: body.otpauth_uri ? 'otpauth_uri' : 'value',
        },
      );
      return { name, kind: body.kind, version, agent_id: o.agentId };
    });

  /** Names, kinds, versions and metadata of live secrets; never values. Needs vault:read (agents) or admin. Audits vault.secret.listed. */
  const list = (ctx: RequestContext, agentId?: string) =>
    guard.change(
      ctx,
      'vault.secret.listed',
      targetOf(agentId, ctx),
      async (tx) => {
        const o = await owner(tx, ctx, agentId, 'vault:read', true);
        const rows = await repo.list(tx, o.agentId);
        await guard.recordIn(tx, ctx, 'vault.secret.listed', { type: 'agent', id: o.agentId }, { count: rows.length });
        return {
          agent_id: o.agentId,
          secrets: rows.map((r) => ({
            name: r.name,
            kind: r.kind,
            version: Number(r.current_version),
            metadata: JSON.parse(r.metadata) as Record<string, unknown>,
            created_at: r.created_at,
            updated_at: r.updated_at,
          })),
        };
      },
      GROUP,
    );

  /**
   * Returns the current value of a non-TOTP secret to the agent that owns it.
   * Throws 403 scope_required (vault:reveal, which agents get only when an admin
   * grants it) / agent_only, 404, 422 totp_not_revealable, 500
   * secret_integrity_failed (audited as `error`). Audits vault.secret.revealed
   * in the same transaction as the read.
   */
  const reveal = (ctx: RequestContext, name: string) =>
    withIntegrity(ctx, 'vault.secret.revealed', targetOf(undefined, ctx), name, () =>
      guard.change(
        ctx,
        'vault.secret.revealed',
        targetOf(undefined, ctx),
        async (tx) => {
          const o = await owner(tx, ctx, undefined, 'vault:reveal', false);
          const row = await repo.current(tx, o.agentId, name);
          if (!row) throw notFound('secret');
          // The seed of a TOTP secret never leaves the vault: only codes do.
          if (row.head_kind === 'totp') {
            throw unprocessable('totp_not_revealable', 'A TOTP seed is never revealed; POST .../totp for a code.');
          }
          const p = openVersion(o.orgId, o.agentId, name, row);
          await guard.recordIn(
            tx,
            ctx,
            'vault.secret.revealed',
            { type: 'vault_secret', id: row.secret_id },
            { name, version: Number(row.version) },
          );
          return {
            name,
            kind: row.head_kind,
            version: Number(row.version),
            value: p.value ?? '',
            username: p.username ?? null,
            metadata: JSON.parse(row.metadata ?? '{}') as Record<string, unknown>,
          };
        },
        GROUP,
      ),
    );

  /**
   * The current one-time code of a TOTP secret (RFC 6238) and when it expires.
   * Throws 403 scope_required (vault:totp) / agent_only, 404, 422 not_totp,
   * 500 secret_integrity_failed (audited as `error`). Audits
   * vault.totp.generated in the same transaction; the code is not recorded.
   */
  const totp = (ctx: RequestContext, name: string) =>
    withIntegrity(ctx, 'vault.totp.generated', targetOf(undefined, ctx), name, () =>
      guard.change(
        ctx,
        'vault.totp.generated',
        targetOf(undefined, ctx),
        async (tx) => {
          const o = await owner(tx, ctx, undefined, 'vault:totp', false);
          const row = await repo.current(tx, o.agentId, name);
          if (!row) throw notFound('secret');
          if (row.head_kind !== 'totp') throw unprocessable('not_totp', 'This secret is not a TOTP secret.');
          const p = openVersion(o.orgId, o.agentId, name, row);
          if (!p.totp) throw new AppError('decrypt_failed', 500, 'no seed');
          const at = clock.now();
          const { code, expiresAt } = totpCode(p.totp, at);
          await guard.recordIn(
            tx,
            ctx,
            'vault.totp.generated',
            { type: 'vault_secret', id: row.secret_id },
            {
              name,
              version: Number(row.version),
              expires_at: expiresAt.toISOString(),
            },
          );
          return { code, period: p.totp.period, digits: p.totp.digits, expires_at: expiresAt.toISOString() };
        },
        GROUP,
      ),
    );

  /**
   * Deletes a secret: it disappears from the vault at once, its versions stay
   * sealed until retention ends (purgeDeleted). Throws 403, 404. Audits
   * vault.secret.deleted.
   */
  const remove = (ctx: RequestContext, name: string, agentId?: string) =>
    guard.change(ctx, 'vault.secret.deleted', targetOf(agentId, ctx), async (tx) => {
      const o = await owner(tx, ctx, agentId, 'vault:write', true);
      const head = await repo.head(tx, o.agentId, name, true);
      if (!head || head.deleted_at) throw notFound('secret');
      const at = now();
      await repo.updateHead(tx, head.id, { deleted_at: at, updated_at: at });
      await repo.markVersionsDeleted(tx, head.id, at);
      await guard.recordIn(
        tx,
        ctx,
        'vault.secret.deleted',
        { type: 'vault_secret', id: head.id },
        {
          agent_id: o.agentId,
          name,
          version: Number(head.current_version),
        },
      );
      return { name, kind: head.kind, version: Number(head.current_version), deleted_at: at };
    });

  /**
   * Retention: destroys the sealed versions of secrets deleted before `cutoff`
   * (ISO) and versions superseded by a newer one before `cutoff`; the current
   * version of a live secret is never touched, and the head row (name, no
   * value) stays as a tombstone. Each chunk of versions is deleted in one
   * transaction with one `vault.secret.purged` event per secret (system actor,
   * the secret's organisation, the version numbers): if an audit write fails,
   * nothing of that chunk is deleted and this throws. `dryRun` only counts.
   */
  const purgeDeleted = async (cutoff: string, opts: { dryRun?: boolean } = {}): Promise<VaultPurgeResult> => {
    if (opts.dryRun) {
      const rows = await repo.purgeCandidates(db, cutoff, Number.MAX_SAFE_INTEGER);
      return { cutoff, dry_run: true, versions: rows.length, secrets: new Set(rows.map((r) => r.secret_id)).size };
    }
    let versions = 0;
    const secrets = new Set<string>();
    for (;;) {
      const { seen, gone } = await db.transaction().execute(async (tx) => {
        const candidates = await repo.purgeCandidates(tx, cutoff, PURGE_CHUNK);
        if (candidates.length === 0) return { seen: 0, gone: [] };
        // Only what this transaction deleted is audited: another process may purge at the same time.
        const deleted = await repo.deleteVersions(
          tx,
          candidates.map((c) => c.id),
        );
        const bySecret = new Map<string, typeof deleted>();
        for (const r of deleted) bySecret.set(r.secret_id, [...(bySecret.get(r.secret_id) ?? []), r]);
        for (const [secretId, rows] of bySecret) {
          const first = rows[0]!;
          await audit.record(tx, {
            action: 'vault.secret.purged',
            actor: systemActor(first.org_id),
            orgId: first.org_id,
            target: { type: 'vault_secret', id: secretId },
            details: {
              agent_id: first.agent_id,
              name: first.name,
              versions: rows.map((r) => Number(r.version)).sort((x, y) => x - y),
              cutoff,
              retention_days: retentionDays,
            },
          });
        }
        return { seen: candidates.length, gone: deleted };
      });
      versions += gone.length;
      for (const r of gone) secrets.add(r.secret_id);
      if (seen < PURGE_CHUNK) break;
    }
    return { cutoff, dry_run: false, versions, secrets: secrets.size };
  };

  /** purgeDeleted with the cutoff `retentionDays` before now. */
  const purgeExpired = (opts: { dryRun?: boolean } = {}) =>
    purgeDeleted(new Date(clock.now().getTime() - retentionDays * 86_400_000).toISOString(), opts);

  /**
   * Runs purgeExpired `firstAfterMs` after start, then every `everyMs` (a day by
   * default: retention is counted in years). Failures are logged with their
   * code only and retried at the next tick. Returns a stop function.
   */
  const startPurgeScheduler = (opts: { everyMs?: number; firstAfterMs?: number; logger?: Logger } = {}) =>
    startPeriodic(
      async () => {
        const r = await purgeExpired();
        if (r.versions > 0)
          opts.logger?.info({ versions: r.versions, secrets: r.secrets, cutoff: r.cutoff }, 'vault versions past retention purged');
      },
      {
        firstAfterMs: opts.firstAfterMs ?? 60_000,
        everyMs: opts.everyMs ?? 86_400_000,
        onError: (e) => opts.logger?.error({ code: isAppError(e) ? e.code : 'unexpected' }, 'vault retention purge failed'),
      },
    );

  return {
    store,
    list,
    reveal,
    totp,
    remove,
    purgeDeleted,
    purgeExpired,
    startPurgeScheduler,
    /** Zeroes and drops the cached data keys (on close, and for tests). */
    clearKeyCache: keys.clear,
  };
};

export type VaultService = ReturnType<typeof createVaultService>;
