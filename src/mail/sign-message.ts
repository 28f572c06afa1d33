import { type AttributionInput, attributionHeaders } from './attribution-headers.js';
import { dkimSignMessage } from './dkim.js';
import { type IdentityClaims, IDENTITY_HEADER, signIdentityHeader } from './identity-header.js';
import { composeMime, foldedHeader, type MessageContent, relaxedBodyHash, splitMessage, type Threading } from './mime.js';

/** Everything needed to produce the signed bytes; plain data, so it can cross to a worker thread. */
export type SignInput = {
  content: MessageContent;
  threading: Threading;
  dateMs: number;
  domain: string;
  claims: Omit<IdentityClaims, 'body_hash' | 'kid' | 'attribution_hash'>;
  /** The draft-chuang attribution headers' data (the same people as the claims). */
  attribution: AttributionInput;
  identityKey: { kid: string; pem: string };
  dkim: { ed25519: { selector: string; pem: string }; rsa: { selector: string; pem: string } };
};

/**
 * MIME, then X-Agent-Identity over the relaxed body hash (the DKIM bh=), then
 * the draft-chuang attribution headers, then both DKIM signatures covering
 * all three (CONTRACT.md, "The AI identity header").
 */
export const signMessage = async (i: SignInput): Promise<Buffer> => {
  const mime = await composeMime(i.content, i.threading, new Date(i.dateMs));
  const bodyHash = relaxedBodyHash(splitMessage(mime).body);
  const attribution = attributionHeaders(i.attribution);
  const jws = await signIdentityHeader(
    { ...i.claims, body_hash: bodyHash, kid: i.identityKey.kid, attribution_hash: attribution.jsonHash },
    i.identityKey.kid,
    i.identityKey.pem,
  );
  const unsigned = Buffer.concat([Buffer.from(foldedHeader(IDENTITY_HEADER, jws) + attribution.lines), mime]);
  return dkimSignMessage(
    unsigned,
    i.domain,
    [
      { selector: i.dkim.ed25519.selector, privateKeyPem: i.dkim.ed25519.pem, algorithm: 'ed25519-sha256' },
      { selector: i.dkim.rsa.selector, privateKeyPem: i.dkim.rsa.pem, algorithm: 'rsa-sha256' },
    ],
    new Date(i.dateMs),
  );
};
