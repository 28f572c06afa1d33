import { createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { calculateJwkThumbprint, type JWK } from 'jose';
import type { Clock } from '../kernel/clock.js';
import { open, seal } from '../kernel/crypto/envelope.js';
import type { KeyRing } from '../kernel/crypto/keyring.js';
import { newId } from '../kernel/ids.js';
import type { Executor } from '../store/db.js';
import type { SigningKeysTable } from '../store/schema.js';

export type KeyPurpose = SigningKeysTable['purpose'];

const sealContext = (purpose: KeyPurpose, kid: string) => `mailward/signing-key/v1|${purpose}|${kid}`;

const generate = (purpose: KeyPurpose) => {
  switch (purpose) {
    case 'dkim-ed25519':
    case 'audit-ed25519':
      return generateKeyPairSync('ed25519');
    case 'dkim-rsa':
      return generateKeyPairSync('rsa', { modulusLength: 2048 });
    case 'identity-es256':
      return generateKeyPairSync('ec', { namedCurve: 'P-256' });
  }
};

const yyyymmdd = (d: Date) => d.toISOString().slice(0, 10).replaceAll('-', '');

/** Where the DKIM public key is published: `<selector>._domainkey.<domain>`. */
export const dkimSelectorOf = (kid: string) => kid.split('._domainkey.')[0]!;

/**
 * Creates and stores a signing key. The private key is sealed with the
 * envelope scheme under the key ring (164.312(a)(2)(iv)); only public parts
 * are ever returned.
 */
export const createSigningKey = async (
  tx: Executor,
  ring: KeyRing,
  clock: Clock,
  purpose: KeyPurpose,
  org: { id: string; domain: string } | null,
): Promise<SigningKeysTable> => {
  const { publicKey, privateKey } = generate(purpose);
  let kid: string;
  if (purpose === 'dkim-ed25519' || purpose === 'dkim-rsa') {
    if (!org) throw new Error('a DKIM key belongs to an organization');
    const base = `mw${purpose === 'dkim-ed25519' ? 'ed' : 'rsa'}${yyyymmdd(clock.now())}`;
    const existing = await tx.selectFrom('signing_keys').select('kid').where('kid', 'like', `${base}%._domainkey.${org.domain}`).execute();
    kid = `${existing.length === 0 ? base : `${base}x${existing.length + 1}`}._domainkey.${org.domain}`;
  } else {
    kid = await calculateJwkThumbprint(publicKey.export({ format: 'jwk' }) as JWK, 'sha256');
  }
  const row: SigningKeysTable = {
    id: newId('signingKey'),
    org_id: org?.id ?? null,
    purpose,
    kid,
    public_key: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    private_key_sealed: seal(ring, privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), sealContext(purpose, kid)),
    created_at: clock.now().toISOString(),
    retired_at: null,
  };
  await tx.insertInto('signing_keys').values(row).execute();
  return row;
};

export const activeSigningKey = (db: Executor, purpose: KeyPurpose, orgId: string | null) => {
  let q = db
    .selectFrom('signing_keys')
    .selectAll()
    .where('purpose', '=', purpose)
    .where('retired_at', 'is', null)
    .orderBy('created_at', 'desc')
    .limit(1);
  q = orgId === null ? q.where('org_id', 'is', null) : q.where('org_id', '=', orgId);
  return q.executeTakeFirst();
};

/**
 * The JWK Set of /.well-known/jwks.json (RFC 7517 5): the public keys of
 * identity headers (ES256) and audit checkpoints (EdDSA), retired ones kept
 * with `retired_at` so older headers and checkpoints still verify.
 */
export const publicJwks = async (db: Executor) => {
  const rows = await db
    .selectFrom('signing_keys')
    .select(['kid', 'purpose', 'public_key', 'org_id', 'retired_at'])
    .where('purpose', 'in', ['identity-es256', 'audit-ed25519'])
    .orderBy('created_at')
    .execute();
  return {
    keys: rows.map((r) => ({
      ...(createPublicKey(r.public_key).export({ format: 'jwk' }) as { kty: string }),
      kid: r.kid,
      alg: r.purpose === 'identity-es256' ? 'ES256' : 'EdDSA',
      use: 'sig',
      ...(r.org_id ? { org_id: r.org_id } : {}),
      ...(r.retired_at ? { retired_at: r.retired_at } : {}),
    })),
  };
};

export const openPrivateKey = (ring: KeyRing, row: SigningKeysTable): string =>
  open(ring, row.private_key_sealed, sealContext(row.purpose, row.kid)).toString();

export const publicKeyObject = (row: SigningKeysTable): KeyObject => createPublicKey(row.public_key);

/** DKIM `p=`: raw 32-byte key for ed25519 (RFC 8463 section 4), SPKI DER for rsa (RFC 6376). */
export const dkimPublicValue = (row: SigningKeysTable): string => {
  const key = publicKeyObject(row);
  const der = key.export({ type: 'spki', format: 'der' });
  if (row.purpose === 'dkim-ed25519') return der.subarray(der.length - 32).toString('base64');
  return der.toString('base64');
};
