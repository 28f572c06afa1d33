import type { Db, Executor } from '../store/db.js';
import { type PublicKeyLookup, verifyIdentityHeader } from './identity-header.js';

/** Keys of this installation's organisations, by kid (the same keys /.well-known/jwks.json publishes). */
export const storeKeyLookup =
  (db: Executor): PublicKeyLookup =>
  async (kid) => {
    const row = await db
      .selectFrom('signing_keys')
      .leftJoin('organizations', 'organizations.id', 'signing_keys.org_id')
      .select(['signing_keys.public_key', 'signing_keys.retired_at', 'organizations.domain'])
      .where('signing_keys.kid', '=', kid)
      .where('signing_keys.purpose', '=', 'identity-es256')
      .executeTakeFirst();
    return row ? { pem: row.public_key, retired: row.retired_at !== null, orgDomain: row.domain } : null;
  };

/** Checks X-Agent-Identity of a raw message against the store's keys; never throws for a bad message. */
export const verifyMessageIdentity = (db: Executor, raw: Buffer) => verifyIdentityHeader(raw, storeKeyLookup(db));

/**
 * What POST /v1/identity/verify and `mailward identity verify` call (STYLE.md,
 * Dependency direction: adapters hold services, not the store). Reads public
 * keys only; writes nothing.
 */
export const createIdentityVerifier = ({ db }: { db: Db }) => ({
  verify: (raw: Buffer) => verifyMessageIdentity(db, raw),
});

export type IdentityVerifier = ReturnType<typeof createIdentityVerifier>;
