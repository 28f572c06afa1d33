import { simpleParser } from 'mailparser';
import type { OutboundContent } from '../phi/outbound-screen.js';
// mailauth's RFC 6376 relaxed body hasher (not a typed public API; package.json pins mailauth exactly and
// test/dkim-vectors.test.ts checks the RFC 8463 body hash, so an upgrade that changes it fails the tests).
import { createRequire } from 'node:module';
import type { RelaxedHash as RelaxedHashClass } from 'mailauth/lib/dkim/body/relaxed.js';
import MailComposer from 'nodemailer/lib/mail-composer';
import { encodeUnstructured, formatMailbox, headerLine, safeFilename } from './header-text.js';

/** What a message says (the sealed content of a message row, never logged): the fields the PHI screen reads, plus the sender. */
export type MessageContent = OutboundContent & { from: { name: string; address: string } };

export type Threading = { messageId: string; inReplyTo: string | null; references: string[] };

/**
 * Builds the RFC 5322 bytes with nodemailer's MailComposer. Bcc stays out of
 * the headers (RFC 5322 3.6.3: it goes only into the envelope). From and
 * Subject are built here (src/mail/header-text.ts: the name character rules,
 * and RFC 2047 encoded-words for a literal "=?", which nodemailer passes
 * through or puts inside a quoted-string); attachment filenames go through
 * safeFilename like inbound ones.
 */
export const composeMime = async (c: MessageContent, t: Threading, date: Date): Promise<Buffer> => {
  const composer = new MailComposer({
    to: c.to,
    cc: c.cc.length > 0 ? c.cc : undefined,
    text: c.text ?? undefined,
    html: c.html ?? undefined,
    messageId: t.messageId,
    inReplyTo: t.inReplyTo ?? undefined,
    references: t.references.length > 0 ? t.references : undefined,
    date,
    attachments: c.attachments.map((a) => ({
      filename: safeFilename(a.filename),
      contentType: a.content_type,
      content: Buffer.from(a.content_base64, 'base64'),
    })),
  });
  const subject = encodeUnstructured(c.subject);
  const own = headerLine('From', formatMailbox(c.from.name, c.from.address)) + (subject ? headerLine('Subject', subject) : '');
  return Buffer.concat([Buffer.from(own, 'latin1'), await composer.compile().build()]);
};

/** How received mail is parsed (src/inbound/analyze-message.ts); attachmentFromRaw parses the same way, so indexes agree. */
export const INBOUND_PARSE_OPTIONS = { skipTextToHtml: true, skipImageLinks: true, maxHtmlLengthToParse: 5 * 1024 * 1024 } as const;

/**
 * The stored content of a received message without its attachments' bytes,
 * which the sealed raw bytes already hold: one full copy of a message, not
 * two. Attachments are read back from the raw bytes (attachmentFromRaw).
 */
export const withoutAttachmentBodies = (c: MessageContent): MessageContent => ({
  ...c,
  attachments: c.attachments.map((a, i) => ({
    filename: a.filename,
    content_type: a.content_type,
    content_base64: '',
    size: Buffer.byteLength(a.content_base64, 'base64'),
    raw_part: i,
  })),
});

/** The decoded length of an attachment, whether its bytes are in the document or in the raw bytes. */
export const attachmentSize = (a: MessageContent['attachments'][number]) => a.size ?? Buffer.byteLength(a.content_base64, 'base64');

/** The bytes of the `part`-th attachment of raw message bytes, parsed as received mail is; null when there is none. */
export const attachmentFromRaw = async (raw: Buffer, part: number): Promise<Buffer | null> => {
  const p = await simpleParser(raw, INBOUND_PARSE_OPTIONS);
  return p.attachments[part]?.content ?? null;
};

/** Splits raw message bytes at the first empty line (RFC 5322 2.1). */
export const splitMessage = (raw: Buffer): { header: Buffer; body: Buffer } => {
  const crlf = raw.indexOf('\r\n\r\n');
  const lf = raw.indexOf('\n\n');
  if (crlf >= 0 && (lf < 0 || crlf < lf)) return { header: raw.subarray(0, crlf + 2), body: raw.subarray(crlf + 4) };
  if (lf >= 0) return { header: raw.subarray(0, lf + 1), body: raw.subarray(lf + 2) };
  return { header: raw, body: Buffer.alloc(0) };
};

/**
 * RFC 6376 3.4.4 relaxed body canonicalization: trailing whitespace of each
 * line removed, runs of WSP reduced to one SP, trailing empty lines removed,
 * a non-empty body ends with CRLF.
 */
export const relaxedBody = (body: Buffer): Buffer => {
  const lines = body.toString('latin1').split(/\r?\n/);
  const out = lines.map((l) => l.replace(/[ \t]+/g, ' ').replace(/ $/, ''));
  while (out.length > 0 && out[out.length - 1] === '') out.pop();
  if (out.length === 0) return Buffer.alloc(0);
  return Buffer.from(`${out.join('\r\n')}\r\n`, 'latin1');
};

/**
 * The DKIM `bh=` value for relaxed body canonicalization with SHA-256 (RFC 6376 3.7).
 * CONTRACT.md: the identity header's `body_hash` IS the DKIM bh=, so it is
 * computed by the same code that signs and verifies DKIM (mailauth), which
 * differs from a literal reading of 3.4.4 on bodies whose last line is only
 * spaces without a CRLF; `relaxedBody` above is the literal reading.
 */
let RelaxedHash: typeof RelaxedHashClass | undefined;
export const relaxedBodyHash = (body: Buffer): string => {
  // Loaded on first use (see src/mail/dkim.ts: mailauth is slow to load and the main thread rarely needs it).
  RelaxedHash ??= (createRequire(import.meta.url)('mailauth/lib/dkim/body/relaxed.js') as { RelaxedHash: typeof RelaxedHashClass })
    .RelaxedHash;
  const h = new RelaxedHash('sha256', undefined);
  h.update(body);
  return h.digest('base64');
};

/**
 * A header field for a long token without whitespace (a compact JWS): folded
 * at 72 characters with CRLF + SP (RFC 5322 2.2.3), so every line stays under
 * the 998-character limit. Readers unfold and drop the whitespace.
 */
export const foldedHeader = (name: string, token: string): string => {
  const chunks: string[] = [];
  const first = 72 - name.length - 2;
  chunks.push(token.slice(0, first));
  for (let i = first; i < token.length; i += 72) chunks.push(token.slice(i, i + 72));
  return `${name}: ${chunks.join('\r\n ')}\r\n`;
};

/** Unfolded value of the first header `name` (case-insensitive) in a header block, or null. */
export const headerValue = (header: Buffer | string, name: string): string | null => {
  const text = typeof header === 'string' ? header : header.toString('latin1');
  const unfolded = text.replace(/\r?\n[ \t]/g, ' ');
  const re = new RegExp(`^${name.replace(/[-]/g, '\\-')}:[ \\t]*(.*)$`, 'im');
  const m = re.exec(unfolded);
  return m ? m[1]!.replace(/\r$/, '').trim() : null;
};

/** Header names present in a header block, lower-cased, in order. */
export const headerNames = (header: Buffer): string[] =>
  header
    .toString('latin1')
    .split(/\r?\n/)
    .filter((l) => /^[!-9;-~]+:/.test(l))
    .map((l) => l.slice(0, l.indexOf(':')).toLowerCase());
