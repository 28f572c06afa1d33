import type { AuthenticateResult, DNSResolver } from 'mailauth';
import { type AddressObject, simpleParser } from 'mailparser';
import { headerValue, INBOUND_PARSE_OPTIONS, type MessageContent, splitMessage } from '../mail/mime.js';
import { classifyInbound } from '../phi/inbound-classifier.js';
import { storedFindings } from '../phi/outbound-screen.js';
import { scanMessage } from '../phi/phi-scanner.js';
import type { ScanOptions, Sensitivity } from '../phi/phi-types.js';
import type { PhiFindingOut } from '../phi/phi-schemas.js';
import type { InboundAuthResults } from './auth-results.js';
import { installDkimKeyCache } from './dkim-key-cache.js';
import type { AuthResolver } from './inbound-resolver.js';
import { type DsnReport, parseDsn } from './dsn.js';

/** What the SMTP session says about a message (the envelope), no content. */
export type InboundEnvelope = { mailFrom: string; rcptTo: string[]; clientIp: string; helo: string; tls: boolean };

/** Everything derived from the raw bytes before storage: pure CPU and DNS, no store. Runs on a worker thread when there are some. */
export type InboundAnalysis = {
  auth: InboundAuthResults;
  /** DMARC failed and the sender's domain asks receivers to quarantine or reject (its policy, after pct). */
  dmarcEnforced: boolean;
  /**
   * The content document (bcc filled per mailbox by the caller), as stored: attachments without their bytes
   * (`content_base64` empty, `size` and `raw_part` set; mime.ts withoutAttachmentBodies), which stay in the raw bytes.
   */
  content: Omit<MessageContent, 'bcc'>;
  messageId: string | null;
  inReplyTo: string | null;
  references: string[];
  findings: PhiFindingOut[];
  findingTypes: string[];
  sensitivity: Sensitivity;
  tags: string[];
  /** The MIME structure could not be parsed; the content holds the raw text as a best effort. */
  unparsed: boolean;
  dsn: DsnReport | null;
};

// RFC 5322 3.6.4: a msg-id is printable US-ASCII between angle brackets (no controls: NUL cannot even be stored in PostgreSQL text).
const MSG_ID = /<[\x21-\x3b\x3d\x3f-\x7e]{1,990}>/;
const ids = (v: string | string[] | undefined | null): string[] =>
  (Array.isArray(v) ? v : v ? v.split(/\s+/) : [])
    .map((s) => MSG_ID.exec(s)?.[0] ?? (/^[\x21-\x3b\x3d\x3f-\x7e]{1,990}$/.test(s) && s.includes('@') ? `<${s}>` : ''))
    .filter((s) => s.length > 2 && s.length <= 998);

const addresses = (a: AddressObject | AddressObject[] | undefined): string[] => {
  const out: string[] = [];
  const walk = (v: { address?: string; group?: unknown[] }[]) => {
    for (const x of v) {
      if (x.address) out.push(x.address.toLowerCase());
      if (Array.isArray(x.group)) walk(x.group as { address?: string }[]);
    }
  };
  for (const o of Array.isArray(a) ? a : a ? [a] : []) walk(o.value);
  return [...new Set(out)].slice(0, 500);
};

/** Strips control characters a header value must never carry into views (CR, LF, NUL). */
const oneLine = (s: string, max: number) => s.replace(/[\r\n\0]+/g, ' ').slice(0, max);

/** Maps mailauth's result to the stored shape: verdicts and domains only. */
export const toAuthResults = (r: AuthenticateResult): InboundAuthResults => {
  const signed = r.dkim.results.filter((d) => d.signingDomain);
  const dkim = signed.map((d) => ({
    result: d.status.result,
    domain: d.signingDomain ?? null,
    selector: d.selector ?? null,
    algo: (d as { algo?: string }).algo ?? (d.status.header as { a?: string } | undefined)?.a ?? null,
    aligned: !!d.status.aligned,
  }));
  const spf = r.spf ? { result: r.spf.status.result, domain: r.spf.domain ?? null } : null;
  const dmarc = r.dmarc ? { result: r.dmarc.status.result, policy: r.dmarc.policy ?? null, domain: r.dmarc.domain ?? null } : null;
  const arc = r.arc ? { result: r.arc.status.result } : null;
  const flags: string[] = [];
  if (dmarc?.result === 'fail') flags.push('dmarc_fail');
  // mailauth reports a changed body as neutral: anything but pass is a failure (PITFALLS.md).
  if (dkim.some((d) => d.result !== 'pass')) flags.push('dkim_fail');
  if (spf && (spf.result === 'fail' || spf.result === 'softfail')) flags.push('spf_fail');
  if (arc?.result === 'fail') flags.push('arc_fail');
  if (!dkim.some((d) => d.result === 'pass') && spf?.result !== 'pass') flags.push('no_authentication');
  if ([spf?.result, dmarc?.result, ...dkim.map((d) => d.result)].some((x) => x === 'temperror' || x === 'temperr'))
    flags.push('auth_temperror');
  return { spf, dkim, dmarc, arc, flags };
};

const failedAuth = (): InboundAuthResults => ({ spf: null, dkim: [], dmarc: null, arc: null, flags: ['no_authentication', 'auth_error'] });

