import { headerValue, splitMessage } from '../mail/mime.js';

/** One recipient block of a delivery-status report (RFC 3464 2.3). */
export type DsnRecipient = { action: string; status: string | null; diagnostic: string | null };

/** What a delivery status notification says about Mailward's own message. No addresses. */
export type DsnReport = {
  /** Message-IDs that may name the original: the returned headers, Original-Message-ID, the report's own In-Reply-To/References. */
  originalIds: string[];
  recipients: DsnRecipient[];
};

// RFC 5322 3.6.4: printable US-ASCII between angle brackets.
const MSG_ID = /<[\x21-\x3b\x3d\x3f-\x7e]{1,990}>/g;

const unfold = (s: string) => s.replace(/\r?\n[ \t]+/g, ' ');

/** Removes anything that looks like an address from remote diagnostic text (no addresses at rest in plain columns). */
export const scrubAddresses = (s: string) => s.replace(/<?[^\s<>@]+@[^\s<>@]+>?/g, '<address>').slice(0, 300);

const decodePart = (headers: string, body: Buffer): Buffer => {
  const cte = (headerValue(headers, 'Content-Transfer-Encoding') ?? '').toLowerCase();
  if (cte === 'base64') return Buffer.from(body.toString('latin1').replace(/[^A-Za-z0-9+/=]/g, ''), 'base64');
  if (cte === 'quoted-printable') {
    return Buffer.from(
      body
        .toString('latin1')
        .replace(/=\r?\n/g, '')
        .replace(/=([0-9A-F]{2})/gi, (_, h: string) => String.fromCharCode(Number.parseInt(h, 16))),
      'latin1',
    );
  }
  return body;
};

/** The `key=value` parameters of a Content-Type value, keys lower-cased. */
const params = (ct: string): Record<string, string> => {
  const out: Record<string, string> = {};
  for (const m of ct.matchAll(/;\s*([A-Za-z0-9_-]+)\s*=\s*(?:"([^"]*)"|([^;\s]+))/g)) out[m[1]!.toLowerCase()] = m[2] ?? m[3] ?? '';
  return out;
};

/** Splits a multipart body at its boundary (RFC 2046 5.1.1); parts as header and body. */
const partsOf = (body: Buffer, boundary: string) => {
  const text = body.toString('latin1');
  const delim = `--${boundary}`;
  const out: { header: string; body: Buffer }[] = [];
  const pieces = text.split(delim);
  for (let i = 1; i < pieces.length; i++) {
    const p = pieces[i]!;
    if (p.startsWith('--')) break;
    const part = Buffer.from(p.replace(/^[ \t]*\r?\n/, '').replace(/\r?\n$/, ''), 'latin1');
    const s = splitMessage(part);
    out.push({ header: s.header.toString('latin1'), body: s.body });
  }
  return out;
};

/** Per-recipient field blocks of a message/delivery-status body (blank-line separated; the first is per-message). */
const recipientBlocks = (status: string): DsnRecipient[] => {
  const blocks = status.split(/\r?\n[ \t]*\r?\n/).map((b) => unfold(b));
  const out: DsnRecipient[] = [];
  for (const b of blocks) {
    const field = (name: string) => new RegExp(`^${name}:[ \\t]*(.*)$`, 'im').exec(b)?.[1]?.trim() ?? null;
    const action = field('Action');
    if (!action) continue;
    const statusCode = /\b([245]\.\d{1,3}\.\d{1,3})\b/.exec(field('Status') ?? '')?.[1] ?? null;
    const diag = field('Diagnostic-Code');
    out.push({ action: action.toLowerCase().split(/\s/)[0]!, status: statusCode, diagnostic: diag ? scrubAddresses(diag) : null });
  }
  return out;
};

/**
 * Reads a delivery status notification (RFC 3464: multipart/report;
 * report-type=delivery-status) from raw bytes, or returns null when the
 * message is not one. Never throws on malformed input.
 */
export const parseDsn = (raw: Buffer): DsnReport | null => {
  try {
    const { header, body } = splitMessage(raw);
    const ct = headerValue(header, 'Content-Type') ?? '';
    if (!/^multipart\/report\b/i.test(ct)) return null;
    const p = params(ct);
    if ((p['report-type'] ?? '').toLowerCase() !== 'delivery-status' || !p.boundary) return null;
    const ids: string[] = [];
    const recipients: DsnRecipient[] = [];
    for (const part of partsOf(body, p.boundary)) {
      const type = (headerValue(part.header, 'Content-Type') ?? 'text/plain').toLowerCase();
      if (type.startsWith('message/delivery-status') || type.startsWith('message/global-delivery-status')) {
        const text = decodePart(part.header, part.body).toString('utf8');
        recipients.push(...recipientBlocks(text));
        for (const m of text.matchAll(/^(?:X-)?Original-Message-ID:[ \t]*(<[\x21-\x3b\x3d\x3f-\x7e]{1,990}>)/gim)) ids.push(m[1]!);
      } else if (type.startsWith('message/rfc822') || type.startsWith('text/rfc822-headers') || type.startsWith('message/global')) {
        const returned = splitMessage(decodePart(part.header, part.body)).header;
        const id = headerValue(returned, 'Message-ID');
        if (id) ids.push(...(id.match(MSG_ID) ?? []));
      }
    }
    for (const h of ['In-Reply-To', 'References']) ids.push(...(headerValue(header, h)?.match(MSG_ID) ?? []));
    return { originalIds: [...new Set(ids)].slice(0, 20), recipients: recipients.slice(0, 100) };
  } catch {
    return null;
  }
};
