import { createPublicKey, verify } from 'node:crypto';
import { calculateJwkThumbprint, type JWK } from 'jose';

/**
 * The key directory of draft-meunier-webbotauth-httpsig-directory (served at
 * /.well-known/http-message-signatures-directory as
 * application/http-message-signatures-directory+json): a JWK Set whose keys carry
 * their validity window (`nbf`, `exp`, seconds), plus Mailward's log verifier keys.
 */
export const DIRECTORY_PATH = '/.well-known/http-message-signatures-directory';
export const DIRECTORY_MEDIA_TYPE = 'application/http-message-signatures-directory+json';
export const DIRECTORY_TAG = 'http-message-signatures-directory';

export type DirectoryKey = JWK & { kid: string; nbf?: number; exp?: number };
export type KeyDirectory = { keys: DirectoryKey[]; log_verifier_keys?: string[] };

export const parseDirectory = (text: string): KeyDirectory => {
  const v = JSON.parse(text) as KeyDirectory;
  if (!v || !Array.isArray(v.keys)) throw new Error('not a key directory (no keys array)');
  return v;
};

/** RFC 9421 3.3: algorithm names this verifier knows, by JWK shape. */
const algorithmOf = (jwk: JWK) => (jwk.kty === 'EC' && jwk.crv === 'P-256' ? 'ecdsa-p256-sha256' : jwk.kty === 'OKP' && jwk.crv === 'Ed25519' ? 'ed25519' : null);

/**
 * Checks the RFC 9421 signatures of a directory response: every Signature-Input member tagged for the
 * directory that covers ("@authority";req), names a key of the directory by its RFC 7638 thumbprint and
 * verifies. Returns the thumbprints whose signatures verified (none when unsigned or bad).
 */
export const verifyDirectoryResponse = async (
  directory: KeyDirectory,
  headers: { signatureInput: string | null; signature: string | null },
  authority: string,
  now: Date = new Date(),
): Promise<string[]> => {
  if (!headers.signatureInput || !headers.signature) return [];
  const sigs = new Map<string, Buffer>();
  for (const m of headers.signature.matchAll(/([a-z*][a-z0-9_.*-]*)=:([A-Za-z0-9+/=]*):/g)) sigs.set(m[1]!, Buffer.from(m[2]!, 'base64'));
  const ok: string[] = [];
  for (const m of headers.signatureInput.matchAll(/([a-z*][a-z0-9_.*-]*)=(\([^)]*\)[^,]*)/g)) {
    const [, label, params] = m as unknown as [string, string, string];
    const inner = /^\(([^)]*)\)/.exec(params)![1]!.trim();
    if (inner !== '"@authority";req') continue;
    const p = Object.fromEntries([...params.matchAll(/;([a-z]+)=("[^"]*"|[0-9]+)/g)].map((x) => [x[1]!, x[2]!.replace(/^"|"$/g, '')]));
    if (p.tag !== DIRECTORY_TAG || !p.keyid) continue;
    if (p.expires && Number(p.expires) < now.getTime() / 1000) continue;
    const sig = sigs.get(label);
    const jwk = directory.keys.find((k) => k.kid === p.keyid);
    if (!sig || !jwk) continue;
    const alg = algorithmOf(jwk);
    if (!alg || (p.alg && p.alg !== alg)) continue;
    if ((await calculateJwkThumbprint(jwk, 'sha256')) !== p.keyid) continue;
    const base = `"@authority";req: ${authority.toLowerCase()}\n"@signature-params": ${params}`;
    const key = createPublicKey({ key: jwk as never, format: 'jwk' });
    const good =
      alg === 'ed25519'
        ? verify(null, Buffer.from(base), key, sig)
        : verify('sha256', Buffer.from(base), { key, dsaEncoding: 'ieee-p1363' }, sig);
    if (good) ok.push(p.keyid);
  }
  return ok;
};

/** Fetches a directory over HTTP(S) and keeps it only when its response signature verifies. */
export const fetchDirectory = async (url: string): Promise<KeyDirectory> => {
  const res = await fetch(url, { redirect: 'error' });
  if (!res.ok) throw new Error(`directory fetch failed: HTTP ${res.status}`);
  const dir = parseDirectory(await res.text());
  const signed = await verifyDirectoryResponse(
    dir,
    { signatureInput: res.headers.get('signature-input'), signature: res.headers.get('signature') },
    new URL(url).host,
  );
  if (signed.length === 0) throw new Error('directory response signature does not verify');
  return dir;
};
