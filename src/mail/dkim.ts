import { dkimSign } from 'mailauth/lib/dkim/sign.js';
import { AppError } from '../kernel/errors.js';

/**
 * Header fields both DKIM signatures cover. mailauth takes a colon-separated
 * STRING (an array is silently ignored, PITFALLS.md); `x-agent-identity` is in
 * it so the AI-identity statement cannot be stripped or swapped in transit.
 */
export const DKIM_HEADER_LIST =
  'from:sender:reply-to:subject:date:message-id:to:cc:mime-version:content-type:content-transfer-encoding:in-reply-to:references:x-agent-identity';

export type DkimKey = { selector: string; privateKeyPem: string; algorithm: 'ed25519-sha256' | 'rsa-sha256' };

/**
 * Signs `raw` with every key (RFC 6376, RFC 8463 for ed25519), relaxed/relaxed,
 * and returns the message with the DKIM-Signature headers prepended.
 * Throws 500 dkim_failed when mailauth reports an error: a message never leaves unsigned.
 */
export const dkimSignMessage = async (raw: Buffer, domain: string, keys: DkimKey[], signTime: Date): Promise<Buffer> => {
  const result = await dkimSign(raw, {
    canonicalization: 'relaxed/relaxed',
    signTime,
    // The types say string[], the library reads a string (PITFALLS.md).
    headerList: DKIM_HEADER_LIST as unknown as string[],
    signatureData: keys.map((k) => ({
      signingDomain: domain,
      selector: k.selector,
      privateKey: k.privateKeyPem,
      algorithm: k.algorithm,
    })),
  } as Parameters<typeof dkimSign>[1]);
  if ((result.errors?.length ?? 0) > 0 || !result.signatures || result.signatures.trim() === '') {
    throw new AppError('dkim_failed', 500, 'DKIM signing failed.');
  }
  const count = (result.signatures.match(/^DKIM-Signature:/gim) ?? []).length;
  if (count !== keys.length) throw new AppError('dkim_failed', 500, 'DKIM signing produced too few signatures.');
  return Buffer.concat([Buffer.from(result.signatures), raw]);
};
