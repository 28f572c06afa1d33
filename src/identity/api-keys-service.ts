import type { AuditService } from '../audit/audit-service.js';
import type { Clock } from '../kernel/clock.js';
import { AppError, forbidden, notFound, unauthorized, unprocessable } from '../kernel/errors.js';
import { constantTimeEqual, randomHex, sha256 } from '../kernel/crypto/hash.js';
import { newId } from '../kernel/ids.js';
import type { Db } from '../store/db.js';
import type { ApiKeysTable } from '../store/schema.js';
import type { Guard } from './guard.js';
import type { AuthCache, CachedKey } from './auth-cache.js';
import type { IdentityRepo } from './identity-repo.js';
import { requireAdmin } from './identity-service.js';
import {
  AGENT_SCOPES,
  DEFAULT_AGENT_SCOPES,
  HUMAN_ROLES,
  type Principal,
  type RequestContext,
  type Role,
  type Scope,
} from './principal.js';

/** mw_<key id>_<secret>: key id `key_` + 32 hex, secret 256 random bits as 64 hex. */
const KEY_RE = /^mw_(key_[0-9a-f]{32})_([0-9a-f]{64})$/;
const LAST_USED_RESOLUTION_MS = 60_000;

const hashSecret = (secret: string) => sha256(`mailward/api-key/v1|${secret}`);

/** A new key: the id, the hash to store and the key to show once. */
export const mintApiKey = () => {
  const id = newId('apiKey');
  const secret = randomHex(32);
  return { id, secretHash: hashSecret(secret).toString('hex'), key: `mw_${id}_${secret}` };
};

type AuthMeta = { requestId: string | null; clientIp: string | null };

type Deps = {
  db: Db;
  repo: IdentityRepo;
  guard: Guard;
  audit: Pick<AuditService, 'recordAlone'>;
  clock: Clock;
  authCache: AuthCache;
  /** Principals of OAuth access tokens (src/oauth, wired by app/): still live in the store? */
  oauthLive?: (p: Principal) => Promise<boolean>;
};

const keyView = (k: ApiKeysTable) => ({
  id: k.id,
  principal: { type: k.principal_type, id: k.principal_id },
  scopes: JSON.parse(k.scopes) as string[],
  read_only: k.read_only === 1,
  created_at: k.created_at,
  revoked_at: k.revoked_at,
  last_used_at: k.last_used_at,
});

/**
 * Which grants a key for this principal may carry. Human keys carry roles,
 * agent keys carry scopes; the two sets are disjoint by construction, so no key
 * can both send mail (an agent scope) and approve it (the reviewer role).
 */
export const resolveGrants = (principalType: 'human' | 'agent', requested: string[] | undefined, humanRoles: Role[]): string[] => {
  if (principalType === 'human') {
    const wanted = requested ?? humanRoles;
    const bad = wanted.filter((s) => !(HUMAN_ROLES as readonly string[]).includes(s));
    if (bad.length > 0) {
      throw unprocessable(
        'incompatible_scopes',
        `A human key carries roles only (${HUMAN_ROLES.join(', ')}); a key that could send mail must never approve it.`,
      );
    }
    const notHeld = wanted.filter((s) => !humanRoles.includes(s as Role));
    if (notHeld.length > 0) throw unprocessable('role_not_held', 'A key cannot carry a role its human does not hold.');
    return [...new Set(wanted)];
  }
  const wanted = requested ?? DEFAULT_AGENT_SCOPES;
  const bad = wanted.filter((s) => !(AGENT_SCOPES as readonly string[]).includes(s));
  if (bad.length > 0) {
    throw unprocessable(
      'incompatible_scopes',
      `An agent key carries scopes only (${AGENT_SCOPES.join(', ')}); agents can never hold a human role such as reviewer.`,
    );
  }
  return [...new Set(wanted)];
};

