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

/**
 * What an attempt learnt, for the message event: the SMTP reply (code,
 * RFC 3463 enhanced status, text with addresses replaced: a reply often names
 * the recipient) or the network or DNS error code. Never the message.
 */
export type AttemptDetail = {
  smtp_reply?: { code: number; enhanced_status: string | null; text: string };
  error?: { code: string; stage?: string; message?: string };
};

export type DeliveryOutcome =
  | ({ kind: 'accepted'; code: number } & Pick<AttemptDetail, 'smtp_reply'>)
  | ({ kind: 'defer' | 'bounce'; code: number | null; category: string } & AttemptDetail)
  /** Our side cannot send it at all (e.g. too large once signed): `failed`, no retry. */
  | ({ kind: 'fail'; code: null; category: string } & AttemptDetail);

// RFC 5321 4.1.2 Mailbox, loosely: anything around an "@" up to whitespace or angle brackets, quoted local parts too.
const ADDRESS_RE = /<?(?:"[^"]*"|[^\s<>()[\],;:"]+)@[^\s<>()[\],;:"]+>?/g;

/** Server or library text made safe to store: no addresses (replaced), printable ASCII only, one line, bounded. */
export const scrubDiagnostic = (text: string, max = 200): string =>
  text
    .replace(ADDRESS_RE, '[address]')
    .replace(/[^\x20-\x7e]+/g, ' ')
    .replace(/\s+/g, ' ')
    .trim()
    .slice(0, max);

const ENHANCED_RE = /^([245]\.\d{1,3}\.\d{1,3})\b/;

/** The parts of a (possibly multi-line) SMTP reply: RFC 5321 4.2 "code[-| ]text" lines, RFC 2034 enhanced code first in the text. */
export const parseSmtpReply = (code: number, response: string): NonNullable<AttemptDetail['smtp_reply']> => {
  const lines = response.split(/\r?\n/).map((l) => l.replace(/^\d{3}[ -]?/, '').trim());
  const enhanced = ENHANCED_RE.exec(lines[0] ?? '')?.[1] ?? null;
  const text = lines
    .map((l) => l.replace(ENHANCED_RE, '').trim())
    .filter(Boolean)
    .join(' ');
  return { code, enhanced_status: enhanced, text: scrubDiagnostic(text) };
};

type SmtpError = { responseCode?: number; response?: string; code?: string; originalCode?: string; command?: string; message?: string };

/** The network side of a failure without an SMTP reply: node's or nodemailer's error code, the SMTP stage, a scrubbed message. */
const errorDetail = (err: SmtpError): NonNullable<AttemptDetail['error']> => {
  // nodemailer wraps socket errors as ESOCKET and keeps node's own code (ECONNREFUSED, ETIMEDOUT...) in originalCode.
  const raw = err.originalCode ?? err.code;
  const code = typeof raw === 'string' && /^[A-Z0-9_]{1,32}$/.test(raw) ? raw : 'EUNKNOWN';
  const stage = typeof err.command === 'string' && /^[A-Z ]{1,16}$/.test(err.command) ? err.command : undefined;
  return { code, ...(stage ? { stage } : {}), ...(err.message ? { message: scrubDiagnostic(err.message) } : {}) };
};

/** Classifies a nodemailer error: SMTP replies by the table, anything without a reply (connection, TLS, DNS) is transient. */
export const classifySmtpError = (err: SmtpError): DeliveryOutcome => {
  const code = typeof err.responseCode === 'number' ? err.responseCode : null;
  const reply = code !== null ? { smtp_reply: parseSmtpReply(code, err.response ?? '') } : {};
  // A peer that cannot do STARTTLS refused transport security, not the message: retry (another MX, a fixed relay), never bounce.
  if (err.code === 'ETLS') return { kind: 'defer', code, category: 'tls', ...reply, error: errorDetail(err) };
  if (code === null) return { kind: 'defer', code: null, category: 'connection', error: errorDetail(err) };
  const enhanced = reply.smtp_reply?.enhanced_status ?? /\b([245]\.\d{1,3}\.\d{1,3})\b/.exec(err.response ?? '')?.[1] ?? '';
  const line = `${code} ${enhanced}`;
  for (const r of BOUNCE_RULES) if (r.pattern.test(line)) return { kind: r.action, code, category: r.category, ...reply };
  return code >= 500 ? { kind: 'bounce', code, category: 'permanent', ...reply } : { kind: 'defer', code, category: 'transient', ...reply };
};
