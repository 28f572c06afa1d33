/**
 * What an SMTP outcome means, as data (like ZoneMTA's bounce table): the first
 * rule whose pattern matches `"<code> <enhanced> <text>"` decides; the reply
 * class decides otherwise (RFC 5321 4.2.1: 4yz transient, 5yz permanent).
 */
export type BounceAction = 'defer' | 'bounce';
export type BounceRule = { pattern: RegExp; action: BounceAction; category: string };

export const BOUNCE_RULES: BounceRule[] = [
  { pattern: /^5\d\d 5\.7\.\d/, action: 'bounce', category: 'policy' },
  { pattern: /^5\d\d 5\.1\.[0-3]/, action: 'bounce', category: 'recipient' },
  { pattern: /^5\d\d 5\.2\.2/, action: 'bounce', category: 'mailbox_full' },
  { pattern: /^4\d\d /, action: 'defer', category: 'transient' },
  { pattern: /^5\d\d /, action: 'bounce', category: 'permanent' },
];

export type DeliveryOutcome =
  | { kind: 'accepted'; code: number }
  | { kind: 'defer' | 'bounce'; code: number | null; category: string }
  /** Our side cannot send it at all (e.g. too large once signed): `failed`, no retry. */
  | { kind: 'fail'; code: null; category: string };

/** Classifies a nodemailer error: SMTP replies by the table, anything without a reply (connection, TLS, DNS) is transient. */
export const classifySmtpError = (err: { responseCode?: number; response?: string; code?: string }): DeliveryOutcome => {
  const code = typeof err.responseCode === 'number' ? err.responseCode : null;
  // A peer that cannot do STARTTLS refused transport security, not the message: retry (another MX, a fixed relay), never bounce.
  if (err.code === 'ETLS') return { kind: 'defer', code, category: 'tls' };
  if (code === null) return { kind: 'defer', code: null, category: 'connection' };
  const enhanced = /\b([245]\.\d{1,3}\.\d{1,3})\b/.exec(err.response ?? '')?.[1] ?? '';
  const line = `${code} ${enhanced}`;
  for (const r of BOUNCE_RULES) if (r.pattern.test(line)) return { kind: r.action, code, category: r.category };
  return code >= 500 ? { kind: 'bounce', code, category: 'permanent' } : { kind: 'defer', code, category: 'transient' };
};
