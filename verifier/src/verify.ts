import { calculateJwkThumbprint, decodeProtectedHeader, importJWK, jwtVerify } from 'jose';
import { dkimVerify } from 'mailauth/lib/dkim/verify.js';
import { addressesOf, ATTRIBUTION_HEADER, ATTRIBUTION_JSON_HEADER, parseAttributionJson } from './attribution.js';
import type { KeyDirectory } from './directory.js';
import { bodyHashOf, contentHashOf, fieldValues, sha256Hex, splitMessage } from './message.js';
import { leafHash, rootFromInclusion } from './merkle.js';
import { cosignatureTime, hasNoteSignature, parseCheckpoint, parseNote, parseVkey } from './note.js';
import { parseTlogProof } from './tlog-proof.js';

export const IDENTITY_HEADER = 'X-Agent-Identity';
/** The audit action of the leaf a Mailward receipt proves (one per delivered message). */
export const RECEIPT_ACTION = 'email.receipt';

/** DNS answers for offline DKIM checks, the shape of MAILWARD_DNS_OVERRIDES: `{ TXT: { name: [record, ...] } }`. */
export type DnsAnswers = { TXT?: Record<string, string[]> };
export type Resolver = (name: string, type: string) => Promise<string[][]>;

export type VerifyOptions = {
  /** Keys of X-Agent-Identity (and, if present, the log's verifier keys). */
  directory?: KeyDirectory;
  /** DNS for DKIM: answers given offline, or a resolver function. Without it DKIM is not checked and the result is invalid. */
  dns?: DnsAnswers | Resolver;
  /** A c2sp.org/tlog-proof@v1 receipt of the message. */
  receipt?: string;
  /** Log verifier keys (`name+id+base64`); default: the directory's `log_verifier_keys`. */
  logKeys?: string[];
  /** Witness verifier keys (cosignature/v1, type 0x04): each must have cosigned the receipt's checkpoint. */
  witnessKeys?: string[];
};

export type Report = {
  valid: boolean;
  reasons: string[];
  dkim: { valid: boolean; signatures: { domain: string; selector: string; algorithm: string; result: string; covers: string[] }[] };
  attribution: { valid: boolean; responsible: string[]; json: unknown };
  identity: { valid: boolean; kid: string | null; claims: Record<string, unknown> | null };
  receipt: null | {
    valid: boolean;
    index: number | null;
    tree_size: number | null;
    origin: string | null;
    witnesses: { name: string; cosigned: boolean; time: number | null }[];
  };
};

const resolverOf = (dns: DnsAnswers | Resolver): Resolver =>
  typeof dns === 'function'
    ? dns
    : async (name, type) => {
        const got = type === 'TXT' ? dns.TXT?.[name] ?? dns.TXT?.[name.toLowerCase()] : undefined;
        if (!got) throw Object.assign(new Error(`no ${type} answer for ${name}`), { code: 'ENOTFOUND' });
        return got.map((r) => [r]);
      };

const REQUIRED_DKIM = ['ed25519-sha256', 'rsa-sha256'];
const MUST_COVER = [IDENTITY_HEADER, ATTRIBUTION_HEADER, ATTRIBUTION_JSON_HEADER].map((h) => h.toLowerCase());

/**
 * Verifies a Mailward message offline: both DKIM signatures (ed25519-sha256 and rsa-sha256, covering
 * the identity and attribution headers), the attribution headers against the signed identity claims,
 * X-Agent-Identity (ES256 under a directory key valid when it was issued) and, given a receipt, its
 * inclusion under a checkpoint signed by the log and cosigned by every witness named. Never throws for
 * a bad message: `valid` is false and `reasons` say why.
 */