/** Best-effort content when the MIME structure cannot be parsed: headers by hand, the body as text. */
const fallbackContent = (raw: Buffer, mailFrom: string): Omit<MessageContent, 'bcc'> => {
  const { header, body } = splitMessage(raw);
  const from = headerValue(header, 'From') ?? '';
  const addr = (/[^\s<>"]+@[^\s<>"]+/.exec(from)?.[0] ?? mailFrom).toLowerCase();
  const list = (h: string) => [...(headerValue(header, h) ?? '').matchAll(/[^\s<>",;]+@[^\s<>",;]+/g)].map((m) => m[0].toLowerCase());
  return {
    from: { name: '', address: addr },
    to: list('To'),
    cc: list('Cc'),
    subject: oneLine(headerValue(header, 'Subject') ?? '', 998),
    text: body.toString('utf8'),
    html: null,
    attachments: [],
  };
};

/**
 * Authenticates (SPF, DKIM, DMARC, ARC through mailauth), parses
 * (mailparser), scans for PHI and tags one received message. Never throws on
 * what a client sent: unparseable MIME gives `unparsed` and the raw text as
 * the body; an authentication error gives no passes and `auth_error`.
 */
export const analyzeMessage = async (
  raw: Buffer,
  env: Pick<InboundEnvelope, 'mailFrom' | 'clientIp' | 'helo'>,
  opts: { resolver: AuthResolver; mta: string; scanOptions: ScanOptions },
): Promise<InboundAnalysis> => {
  let auth: InboundAuthResults;
  try {
    // Imported on first use: mailauth costs about 0.5 s to load, and analysis runs on a worker thread by default.
    const { authenticate } = await import('mailauth');
    // Public keys imported once per DNS record text, not once per message (dkim-key-cache.ts).
    installDkimKeyCache();
    const r = await authenticate(raw, {
      ip: env.clientIp,
      helo: env.helo || env.clientIp,
      sender: env.mailFrom || undefined,
      mta: opts.mta,
      resolver: opts.resolver as DNSResolver,
      disableBimi: true,
    });
    auth = toAuthResults(r);
  } catch {
    auth = failedAuth();
  }
  const dmarcEnforced = auth.dmarc?.result === 'fail' && (auth.dmarc.policy === 'reject' || auth.dmarc.policy === 'quarantine');

  let content: Omit<MessageContent, 'bcc'>;
  // The attachments' bytes, for the scan only: the stored content names them (type, size, part) and the sealed raw
  // bytes hold them (mime.ts withoutAttachmentBodies), so they never leave this thread.
  let attachmentBytes: Buffer[] = [];
  let messageId: string | null = null;
  let inReplyTo: string | null = null;
  let references: string[] = [];
  let unparsed = false;
  try {
    const p = await simpleParser(raw, INBOUND_PARSE_OPTIONS);
    const from = (Array.isArray(p.from) ? p.from[0] : p.from)?.value?.[0];
    content = {
      from: { name: oneLine(from?.name ?? '', 200), address: (from?.address ?? env.mailFrom ?? '').toLowerCase().slice(0, 254) },
      to: addresses(p.to),
      cc: addresses(p.cc),
      subject: oneLine(p.subject ?? '', 998),
      text: p.text ?? null,
      html: typeof p.html === 'string' ? p.html : null,
      attachments: p.attachments.map((a, i) => ({
        filename: oneLine(a.filename ?? `attachment-${i + 1}`, 255),
        content_type: oneLine(a.contentType || 'application/octet-stream', 127),
        content_base64: '',
        size: a.content.length,
        raw_part: i,
      })),
    };
    attachmentBytes = p.attachments.map((a) => a.content);
    messageId = ids(p.messageId)[0] ?? null;
    inReplyTo = ids(p.inReplyTo)[0] ?? null;
    references = ids(p.references).slice(-50);
  } catch {
    unparsed = true;
    content = fallbackContent(raw, env.mailFrom);
    const { header } = splitMessage(raw);
    messageId = ids(headerValue(header, 'Message-ID'))[0] ?? null;
    inReplyTo = ids(headerValue(header, 'In-Reply-To'))[0] ?? null;
    references = ids(headerValue(header, 'References')).slice(-50);
  }

  const scan = scanMessage(
    {
      subject: content.subject,
      text: content.text,
      html: content.html,
      attachments: content.attachments.map((a, i) => ({
        filename: a.filename,
        content_type: a.content_type,
        content: attachmentBytes[i]!,
      })),
    },
    opts.scanOptions,
  );
  const dsn = parseDsn(raw);
  // Category tags and phi/part2 from the scan of the whole message.
  const tags = classifyInbound(`${content.subject}\n${content.text ?? ''}`, opts.scanOptions, scan.sensitivity);
  if (dsn) tags.push('bounce');
  if (unparsed) tags.push('unparsed');
  return {
    auth,
    dmarcEnforced,
    content,
    messageId,
    inReplyTo,
    references,
    findings: storedFindings(scan.findings),
    findingTypes: [...new Set(scan.findings.map((f) => f.type))].sort(),
    sensitivity: scan.sensitivity,
    tags: [...new Set(tags)],
    unparsed,
    dsn,
  };
};
