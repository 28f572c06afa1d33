import { AsyncLocalStorage } from 'node:async_hooks';
import type { Clock } from '../kernel/clock.js';
import { sha256Hex } from '../kernel/crypto/hash.js';
import type { Db, Executor } from '../store/db.js';

/**
 * The writer of `oauth_records` (STYLE.md: one repo per table), shaped as the storage adapter of the `oidc-provider`
 * authorization server (its `Adapter` interface: upsert, find, findByUid, findByUserCode, consume, destroy,
 * revokeByGrantId), so every process sharing the store sees the same codes and tokens.
 *
 * Authorization codes, access and refresh tokens are bearer secrets whose id is the secret itself
 * (OAuth 2.1 section 7.1: stored so that a leak of the store does not leak usable tokens): only SHA-256 of the id is
 * kept (of every model's id, for one lookup path), and a credential's payload loses its `jti` (the id again) and gets it
 * back from the caller on find. Revoking a grant removes
 * every code and token issued under it (RFC 7009 2.1: revoking a refresh token may revoke the grant's access tokens).
 *
 * Every write commits in one transaction with its audit event (45 CFR 164.312(b); house rule: fail closed): the
 * `audit` hook (oauth-audit.ts) runs inside the write's transaction and, if it throws, the write rolls back and the
 * library's action fails (no code or token is handed out, no grant or client is kept). A caller that has a
 * transaction of its own (the consent page: its consent event and the library's grant) runs the library inside
 * `within(tx, ...)`: the adapter then writes in that transaction.
 */

/** What oidc-provider stores and reads back; structural, so this layer does not import the library. */
export type OauthPayload = Record<string, unknown> & {
  jti?: string;
  grantId?: string;
  uid?: string;
  userCode?: string;
  consumed?: unknown;
};

/** One change of `oauth_records`, as the audit hook sees it: the model, the stored row's hash and payload (no secret). */
export type OauthChange =
  | { op: 'upsert'; model: string; idHash: string; payload: OauthPayload; created: boolean; expiresAt: string | null }
  | { op: 'consume' | 'destroy'; model: string; idHash: string; payload: OauthPayload }
  | { op: 'revoke_grant'; model: string; grantId: string; rows: { idHash: string; payload: OauthPayload }[] }
  /** Everything of these grants removed because the delegation ended (`reason`): one change per grant. */
  | {
      op: 'revoke_delegation';
      model: 'Grant';
      grantId: string;
      reason: string;
      rows: { model: string; idHash: string; payload: OauthPayload }[];
    };

/** Writes the audit event of a change in the change's transaction (throws to roll the change back). */
export type OauthAuditHook = (tx: Executor, change: OauthChange) => Promise<void>;

export type OauthAdapter = {
  upsert: (id: string, payload: OauthPayload, expiresIn?: number) => Promise<void>;
  find: (id: string) => Promise<OauthPayload | undefined>;
  findByUid: (uid: string) => Promise<OauthPayload | undefined>;
  findByUserCode: (userCode: string) => Promise<OauthPayload | undefined>;
  consume: (id: string) => Promise<void>;
  destroy: (id: string) => Promise<void>;
  revokeByGrantId: (grantId: string) => Promise<void>;
};

/**
 * Models whose id is a credential a client presents (OAuth 2.1 1.3.1, 1.3.2, 4.1.2; RFC 7591 3 for the registration
 * access token): only these lose `jti` from the stored payload. Sessions, interactions, grants and clients keep it:
 * oidc-provider finds sessions by `uid` and rebuilds them from the payload's `jti`.
 */
export const CREDENTIAL_MODELS = new Set([
  'AccessToken',
  'AuthorizationCode',
  'RefreshToken',
  'ClientCredentials',
  'RegistrationAccessToken',
]);

const hash = (model: string, value: string) => sha256Hex(`mailward/oauth/${model}|${value}`);

const ACCOUNT_RE = /^(agt_[0-9A-Za-z]+):(hum_[0-9A-Za-z]+)$/;
/** The agent and the human of a payload's `accountId` (`<agent>:<human>`, oauth-server.ts accountIdOf). */
const accountOf = (p: OauthPayload) => {
  const m = typeof p.accountId === 'string' ? ACCOUNT_RE.exec(p.accountId) : null;
  return { agent_id: m ? m[1]! : null, human_id: m ? m[2]! : null };
};