export const createApiKeysService = ({ db, repo, guard, audit, clock, authCache, oauthLive }: Deps) => {
  const now = () => clock.now().toISOString();

  /**
   * Issues a key for a human or agent of the caller's organisation. Returns the
   * key once; only its hash is stored. Throws 403 admin_required, 404, 422
   * incompatible_scopes / role_not_held / principal_inactive. Audits api_key.created.
   */
  const create = (ctx: RequestContext, principalType: 'human' | 'agent', principalId: string, scopes?: string[], readOnly = false) =>
    guard.change(ctx, 'api_key.created', { type: principalType, id: principalId }, async (tx) => {
      requireAdmin(ctx);
      const orgId = ctx.principal.orgId;
      const owner = principalType === 'human' ? await repo.human(tx, orgId, principalId) : await repo.agent(tx, orgId, principalId);
      if (!owner) throw notFound(principalType);
      if (owner.is_active !== 1) throw unprocessable('principal_inactive', `The ${principalType} is deactivated.`);
      const roles = 'roles' in owner ? (JSON.parse(owner.roles) as Role[]) : [];
      const grants = resolveGrants(principalType, scopes, roles);
      if (readOnly && principalType !== 'human') throw unprocessable('read_only_humans_only', 'Only human keys can be made read-only.');
      const { id, secretHash, key } = mintApiKey();
      const row: ApiKeysTable = {
        id,
        org_id: orgId,
        principal_type: principalType,
        principal_id: principalId,
        secret_hash: secretHash,
        scopes: JSON.stringify(grants),
        created_at: now(),
        created_by: ctx.principal.id,
        revoked_at: null,
        last_used_at: null,
        read_only: readOnly ? 1 : 0,
      };
      await tx.insertInto('api_keys').values(row).execute();
      await guard.recordIn(
        tx,
        ctx,
        'api_key.created',
        { type: 'api_key', id },
        {
          principal: { type: principalType, id: principalId },
          scopes: grants,
          read_only: readOnly,
        },
      );
      return { ...keyView(row), key };
    });

  /** Revokes a key at once. Admins revoke any key of the org; any principal may revoke its own keys. Audits api_key.revoked. */
  const revoke = (ctx: RequestContext, keyId: string) =>
    guard.change(
      ctx,
      'api_key.revoked',
      { type: 'api_key', id: keyId },
      async (tx) => {
        const k = await tx
          .selectFrom('api_keys')
          .selectAll()
          .where('id', '=', keyId)
          .where('org_id', '=', ctx.principal.orgId)
          .executeTakeFirst();
        if (!k) throw notFound('api key');
        const isOwn = k.principal_id === ctx.principal.id;
        if (!isOwn && !(ctx.principal.type === 'human' && ctx.principal.roles.includes('admin'))) {
          // An agent must not learn that another agent's key exists.
          if (ctx.principal.type === 'agent') throw notFound('api key');
          throw forbidden('admin_required', 'This action needs an admin.');
        }
        if (!k.revoked_at) {
          await tx.updateTable('api_keys').set({ revoked_at: now() }).where('id', '=', keyId).execute();
          await guard.recordIn(
            tx,
            ctx,
            'api_key.revoked',
            { type: 'api_key', id: keyId },
            {
              principal: { type: k.principal_type, id: k.principal_id },
            },
          );
        }
        return keyView({ ...k, revoked_at: k.revoked_at ?? now() });
      },
      { invalidatesAuth: true },
    );

  const list = (ctx: RequestContext, principalId?: string) =>
    guard.read(ctx, 'api_key.list', null, async () => {
      let q = db.selectFrom('api_keys').selectAll().where('org_id', '=', ctx.principal.orgId).orderBy('id');
      if (!(ctx.principal.type === 'human' && ctx.principal.roles.includes('admin'))) {
        q = q.where('principal_id', '=', ctx.principal.id);
      } else if (principalId) {
        q = q.where('principal_id', '=', principalId);
      }
      return (await q.execute()).map(keyView);
    });

  /**
   * Resolves a bearer key to its principal with a fresh delegation chain. Every
   * failure is a 401 and an `auth.denied` audit event (45 CFR 164.312(b)); the
   * reason is recorded, never the key.
   */
  const denial = async (meta: AuthMeta, reason: string, keyId: string | null, orgId: string | null = null) => {
    await audit.recordAlone({
      action: 'auth.denied',
      actor: { type: 'anonymous', id: null, orgId, chain: [] },
      orgId,
      target: keyId ? { type: 'api_key', id: keyId } : null,
      outcome: 'denied',
      requestId: meta.requestId,
      clientIp: meta.clientIp,
      details: { reason },
    });
    return unauthorized();
  };

  const authenticate = async (raw: string | undefined, meta: AuthMeta): Promise<Principal> => {
    const deny = (reason: string, keyId: string | null, orgId: string | null = null) => denial(meta, reason, keyId, orgId);
    if (!raw) throw await deny('missing_key', null);
    const m = KEY_RE.exec(raw);
    if (!m) throw await deny('malformed_key', null);
    const [, keyId, secret] = m as unknown as [string, string, string];
    const presented = hashSecret(secret);
    const cached = authCache.get(keyId);
    if (cached) {
      if (!constantTimeEqual(presented, cached.secretHash)) throw await deny('unknown_key', keyId);
      await touch(keyId, cached);
      return cached.principal;
    }
    const startedGeneration = authCache.generation();
    const k = await db.selectFrom('api_keys').selectAll().where('id', '=', keyId).executeTakeFirst();
    // Compare even when the key is unknown, so timing does not tell which ids exist.
    const stored = k ? Buffer.from(k.secret_hash, 'hex') : Buffer.alloc(32);
    if (!constantTimeEqual(presented, stored) || !k) throw await deny('unknown_key', keyId);
    if (k.revoked_at) throw await deny('revoked_key', keyId, k.org_id);
    const org = await repo.org(db, k.org_id);
    if (!org) throw await deny('unknown_org', keyId);
    const orgView = { id: org.id, name: org.name, domain: org.domain };
    let principal: Principal;
    if (k.principal_type === 'human') {
      const h = await repo.human(db, k.org_id, k.principal_id);
      if (h?.is_active !== 1) throw await deny('principal_inactive', keyId, k.org_id);
      const held = JSON.parse(h.roles) as Role[];
      principal = {
        type: 'human',
        id: h.id,
        orgId: h.org_id,
        name: h.name,
        keyId,
        // A role removed from the human is removed from every key at once.
        roles: (JSON.parse(k.scopes) as Role[]).filter((r) => held.includes(r)),
        scopes: [],
        chain: repo.humanChain(h, org.name),
        org: orgView,
        ...(k.read_only === 1 ? { readOnly: true } : {}),
      };
    } else {
      const a = await repo.agent(db, k.org_id, k.principal_id);
      if (a?.is_active !== 1) throw await deny('principal_inactive', keyId, k.org_id);
      const rh = await db.selectFrom('humans').select(['id', 'name']).where('id', '=', a.responsible_human_id).executeTakeFirstOrThrow();
      principal = {
        type: 'agent',
        id: a.id,
        orgId: a.org_id,
        name: a.name,
        keyId,
        roles: [],
        scopes: JSON.parse(k.scopes) as Scope[],
        chain: await repo.agentChain(db, a, org.name),
        org: orgView,
        address: a.address,
        responsibleHuman: { id: rh.id, name: rh.name },
      };
    }
    const entry: CachedKey = { secretHash: stored, principal, lastUsedAt: k.last_used_at };
    await touch(keyId, entry);
    authCache.put(keyId, startedGeneration, entry);
    return principal;
  };

  /**
   * Confirms in the store, past the auth cache, that the key behind `ctx` is
   * still live: not revoked, its human or agent still active. Adapters call it
   * before acts that cannot be taken back (sending mail, producing a one-time
   * code, revealing or storing a secret), so a revocation that has committed
   * stops them at once (README "revoked at once"; 45 CFR 164.312(a)(1) access
   * control) instead of within the cache poll interval. Throws 401
   * unauthorized and audits auth.denied with the reason; a stale cache entry
   * found this way is dropped.
   */
  const assertLive = async (ctx: RequestContext): Promise<void> => {
    const p = ctx.principal;
    if (p.oauth) {
      // An OAuth token: its grant still has tokens, and the agent and the granting human are still active.
      if (oauthLive && (await oauthLive(p))) return;
      throw await denial(ctx, 'principal_inactive', p.keyId, p.orgId);
    }
    const k = await db
      .selectFrom('api_keys')
      .select(['revoked_at', 'org_id', 'principal_type', 'principal_id'])
      .where('id', '=', p.keyId)
      .executeTakeFirst();
    let reason: string | null = null;
    if (!k || k.principal_id !== p.id) reason = 'unknown_key';
    else if (k.revoked_at) reason = 'revoked_key';
    else {
      const owner =
        k.principal_type === 'human'
          ? await db.selectFrom('humans').select('is_active').where('id', '=', k.principal_id).executeTakeFirst()
          : await db.selectFrom('agents').select('is_active').where('id', '=', k.principal_id).executeTakeFirst();
      if (owner?.is_active !== 1) reason = 'principal_inactive';
    }
    if (reason === null) return;
    authCache.invalidate();
    throw await denial(ctx, reason, p.keyId, k?.org_id ?? null);
  };

  /** last_used_at, written at most once a minute per key. */
  const touch = async (keyId: string, entry: CachedKey) => {
    const t = clock.now();
    if (!entry.lastUsedAt || t.getTime() - Date.parse(entry.lastUsedAt) >= LAST_USED_RESOLUTION_MS) {
      entry.lastUsedAt = t.toISOString();
      await db.updateTable('api_keys').set({ last_used_at: entry.lastUsedAt }).where('id', '=', keyId).execute();
    }
  };

  /**
   * A read-only human key asked to change something: 403 read_only_key, audited as `auth.denied`
   * with the key's human and chain (45 CFR 164.312(b)).
   */
  const refuseReadOnly = async (ctx: RequestContext) => {
    await audit.recordAlone({
      action: 'auth.denied',
      actor: { type: ctx.principal.type, id: ctx.principal.id, orgId: ctx.principal.orgId, chain: ctx.principal.chain },
      orgId: ctx.principal.orgId,
      target: { type: 'api_key', id: ctx.principal.keyId },
      outcome: 'denied',
      requestId: ctx.requestId,
      clientIp: ctx.clientIp,
      details: { reason: 'read_only_key' },
    });
    return new AppError(
      'read_only_key',
      403,
      'This key is read-only; sign in to the console to act (reviewers sign decisions through sessions).',
    );
  };

  return { create, revoke, list, authenticate, assertLive, refuseReadOnly };
};

export type ApiKeysService = ReturnType<typeof createApiKeysService>;