export const verifyMessage = async (raw: Buffer, opts: VerifyOptions = {}): Promise<Report> => {
  const reasons: string[] = [];
  const { header, body } = splitMessage(raw);
  const report: Report = {
    valid: false,
    reasons,
    dkim: { valid: false, signatures: [] },
    attribution: { valid: false, responsible: [], json: null },
    identity: { valid: false, kid: null, claims: null },
    receipt: null,
  };

  // X-Agent-Identity: exactly one, so a prepended copy cannot shadow the signed one.
  const ids = fieldValues(header, IDENTITY_HEADER);
  const token = ids.length === 1 ? ids[0]!.replace(/\s+/g, '') : null;
  if (ids.length !== 1) reasons.push(ids.length === 0 ? 'identity_header_missing' : 'identity_header_repeated');
  let claims: Record<string, unknown> | null = null;
  if (token) {
    const before = reasons.length;
    try {
      const h = decodeProtectedHeader(token);
      report.identity.kid = typeof h.kid === 'string' ? h.kid : null;
      if (h.alg !== 'ES256') reasons.push('identity_unsupported_alg');
    } catch {
      reasons.push('identity_malformed');
    }
    const jwk = opts.directory?.keys.find((k) => k.kid === report.identity.kid);
    if (!opts.directory) reasons.push('identity_no_directory');
    else if (!jwk) reasons.push('identity_unknown_key');
    else {
      try {
        // RFC 7638: the kid names the key by its thumbprint, so a directory cannot list a key under another key's name.
        if ((await calculateJwkThumbprint(jwk, 'sha256')) !== jwk.kid) reasons.push('identity_kid_not_thumbprint');
        const { payload } = await jwtVerify(token, await importJWK(jwk, 'ES256'), { algorithms: ['ES256'] });
        claims = payload as Record<string, unknown>;
        const iat = Number(claims.iat);
        // The directory keeps retired keys with their window: a header verifies if its key was valid when it was signed.
        if ((jwk.nbf !== undefined && iat < jwk.nbf) || (jwk.exp !== undefined && iat > jwk.exp)) reasons.push('identity_key_not_valid_at_iat');
        if (claims.kid !== undefined && claims.kid !== report.identity.kid) reasons.push('identity_kid_claim_mismatch');
        if (claims.ai_generated !== true) reasons.push('identity_not_ai_generated');
        if (claims.body_hash !== bodyHashOf(body)) reasons.push('identity_body_hash_mismatch');
        const mid = fieldValues(header, 'Message-ID')[0];
        if (claims.message_id && mid && claims.message_id !== mid) reasons.push('identity_message_id_mismatch');
      } catch {
        reasons.push('identity_bad_signature');
      }
    }
    report.identity.claims = claims;
    report.identity.valid = claims !== null && reasons.length === before;
  }

  // Attribution headers: present once each, the JSON parses, and both agree with the signed identity claims.
  {
    const before = reasons.length;
    const human = fieldValues(header, ATTRIBUTION_HEADER);
    const json = fieldValues(header, ATTRIBUTION_JSON_HEADER);
    if (human.length !== 1 || json.length !== 1) reasons.push('attribution_headers_missing_or_repeated');
    else {
      report.attribution.responsible = addressesOf(human[0]!);
      const parsed = parseAttributionJson(json[0]!);
      report.attribution.json = parsed;
      if (!parsed) reasons.push('attribution_json_malformed');
      else {
        const listed = parsed.responsible_humans.map((h) => h.email.toLowerCase());
        if (listed.join(',') !== report.attribution.responsible.join(',')) reasons.push('attribution_headers_disagree');
        if (claims && String(claims.agent_address ?? '').toLowerCase() !== parsed.agent.toLowerCase()) reasons.push('attribution_agent_mismatch');
        const rh = claims?.responsible_human as { name?: string } | undefined;
        if (rh?.name && !parsed.responsible_humans.some((h) => h.name === rh.name)) reasons.push('attribution_responsible_mismatch');
        const ah = claims?.attribution_hash;
        if (claims && ah !== undefined && ah !== sha256Hex(json[0]!)) reasons.push('attribution_not_the_signed_one');
      }
    }
    report.attribution.valid = reasons.length === before;
  }

  // DKIM: both algorithms pass for the issuer's domain, each covering the identity and attribution headers.
  {
    const before = reasons.length;
    if (!opts.dns) reasons.push('dkim_no_dns');
    else {
      const r = (await dkimVerify(raw, { resolver: resolverOf(opts.dns) } as never)) as unknown as {
        results: { signingDomain: string; selector: string; algo: string; status: { result: string }; signingHeaders?: { keys: string } }[];
      };
      report.dkim.signatures = r.results.map((s) => ({
        domain: s.signingDomain,
        selector: s.selector,
        algorithm: s.algo,
        result: s.status.result,
        covers: String(s.signingHeaders?.keys ?? '')
          .toLowerCase()
          .split(/\s*:\s*/)
          .filter(Boolean),
      }));
      const domain = typeof claims?.iss === 'string' ? claims.iss.toLowerCase() : null;
      for (const alg of REQUIRED_DKIM) {
        const s = report.dkim.signatures.find((x) => x.algorithm === alg && x.result === 'pass' && (!domain || x.domain.toLowerCase() === domain));
        if (!s) reasons.push(`dkim_${alg}_not_pass`);
        else if (!MUST_COVER.every((h) => s.covers.includes(h))) reasons.push(`dkim_${alg}_misses_headers`);
      }
    }
    report.dkim.valid = reasons.length === before;
  }

  if (opts.receipt !== undefined) report.receipt = verifyReceipt(raw, opts.receipt, opts, reasons);

  report.valid = reasons.length === 0;
  return report;
};

