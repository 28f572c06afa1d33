import { createPrivateKey, hkdfSync, randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import type { KeyRing, WrappedKey } from '../kernel/crypto/keyring.js';
import type { Db } from '../store/db.js';

const SETTING = 'oauth_secret';
const CONTEXT = 'mailward/oauth-secret/v1';

/** RFC 8410 / RFC 5958: the DER prefix of an Ed25519 PKCS#8 private key, followed by the 32-byte seed. */
const ED25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

export type OauthKeys = {
  /** Keys of the authorization server's signed cookies (interaction and session), newest first. */
  cookieKeys: string[];
  /** The private JWK the server signs with (ID tokens if a client asks for `openid`); opaque access tokens are not signed. */
  signingJwk: Record<string, unknown>;
};

/**
 * The authorization server's secret, shared by every process of one store: one random 32-byte value in `settings`,
 * wrapped under the master key (like every secret at rest), from which the cookie keys and the Ed25519 signing key
 * are derived with HKDF (RFC 5869). The first process to start writes it; a concurrent first start keeps the winner's
 * (`on conflict do nothing`, then read back). If the master key that wrapped it is gone (a ring rotated without it),
 * a new secret replaces it: only interactions in flight are lost, since codes and tokens do not depend on it.
 */
export const loadOauthKeys = async (db: Db, ring: KeyRing): Promise<OauthKeys> => {
  const read = async () => (await db.selectFrom('settings').select('value').where('key', '=', SETTING).executeTakeFirst())?.value;
  const fresh = () => JSON.stringify(ring.wrap(randomBytes(32), CONTEXT));
  let stored = await read();
  if (stored === undefined) {
    const v = fresh();
    await sql`insert into settings (key, value) values (${SETTING}, ${v}) on conflict (key) do nothing`.execute(db);
    stored = (await read()) ?? v;
  }
  let secret: Buffer;
  try {
    secret = ring.unwrap(JSON.parse(stored) as WrappedKey, CONTEXT);
  } catch {
    const v = fresh();
    await db.updateTable('settings').set({ value: v }).where('key', '=', SETTING).execute();
    secret = ring.unwrap(JSON.parse(v) as WrappedKey, CONTEXT);
  }
  const derive = (info: string) => Buffer.from(hkdfSync('sha256', secret, Buffer.alloc(0), info, 32));
  const seed = derive('mailward/oauth/ed25519');
  const jwk = createPrivateKey({ key: Buffer.concat([ED25519_PKCS8_PREFIX, seed]), format: 'der', type: 'pkcs8' }).export({
    format: 'jwk',
  });
  return {
    cookieKeys: [derive('mailward/oauth/cookies').toString('base64url')],
    signingJwk: { ...jwk, alg: 'EdDSA', use: 'sig' },
  };
};
