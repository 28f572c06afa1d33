import type { Clock } from '../kernel/clock.js';
import { sha256Hex } from '../kernel/crypto/hash.js';
import type { Executor } from '../store/db.js';

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
 */

/** What oidc-provider stores and reads back; structural, so this layer does not import the library. */
export type OauthPayload = Record<string, unknown> & {
  jti?: string;
  grantId?: string;
  uid?: string;
  userCode?: string;
  consumed?: unknown;
};

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

export const createOauthRecordsRepo = ({ db, clock }: { db: Executor; clock: Clock }) => {
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
      };
      await db
        .insertInto('oauth_records')
        .values({ ...row, consumed_at: null })
        .onConflict((oc) =>
          oc.columns(['model', 'id_hash']).doUpdateSet({
            payload: row.payload,
            grant_id: row.grant_id,
            uid_hash: row.uid_hash,
            user_code_hash: row.user_code_hash,
            expires_at: row.expires_at,
          }),
        )
        .execute();
    },
    find: async (id) =>
      live(
        model,
        await db
          .selectFrom('oauth_records')
          .select(['payload', 'expires_at', 'consumed_at'])
          .where('model', '=', model)
          .where('id_hash', '=', hash(model, id))
          .executeTakeFirst(),
        id,
      ),
    findByUid: async (uid) => {
      const r = await db
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
        await db
          .selectFrom('oauth_records')
          .select(['payload', 'expires_at', 'consumed_at'])
          .where('model', '=', model)
          .where('user_code_hash', '=', hash(`${model}/user_code`, userCode))
          .executeTakeFirst(),
      ),
    consume: async (id) => {
      // Compare-and-set: of two processes redeeming the same code, one consumes it (OAuth 2.1 4.1.3: a code is used once).
      await db
        .updateTable('oauth_records')
        .set({ consumed_at: clock.now().toISOString() })
        .where('model', '=', model)
        .where('id_hash', '=', hash(model, id))
        .where('consumed_at', 'is', null)
        .execute();
    },
    destroy: async (id) => {
      await db.deleteFrom('oauth_records').where('model', '=', model).where('id_hash', '=', hash(model, id)).execute();
    },
    revokeByGrantId: async (grantId) => {
      await db.deleteFrom('oauth_records').where('grant_id', '=', grantId).execute();
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

  return { adapterFor, grantHasTokens };
};

export type OauthRecordsRepo = ReturnType<typeof createOauthRecordsRepo>;
