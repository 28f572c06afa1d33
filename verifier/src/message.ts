import { createHash } from 'node:crypto';

/** Just enough RFC 5322 to read a message's header fields and canonicalise its body (RFC 6376 3.4.4). */

export const splitMessage = (raw: Buffer): { header: string; body: Buffer } => {
  const crlf = raw.indexOf('\r\n\r\n');
  const lf = raw.indexOf('\n\n');
  if (crlf >= 0 && (lf < 0 || crlf <= lf)) return { header: raw.subarray(0, crlf + 2).toString('latin1'), body: raw.subarray(crlf + 4) };
  if (lf >= 0) return { header: raw.subarray(0, lf + 1).toString('latin1'), body: raw.subarray(lf + 2) };
  return { header: raw.toString('latin1'), body: Buffer.alloc(0) };
};

/** Every field as [lower-cased name, unfolded value], top to bottom. */
export const headerFields = (header: string): [string, string][] => {
  const out: [string, string][] = [];
  for (const line of header.replace(/\r\n/g, '\n').split(/\n(?![ \t])/)) {
    const i = line.indexOf(':');
    if (i <= 0) continue;
    out.push([line.slice(0, i).trim().toLowerCase(), line.slice(i + 1).replace(/\n[ \t]/g, ' ').trim()]);
  }
  return out;
};

export const fieldValues = (header: string, name: string): string[] =>
  headerFields(header)
    .filter(([n]) => n === name.toLowerCase())
    .map(([, v]) => v);

/** RFC 6376 3.4.4 relaxed body canonicalisation. */
export const relaxedBody = (body: Buffer): Buffer => {
  const lines = body
    .toString('latin1')
    .split('\r\n')
    .map((l) => l.replace(/[ \t]+/g, ' ').replace(/ $/, ''));
  while (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  return Buffer.from(lines.length === 0 ? '' : `${lines.join('\r\n')}\r\n`, 'latin1');
};

export const sha256Hex = (data: Uint8Array | string): string => createHash('sha256').update(data).digest('hex');

/** The message's content hash as Mailward logs it: hex SHA-256 of the relaxed body (the DKIM bh= digest). */
export const contentHashOf = (body: Buffer): string => sha256Hex(relaxedBody(body));

/** base64 of the same digest: DKIM bh= and the identity header's body_hash claim. */
export const bodyHashOf = (body: Buffer): string => Buffer.from(contentHashOf(body), 'hex').toString('base64');