/**
 * The registration of a client as stored (RFC 7591 Dynamic Client Registration), or undefined for a client that never
 * registered (a client ID metadata document is fetched, not stored). Read-only: names only, never a secret.
 */
export const storedClientOf = async (tx: Executor, clientId: string): Promise<{ client_name: string | null } | undefined> => {
  const r = await tx
    .selectFrom('oauth_records')
    .select('payload')
    .where('model', '=', 'Client')
    .where('id_hash', '=', hash('Client', clientId))
    .executeTakeFirst();
  if (!r) return undefined;
  const p = JSON.parse(r.payload) as OauthPayload;
  return { client_name: typeof p.client_name === 'string' ? p.client_name : null };
};

export const createOauthRecordsRepo = ({ db, clock, audit }: { db: Db; clock: Clock; audit: OauthAuditHook }) => {
  // The transaction the caller of `within` holds: the library's adapter calls made under it write in it.
  const ambient = new AsyncLocalStorage<Executor>();
  const reader = () => ambient.getStore() ?? db;
  /** A write and its audit event, in the caller's transaction if there is one, else in one of their own. */
  const write = <T>(fn: (tx: Executor) => Promise<T>): Promise<T> => {
    const tx = ambient.getStore();
    return tx ? fn(tx) : db.transaction().execute(fn);
  };
  const rowOf = (tx: Executor, model: string, idHash: string) =>
    tx
      .selectFrom('oauth_records')
      .select(['payload', 'consumed_at'])
      .where('model', '=', model)
      .where('id_hash', '=', idHash)
      .executeTakeFirst();

  const live = (model: string, r: { expires_at: string | null; payload: string; consumed_at: string | null } | undefined, id?: string) => {
    if (!r) return undefined;
    if (r.expires_at !== null && r.expires_at <= clock.now().toISOString()) return undefined;
    const payload = JSON.parse(r.payload) as OauthPayload;
    if (id !== undefined && CREDENTIAL_MODELS.has(model)) payload.jti = id;
    if (r.consumed_at !== null) payload.consumed = Math.floor(Date.parse(r.consumed_at) / 1000);
    return payload;
  };

  /** The adapter of one oidc-provider model (AccessToken, AuthorizationCode, RefreshToken, Grant, Session, Client, ...). */
  const adapterFor = (model: string): OauthAdapter => ({
    upsert: async (id, payload, expiresIn) => {
      const { jti: _jti, ...rest } = payload;
      const stored = CREDENTIAL_MODELS.has(model) ? rest : payload;
      const row = {
        model,
        id_hash: hash(model, id),
        payload: JSON.stringify(stored),
        grant_id: typeof payload.grantId === 'string' ? payload.grantId : null,
        uid_hash: typeof payload.uid === 'string' ? hash(`${model}/uid`, payload.uid) : null,
        user_code_hash: typeof payload.userCode === 'string' ? hash(`${model}/user_code`, payload.userCode) : null,
        expires_at: expiresIn ? new Date(clock.now().getTime() + expiresIn * 1000).toISOString() : null,
        ...accountOf(payload),
      };
      await write(async (tx) => {
        const created = (await rowOf(tx, model, row.id_hash)) === undefined;
        await tx
          .insertInto('oauth_records')
          .values({ ...row, consumed_at: null })
          .onConflict((oc) =>
            oc.columns(['model', 'id_hash']).doUpdateSet({
              payload: row.payload,
              grant_id: row.grant_id,
              uid_hash: row.uid_hash,
              user_code_hash: row.user_code_hash,
              expires_at: row.expires_at,
              agent_id: row.agent_id,
              human_id: row.human_id,
            }),
          )
          .execute();
        await audit(tx, { op: 'upsert', model, idHash: row.id_hash, payload: stored, created, expiresAt: row.expires_at });
      });
    },
    find: async (id) =>
      live(
        model,
        await reader()
          .selectFrom('oauth_records')
          .select(['payload', 'expires_at', 'consumed_at'])
          .where('model', '=', model)
          .where('id_hash', '=', hash(model, id))
          .executeTakeFirst(),
        id,
      ),
    findByUid: async (uid) => {
      const r = await reader()
        .selectFrom('oauth_records')
        .select(['payload', 'expires_at', 'consumed_at'])
        .where('model', '=', model)
        .where('uid_hash', '=', hash(`${model}/uid`, uid))
        .executeTakeFirst();
      return live(model, r);
    },
    findByUserCode: async (userCode) =>
      live(
        model,
        await reader()
          .selectFrom('oauth_records')
          .select(['payload', 'expires_at', 'consumed_at'])
          .where('model', '=', model)
          .where('user_code_hash', '=', hash(`${model}/user_code`, userCode))
          .executeTakeFirst(),
      ),
    consume: async (id) => {
      // Compare-and-set: of two processes redeeming the same code, one consumes it (OAuth 2.1 4.1.3: a code is used once).
      const idHash = hash(model, id);
      await write(async (tx) => {
        const r = await tx
          .updateTable('oauth_records')
          .set({ consumed_at: clock.now().toISOString() })
          .where('model', '=', model)
          .where('id_hash', '=', idHash)
          .where('consumed_at', 'is', null)
          .executeTakeFirst();
        if (Number(r.numUpdatedRows) === 0) return;
        const row = await rowOf(tx, model, idHash);
        await audit(tx, { op: 'consume', model, idHash, payload: row ? (JSON.parse(row.payload) as OauthPayload) : {} });
      });
    },
    destroy: async (id) => {
      const idHash = hash(model, id);
      await write(async (tx) => {
        const row = await rowOf(tx, model, idHash);
        if (!row) return;
        await tx.deleteFrom('oauth_records').where('model', '=', model).where('id_hash', '=', idHash).execute();
        await audit(tx, { op: 'destroy', model, idHash, payload: JSON.parse(row.payload) as OauthPayload });
      });
    },
    revokeByGrantId: async (grantId) => {
      // The library calls this once per credential model (revoke.js); each removes its own model's rows.
      await write(async (tx) => {
        const rows = await tx
          .deleteFrom('oauth_records')
          .where('model', '=', model)
          .where('grant_id', '=', grantId)
          .returning(['id_hash', 'payload'])
          .execute();
        if (rows.length === 0) return;
        await audit(tx, {
          op: 'revoke_grant',
          model,
          grantId,
          rows: rows.map((r) => ({ idHash: r.id_hash, payload: JSON.parse(r.payload) as OauthPayload })),
        });
      });
    },
  });

  /** A grant still has an access or refresh token (revoking the grant, or its last refresh token, removes them). */
  const grantHasTokens = async (grantId: string): Promise<boolean> =>
    (await db
      .selectFrom('oauth_records')
      .select('model')
      .where('grant_id', '=', grantId)
      .where('model', 'in', ['AccessToken', 'RefreshToken'])
      .executeTakeFirst()) !== undefined;

  /**
   * Revokes, in `tx` (the caller's: a deactivation, an agent handed to another human), every grant with its codes and
   * tokens that acts for `agentId` and/or was granted by `humanId` (both given: that pair only), with one audit event
   * per grant (`oauth.grant.revoked`, `reason`) in the same transaction. Revoked, not merely refused: a grant never
   * comes back, even if the human is made responsible for the agent again. Returns the number of grants revoked.
   */
  const revokeDelegation = async (tx: Executor, who: { agentId?: string; humanId?: string }, reason: string): Promise<number> => {
    if (!who.agentId && !who.humanId) return 0;
    let q = tx.deleteFrom('oauth_records');
    if (who.agentId) q = q.where('agent_id', '=', who.agentId);
    if (who.humanId) q = q.where('human_id', '=', who.humanId);
    const rows = await q.returning(['model', 'id_hash', 'payload', 'grant_id']).execute();
    const byGrant = new Map<string, { model: string; idHash: string; payload: OauthPayload }[]>();
    for (const r of rows) {
      const payload = JSON.parse(r.payload) as OauthPayload;
      const grantId = r.model === 'Grant' ? String(payload.jti ?? '') : r.grant_id;
      if (!grantId) continue;
      byGrant.set(grantId, [...(byGrant.get(grantId) ?? []), { model: r.model, idHash: r.id_hash, payload }]);
    }
    for (const [grantId, grantRows] of byGrant) {
      await audit(tx, { op: 'revoke_delegation', model: 'Grant', grantId, reason, rows: grantRows });
    }
    return byGrant.size;
  };

  /** Runs `fn` (library calls) with its adapter writes in `tx`, the caller's transaction, committed or rolled back with it. */
  const within = <T>(tx: Executor, fn: () => Promise<T>): Promise<T> => ambient.run(tx, fn);

  return { adapterFor, grantHasTokens, within, revokeDelegation };
};

export type OauthRecordsRepo = ReturnType<typeof createOauthRecordsRepo>;
