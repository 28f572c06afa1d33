/**
 * The two header fields of draft-chuang-agent-attribution-header-fields-00: one human readable (the
 * responsible humans' addresses), one JSON. The draft's abstract (19 June 2026; read from a mirror of the IETF
 * internet-drafts archive) confirms that shape, but its sections 3 and 4 could not be read, so the names and members
 * below are still Mailward's reading; they are kept in this one place (and in src/mail/attribution-headers.ts) to
 * be corrected if they differ.
 */
export const ATTRIBUTION_HEADER = 'Agent-Attribution';
export const ATTRIBUTION_JSON_HEADER = 'Agent-Attribution-JSON';

export type AttributionJson = {
  /** The agent's own address (the From of the message). */
  agent: string;
  agent_name?: string;
  /** The humans who answer for the agent, by address. */
  responsible_humans: { name?: string; email: string }[];
  /** The clinician the agent acts for, when there is one. */
  on_behalf_of?: { name?: string; email: string } | null;
  /** The organisation (DNS domain) that operates the agent. */
  operator?: string;
};

export const parseAttributionJson = (value: string): AttributionJson | null => {
  try {
    const v = JSON.parse(value) as AttributionJson;
    if (!v || typeof v !== 'object' || typeof v.agent !== 'string' || !Array.isArray(v.responsible_humans)) return null;
    if (!v.responsible_humans.every((h) => h && typeof h.email === 'string')) return null;
    return v;
  } catch {
    return null;
  }
};

/** The addresses of an RFC 5322 address list (display names and comments dropped). */
export const addressesOf = (value: string): string[] =>
  [...value.matchAll(/<([^<>\s]+@[^<>\s]+)>|(?:^|[\s,])([^\s,<>"]+@[^\s,<>"]+)(?=$|[\s,])/g)].map((m) => (m[1] ?? m[2] ?? '').toLowerCase());
