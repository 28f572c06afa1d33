import type { SigningKeysTable } from '../store/schema.js';
import { dkimPublicValue } from '../identity/signing-keys.js';

export type DnsRecord = { type: 'TXT'; name: string; value: string; purpose: string };

/** The TXT records an organisation publishes so receivers can check its mail (RFC 6376, 7208, 7489, 8463). */
export const dnsRecordsFor = (domain: string, dkimKeys: SigningKeysTable[]): DnsRecord[] => [
  ...dkimKeys.map((k) => ({
    type: 'TXT' as const,
    name: k.kid,
    value: `v=DKIM1; k=${k.purpose === 'dkim-ed25519' ? 'ed25519' : 'rsa'}; p=${dkimPublicValue(k)}`,
    purpose: `DKIM (${k.purpose === 'dkim-ed25519' ? 'ed25519-sha256' : 'rsa-sha256'})`,
  })),
  {
    type: 'TXT',
    name: domain,
    value: 'v=spf1 mx -all',
    purpose: 'SPF: add your relay\'s include: or ip4: terms if mail leaves through a relay',
  },
  {
    type: 'TXT',
    name: `_dmarc.${domain}`,
    value: `v=DMARC1; p=quarantine; adkim=s; aspf=s; rua=mailto:dmarc-reports@${domain}`,
    purpose: 'DMARC',
  },
];
