import { createPrivateKey, createPublicKey, sign } from 'node:crypto';
import type { JWK } from 'jose';
import type { Clock } from '../kernel/clock.js';
import type { KeyRing } from '../kernel/crypto/keyring.js';
import type { AuditService } from '../audit/audit-service.js';
import type { Db } from '../store/db.js';
import { activeSigningKey, createSigningKey, openPrivateKey } from './signing-keys.js';

/**
 * The identity-signing keys as an HTTP Message Signatures Directory
 * (draft-meunier-webbotauth-httpsig-directory: a JWK Set at
 * /.well-known/http-message-signatures-directory, media type
 * application/http-message-signatures-directory+json, the response signed per
 * RFC 9421 over ("@authority";req) with tag "http-message-signatures-directory"
 * by each key it lists that is still in use).
 *
 * Each key carries its validity window, `nbf` (created) and, once rotated out,
 * `exp` (retired), in seconds: retired keys stay listed, so mail signed before a
 * rotation still verifies, and a header issued outside its key's window does not.
 */
export const DIRECTORY_MEDIA_TYPE = 'application/http-message-signatures-directory+json';
export const DIRECTORY_TAG = 'http-message-signatures-directory';
/** How long a directory response signature is good for (RFC 9421 2.3 `expires`). */
const SIGNATURE_TTL_S = 300;
/**
 * A retired key's `exp` is its retirement plus this margin: signers cache the
 * active key for up to a minute (outbound-pipeline.ts), so a header signed just
 * after a rotation still falls inside its key's window.
 */
export const RETIRED_KEY_GRACE_S = 120;

export type DirectoryKey = JWK & { kid: string; alg: 'ES256'; use: 'sig'; nbf: number; exp?: number };
export type KeyDirectory = { keys: DirectoryKey[]; log_verifier_keys: string[] };

type Deps = { db: Db; ring: KeyRing; clock: Clock; audit: Pick<AuditService, 'record'>; logVerifierKeys: () => Promise<string[]> };

/** RFC 8941 3.3.3: a String item (the only parameter values used here are ASCII). */
const sfString = (s: string) => `"${s.replace(/(["\\])/g, '\\$1')}"`;

export const createKeyDirectory = ({ db, ring, clock, audit, logVerifierKeys }: Deps) => {
  const rows = () => db.selectFrom('signing_keys').selectAll().where('purpose', '=', 'identity-es256').orderBy('created_at').execute();

  /** The directory document (public keys only). */
  const document = async (): Promise<KeyDirectory> => ({
    keys: (await rows()).map((r) => ({
      ...(createPublicKey(r.public_key).export({ format: 'jwk' }) as JWK),
      kid: r.kid,
      alg: 'ES256' as const,
      use: 'sig' as const,
      nbf: Math.floor(new Date(r.created_at).getTime() / 1000),
      ...(r.retired_at ? { exp: Math.ceil(new Date(r.retired_at).getTime() / 1000) + RETIRED_KEY_GRACE_S } : {}),
    })),
    log_verifier_keys: await logVerifierKeys(),
  });

  /**
   * The signed response for a request to `authority` (its Host): the body and
   * the Signature-Input and Signature fields, one member per active key (RFC
   * 9421 4.1, 4.2; ecdsa-p256-sha256 per 3.3.4, r || s). Reads sealed private keys.
   */
  const signedResponse = async (authority: string) => {
    const doc = await document();
    const created = Math.floor(clock.now().getTime() / 1000);
    const inputs: string[] = [];
    const signatures: string[] = [];
    let n = 0;
    for (const row of (await rows()).filter((r) => r.retired_at === null)) {
      const label = `sig${++n}`;
      const params = `("@authority";req);created=${created};expires=${created + SIGNATURE_TTL_S};keyid=${sfString(row.kid)};alg="ecdsa-p256-sha256";tag=${sfString(DIRECTORY_TAG)}`;
      // RFC 9421 2.5: the signature base, each covered component then @signature-params, no trailing newline.
      const base = `"@authority";req: ${authority.toLowerCase()}\n"@signature-params": ${params}`;
      const key = createPrivateKey(openPrivateKey(ring, row));
      const sig = sign('sha256', Buffer.from(base, 'utf8'), { key, dsaEncoding: 'ieee-p1363' });
      inputs.push(`${label}=${params}`);
      signatures.push(`${label}=:${sig.toString('base64')}:`);
    }
    return { body: JSON.stringify(doc), signatureInput: inputs.join(', '), signature: signatures.join(', ') };
  };

  /**
   * Rotates an organisation's identity-signing key: the active one is retired
   * (it stays in the directory with its window, so mail it signed still
   * verifies) and a new one is created, with a `signing_key.rotated` audit
   * event in the same transaction. Returns both kids.
   */
  const rotateIdentityKey = (org: { id: string; domain: string }) =>
    db.transaction().execute(async (tx) => {
      const old = await activeSigningKey(tx, 'identity-es256', org.id);
      const at = clock.now().toISOString();
      if (old) await tx.updateTable('signing_keys').set({ retired_at: at }).where('id', '=', old.id).execute();
      const next = await createSigningKey(tx, ring, clock, 'identity-es256', org);
      await audit.record(tx, {
        action: 'signing_key.rotated',
        actor: { type: 'system', id: null, orgId: org.id, chain: [] },
        target: { type: 'signing_key', id: next.kid },
        details: { purpose: 'identity-es256', retired_kid: old?.kid ?? null, kid: next.kid },
      });
      return { retired: old?.kid ?? null, active: next.kid };
    });

  return { document, signedResponse, rotateIdentityKey };
};

export type KeyDirectoryService = ReturnType<typeof createKeyDirectory>;
