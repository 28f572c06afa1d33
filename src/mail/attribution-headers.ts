import { createHash } from 'node:crypto';

/**
 * The two header fields of draft-chuang-agent-attribution-header-fields-00 (sections 3 and 4): a human
 * readable one naming the agent's responsible humans by address, and a JSON one with the same
 * attribution for machines. Filled from the same data as X-Agent-Identity, covered by both DKIM
 * signatures (dkim.ts DKIM_HEADER_LIST) and bound into the identity claims by `attribution_hash`.
 *
 * The draft was found (a mirror of the IETF internet-drafts archive, draft-chuang-agent-attribution-header-fields-00.html
 * and .xml, W. Chuang and E. Gustafsson, Google, 19 June 2026, Experimental, Independent Stream), but only its front
 * matter and the start of section 1 could be read. Its abstract confirms the shape: a first field that is human
 * readable and gives the agent's responsible humans' email addresses, a second that is machine readable JSON
 * attribution. The field names and JSON members of sections 3 and 4 could not be read, so the names below are still
 * Mailward's reading; they live here (and in verifier/src/attribution.ts) only, to be corrected in one place.
 */
export const ATTRIBUTION_HEADER = 'Agent-Attribution';
export const ATTRIBUTION_JSON_HEADER = 'Agent-Attribution-JSON';

export type Person = { name: string; email: string };
export type AttributionInput = {
  agent: { address: string; name: string };
  responsible: Person[];
  onBehalfOf?: Person | null;
  operator: string;
};

// RFC 5322 3.2.3 atext: a display name of these characters (and spaces) needs no quoting.
const ATEXT_PHRASE = /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~ -]+$/;

/** RFC 5322 3.4 display name: an atom phrase, a quoted string, or an RFC 2047 encoded-word when not ASCII. */
const displayName = (name: string): string => {
  if (!name) return '';
  if (!/^[\x20-\x7e]*$/.test(name)) {
    // RFC 2047 2: an encoded-word is at most 75 characters, so long names take several, split between characters.
    const words: string[] = [];
    let chunk = '';
    for (const ch of name) {
      if (Buffer.byteLength(chunk + ch, 'utf8') > 30) {
        words.push(chunk);
        chunk = '';
      }
      chunk += ch;
    }
    words.push(chunk);
    return `${words.map((w) => `=?UTF-8?B?${Buffer.from(w, 'utf8').toString('base64')}?=`).join(' ')} `;
  }
  if (ATEXT_PHRASE.test(name)) return `${name} `;
  return `"${name.replace(/(["\\])/g, '\\$1')}" `;
};

/**
 * JSON with every non-ASCII character escaped (RFC 8259 7), so the field value stays 7-bit (RFC 5322 2.2),
 * and with ", " and ": " between members, so the field can be folded at those spaces (unfolding restores it).
 */
const asciiJson = (v: unknown): string => {
  if (Array.isArray(v)) return `[${v.map(asciiJson).join(', ')}]`;
  if (v && typeof v === 'object')
    return `{${Object.entries(v)
      .map(([k, x]) => `${asciiJson(k)}: ${asciiJson(x)}`)
      .join(', ')}}`;
  // biome-ignore lint/suspicious/noControlCharactersInRegex: escaping everything past ASCII.
  return JSON.stringify(v).replace(/[^\x00-\x7f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
};

/** Folds at existing spaces so no line passes 78 characters where avoidable (RFC 5322 2.2.3); unfolding restores the value. */
const fold = (name: string, value: string): string => {
  const words = value.split(' ');
  const lines: string[] = [];
  let line = `${name}:`;
  for (const w of words) {
    if (w !== '' && line.length + 1 + w.length > 78 && line.length > name.length + 1) {
      lines.push(line);
      line = ` ${w}`;
    } else line += ` ${w}`;
  }
  lines.push(line);
  return `${lines.join('\r\n')}\r\n`;
};

/** The JSON value, members in this order. */
export const attributionJson = (a: AttributionInput): string =>
  asciiJson({
    agent: a.agent.address,
    agent_name: a.agent.name,
    responsible_humans: a.responsible.map((p) => ({ name: p.name, email: p.email })),
    on_behalf_of: a.onBehalfOf ? { name: a.onBehalfOf.name, email: a.onBehalfOf.email } : null,
    operator: a.operator,
  });

export const attributionHumanValue = (a: AttributionInput): string =>
  a.responsible.map((p) => `${displayName(p.name)}<${p.email}>`).join(', ');

/** Both header fields, folded, and the hash the identity claims carry (hex SHA-256 of the JSON value). */
export const attributionHeaders = (a: AttributionInput): { lines: string; jsonHash: string } => {
  const json = attributionJson(a);
  return {
    lines: fold(ATTRIBUTION_HEADER, attributionHumanValue(a)) + fold(ATTRIBUTION_JSON_HEADER, json),
    jsonHash: createHash('sha256').update(json).digest('hex'),
  };
};