/** The event a Mailward receipt carries in its `extra` line: the previous chain hash and the event as hashed. */
type ReceiptExtra = { prev_hash: string; event: string };

const verifyReceipt = (raw: Buffer, text: string, opts: VerifyOptions, reasons: string[]): NonNullable<Report['receipt']> => {
  const out: NonNullable<Report['receipt']> = { valid: false, index: null, tree_size: null, origin: null, witnesses: [] };
  const before = reasons.length;
  const fail = (r: string) => {
    reasons.push(r);
    return out;
  };
  let proof: ReturnType<typeof parseTlogProof>;
  try {
    proof = parseTlogProof(text);
  } catch {
    return fail('receipt_malformed');
  }
  out.index = proof.index;
  let extra: ReceiptExtra;
  let event: { action?: string; content_hash?: string; target?: { type?: string; id?: string }; details?: Record<string, unknown> };
  try {
    extra = JSON.parse(proof.extra?.toString('utf8') ?? '') as ReceiptExtra;
    if (!/^[0-9a-f]{64}$/.test(extra.prev_hash) || typeof extra.event !== 'string') throw new Error('bad extra');
    event = JSON.parse(extra.event);
  } catch {
    return fail('receipt_extra_malformed');
  }
  // The audit leaf is the event's chain hash: SHA-256(prev_hash || event as hashed); RFC 6962 hashes it once more.
  const leaf = Buffer.from(sha256Hex(Buffer.concat([Buffer.from(extra.prev_hash, 'hex'), Buffer.from(extra.event, 'utf8')])), 'hex');
  let note: ReturnType<typeof parseNote>;
  let cp: ReturnType<typeof parseCheckpoint>;
  try {
    note = parseNote(proof.checkpoint);
    cp = parseCheckpoint(note.text);
  } catch {
    return fail('receipt_checkpoint_malformed');
  }
  out.tree_size = cp.size;
  out.origin = cp.origin;
  const root = rootFromInclusion(proof.index, cp.size, leafHash(leaf), proof.proof);
  if (!root || !root.equals(cp.root)) reasons.push('receipt_not_included');

  const logKeys = (opts.logKeys ?? opts.directory?.log_verifier_keys ?? []).flatMap((k) => {
    try {
      return [parseVkey(k)];
    } catch {
      return [];
    }
  });
  if (logKeys.length === 0) reasons.push('receipt_no_log_key');
  else if (!logKeys.some((k) => k.name === cp.origin && hasNoteSignature(note, k))) reasons.push('receipt_checkpoint_not_signed_by_log');

  for (const w of opts.witnessKeys ?? []) {
    let key: ReturnType<typeof parseVkey>;
    try {
      key = parseVkey(w);
    } catch {
      reasons.push('receipt_witness_key_malformed');
      continue;
    }
    const time = cosignatureTime(note, key);
    out.witnesses.push({ name: key.name, cosigned: time !== null, time });
    if (time === null) reasons.push(`receipt_not_cosigned_by:${key.name}`);
  }

  // What the leaf says about this message: it must be its receipt, for these bytes and this identity header.
  const { header, body } = splitMessage(raw);
  const mid = fieldValues(header, 'Message-ID')[0] ?? '';
  const ids = fieldValues(header, IDENTITY_HEADER);
  if (event.action !== RECEIPT_ACTION) reasons.push('receipt_wrong_event');
  if (event.target?.id !== sha256Hex(mid)) reasons.push('receipt_other_message');
  if (event.content_hash !== contentHashOf(body)) reasons.push('receipt_content_hash_mismatch');
  if (ids.length !== 1 || event.details?.identity_header_hash !== sha256Hex(ids[0]!.replace(/\s+/g, ''))) reasons.push('receipt_identity_hash_mismatch');
  out.valid = reasons.length === before;
  return out;
};
