import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { decodeProtectedHeader, jwtVerify, SignJWT } from 'jose';
import { headerNames, headerValue, relaxedBodyHash, splitMessage } from './mime.js';

export const IDENTITY_HEADER = 'X-Agent-Identity';

/** The claims of X-Agent-Identity (CONTRACT.md, "The AI identity header"). */
export type IdentityClaims = {
  ai_generated: true;
  iss: string;
  sub: string;
  agent_address: string;
  delegation_chain: { type: string; id: string; name: string }[];
  responsible_human: { id: string; name: string };
  oversight_mode: string;
  approved_by: string | null;
  approval_id: string | null;
  message_id: string;
  body_hash: string;
  iat: number;
  /** RFC 7638 thumbprint of the signing key (the protected header's kid), inside the signed claims too. */
  kid?: string;
  /** RFC 8693 4.1 actor claim: the agent acts; the nested `act` is the human it acts for (on-behalf-of clinician, else its responsible human). */
  act?: {
    sub: string;
    type: 'agent';
    act?: { sub: string; type: 'human' } | { sub: string; type: 'clinician'; name: string; npi: string | null };
  };
  /** The clinician the agent sends for (a live grant for the message's category): name and NPI. */
  on_behalf_of?: { sub: string; name: string; npi: string | null; category: string; grant_id: string };
  /** Hex SHA-256 of the Agent-Attribution-JSON value (attribution-headers.ts), binding it to this statement. */
  attribution_hash?: string;
};

// A node:crypto KeyObject, which jose signs with directly (node:crypto sign): about half the CPU of signing with the
// WebCrypto CryptoKey that importPKCS8 returns (measured 51 against 107 us per ES256 JWS on Node 24).
const keyCache = new Map<string, KeyObject>();

/** Signs the claims as a compact JWS, ES256, with `kid` in the protected header (RFC 7515, RFC 7518 3.4). */
export const signIdentityHeader = async (claims: IdentityClaims, kid: string, privateKeyPem: string): Promise<string> => {
  let key = keyCache.get(kid);
  if (!key) {
    key = createPrivateKey(privateKeyPem);
    if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1')
      throw new Error('The identity key is not a P-256 key.');
    keyCache.set(kid, key);
  }
  const { iat, ...rest } = claims;
  return new SignJWT(rest).setProtectedHeader({ alg: 'ES256', kid, typ: 'agent-identity+jwt' }).setIssuedAt(iat).sign(key);
};

export type VerifyOutcome = {
  valid: boolean;
  ai_generated: boolean;
  agent: { id: string; address: string } | null;
  delegation_chain: IdentityClaims['delegation_chain'];
  responsible_human: IdentityClaims['responsible_human'] | null;
  oversight_mode: string | null;
  approved_by: string | null;
  approval_id: string | null;
  kid: string | null;
  reasons: string[];
};

export type PublicKeyLookup = (kid: string) => Promise<{ pem: string; retired: boolean; orgDomain: string | null } | null>;

/**
 * Checks a raw RFC 5322 message: the X-Agent-Identity signature against the
 * key named by `kid`, the issuer against the key's organisation, and the
 * `body_hash` claim against the relaxed body hash of the bytes at hand.
 * Never throws for a bad message: `valid` is false and `reasons` say why.
 */
export const verifyIdentityHeader = async (raw: Buffer, lookup: PublicKeyLookup): Promise<VerifyOutcome> => {
  const out: VerifyOutcome = {
    valid: false,
    ai_generated: false,
    agent: null,
    delegation_chain: [],
    responsible_human: null,
    oversight_mode: null,
    approved_by: null,
    approval_id: null,
    kid: null,
    reasons: [],
  };
  const { header, body } = splitMessage(raw);
  // Exactly one statement: a second, prepended header must not be able to shadow the signed one.
  if (headerNames(header).filter((n) => n === IDENTITY_HEADER.toLowerCase()).length > 1) {
    out.reasons.push('multiple_headers');
    return out;
  }
  const value = headerValue(header, IDENTITY_HEADER);
  if (!value) {
    out.reasons.push('header_missing');
    return out;
  }
  // Folding whitespace is not part of the token (RFC 5322 2.2.3).
  const token = value.replace(/\s+/g, '');
  let kid: string | undefined;
  try {
    const h = decodeProtectedHeader(token);
    kid = typeof h.kid === 'string' ? h.kid : undefined;
    if (h.alg !== 'ES256') out.reasons.push('unsupported_alg');
  } catch {
    out.reasons.push('malformed_token');
    return out;
  }
  if (!kid) {
    out.reasons.push('kid_missing');
    return out;
  }
  out.kid = kid;
  const key = await lookup(kid);
  if (!key) {
    out.reasons.push('unknown_key');
    return out;
  }
  let claims: Partial<IdentityClaims>;
  try {
    const r = await jwtVerify(token, createPublicKey(key.pem), { algorithms: ['ES256'] });
    claims = r.payload as Partial<IdentityClaims>;
  } catch {
    out.reasons.push('bad_signature');
    return out;
  }
  out.ai_generated = claims.ai_generated === true;
  out.agent = typeof claims.sub === 'string' ? { id: claims.sub, address: String(claims.agent_address ?? '') } : null;
  out.delegation_chain = Array.isArray(claims.delegation_chain) ? claims.delegation_chain : [];
  out.responsible_human = claims.responsible_human ?? null;
  out.oversight_mode = claims.oversight_mode ?? null;
  out.approved_by = claims.approved_by ?? null;
  out.approval_id = claims.approval_id ?? null;
  if (key.orgDomain && claims.iss !== key.orgDomain) out.reasons.push('issuer_mismatch');
  if (claims.body_hash !== relaxedBodyHash(body)) out.reasons.push('body_hash_mismatch');
  const msgId = headerValue(header, 'Message-ID');
  if (claims.message_id && msgId && claims.message_id !== msgId) out.reasons.push('message_id_mismatch');
  if (!out.ai_generated) out.reasons.push('not_ai_generated_claim');
  // A retired key still verifies what it signed while it was active (rotation by kid).
  out.valid = out.reasons.length === 0;
  return out;
};
