import { createHash, createPrivateKey, type KeyObject, sign } from 'node:crypto';
import { createRequire } from 'node:module';
import { AppError } from '../kernel/errors.js';
import { relaxedBodyHash, splitMessage } from './mime.js';

/**
 * Header fields both DKIM signatures cover. `x-agent-identity` and the two
 * draft-chuang attribution fields are in it so the AI-identity statement cannot
 * be stripped or swapped in transit.
 */
export const DKIM_HEADER_LIST =
  'from:sender:reply-to:subject:date:message-id:to:cc:mime-version:content-type:content-transfer-encoding:in-reply-to:references:x-agent-identity:agent-attribution:agent-attribution-json';

const SIGNED = DKIM_HEADER_LIST.split(':');

export type DkimKey = { selector: string; privateKeyPem: string; algorithm: 'ed25519-sha256' | 'rsa-sha256' };

type ParsedHeader = { key: string; casedKey: string; line: Buffer };
// mailauth's own header parser and DKIM-Signature formatter (same folding as its signer; no typings shipped).
// Not a public API: mailauth's signer (7.x too) cannot over-sign, so the signature is computed here from
// its canonicalisation pieces. package.json pins mailauth to an exact version for this reason, and
// test/dkim-vectors.test.ts reproduces RFC 8463's ed25519 signature byte for byte, so an upgrade
// that changes these pieces fails the tests.
type MailauthTools = {
  parseHeaders: (buf: Buffer) => { parsed: ParsedHeader[] };
  formatSignatureHeaderLine: (type: 'DKIM', values: Record<string, string | number>, folded: boolean) => string;
  formatRelaxedLine: (line: Buffer | string, suffix?: string) => Buffer;
};
// Loaded on first use: mailauth's tools module costs about 0.4 s to load, and signing runs on worker
// threads by default, so the main thread of `mailward serve` never needs it (a faster start).
let toolsModule: MailauthTools | undefined;
const tools = (): MailauthTools => {
  toolsModule ??= createRequire(import.meta.url)('mailauth/lib/tools.js') as MailauthTools;
  return toolsModule;
};

/** The header block's fields, top to bottom (each with its lower-cased name and raw line). */
export const parseHeaderFields = (header: Buffer): ParsedHeader[] => tools().parseHeaders(header).parsed;

/**
 * RFC 6376 5.4.2: for each name of h=, in order, the bottom-most instance not
 * yet used; a name with no instance left stands for the null string.
 */
export const selectSignedHeaders = (parsed: ParsedHeader[], names: string[]): ParsedHeader[] => {
  const unused = [...parsed];
  const out: ParsedHeader[] = [];
  for (const name of names.map((n) => n.trim().toLowerCase())) {
    for (let i = unused.length - 1; i >= 0; i--) {
      if (unused[i]?.key === name) {
        out.push(unused[i] as ParsedHeader);
        unused.splice(i, 1);
        break;
      }
    }
  }
  return out;
};

/**
 * The b= value for one DKIM-Signature header (RFC 6376 3.7, relaxed header
 * canonicalisation): the selected header fields, then the signature header
 * itself with an empty b=, hashed with SHA-256 and signed. Ed25519 signs the
 * SHA-256 of that data (RFC 8463 3, PureEdDSA over the hash), so the result is
 * deterministic and can be checked byte for byte against RFC 8463's example.
 */
export const dkimSignatureValue = (
  selected: ParsedHeader[],
  signatureHeader: string,
  algorithm: DkimKey['algorithm'],
  key: KeyObject,
): string => {
  if (key.asymmetricKeyType !== algorithm.split('-')[0])
    throw new AppError('dkim_failed', 500, 'DKIM key type does not match its algorithm.');
  const headerData = Buffer.concat(selected.map((h) => tools().formatRelaxedLine(h.line, '\r\n')));
  const own = Buffer.from(
    tools()
      .formatRelaxedLine(signatureHeader)
      .toString('binary')
      .replace(/([;:\s]+b=)[^;]+/, '$1'),
    'binary',
  );
  const data = Buffer.concat([headerData, own]);
  const b = algorithm === 'rsa-sha256' ? sign('sha256', data, key) : sign(null, createHash('sha256').update(data).digest(), key);
  return b.toString('base64');
};

const keyCache = new Map<string, KeyObject>();
const privateKey = (pem: string) => {
  let k = keyCache.get(pem);
  if (!k) {
    k = createPrivateKey(pem);
    keyCache.set(pem, k);
  }
  return k;
};

/**
 * The h= list: every covered header present, bottom-up (the order RFC 6376
 * 5.4.2 verifiers consume instances in), then each covered name ONCE MORE
 * (over-signing, RFC 6376 5.4.2 and 8.15). A verifier treats a name with no
 * unused instance left as the null string, so the signature holds as sent; a
 * From:, Subject:, X-Agent-Identity: (or a Reply-To: that was absent) added
 * later is picked up by that extra entry and breaks both signatures.
 */
export const signedHeaderNames = (parsed: ParsedHeader[]) => {
  const present = parsed.filter((h) => SIGNED.includes(h.key)).reverse();
  return { present, names: [...present.map((h) => h.casedKey), ...SIGNED] };
};

/**
 * Signs `raw` with every key (RFC 6376, RFC 8463 for ed25519), relaxed/relaxed,
 * over-signing the covered headers, and returns the message with the
 * DKIM-Signature headers prepended. mailauth
 * signs only the header instances present, so the signature is computed here
 * with mailauth's canonicalization pieces; tests verify it with mailauth's
 * verifier. Throws 500 dkim_failed: a message never leaves unsigned.
 */
export const dkimSignMessage = async (raw: Buffer, domain: string, keys: DkimKey[], signTime: Date): Promise<Buffer> => {
  try {
    const { header, body } = splitMessage(raw);
    const parsed = parseHeaderFields(header);
    const { names } = signedHeaderNames(parsed);
    const selected = selectSignedHeaders(parsed, names);
    const values = {
      v: 1,
      c: 'relaxed/relaxed',
      d: domain,
      h: names.join(': '),
      t: Math.floor(signTime.getTime() / 1000),
      bh: relaxedBodyHash(body),
    };
    const lines: string[] = [];
    for (const k of keys) {
      const v = { ...values, a: k.algorithm, s: k.selector };
      // The placeholder b= keeps the folding of the final header; dkimSignatureValue empties it before hashing.
      const draft = tools().formatSignatureHeaderLine('DKIM', { ...v, b: 'a'.repeat(73) }, true);
      const b = dkimSignatureValue(selected, draft, k.algorithm, privateKey(k.privateKeyPem));
      lines.push(tools().formatSignatureHeaderLine('DKIM', { ...v, b }, true));
    }
    return Buffer.concat([Buffer.from(`${lines.join('\r\n')}\r\n`, 'binary'), raw]);
  } catch (e) {
    if (e instanceof AppError) throw e;
    throw new AppError('dkim_failed', 500, 'DKIM signing failed.');
  }
};
