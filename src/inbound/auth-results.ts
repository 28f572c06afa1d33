/**
 * Sender-authentication results of one inbound message, as stored in
 * `messages.auth_results` (JSON) and shown to agents and reviewers. Built from
 * mailauth's `authenticate()` output; holds domains and verdicts only, never
 * content or addresses of people.
 */
export type InboundAuthResults = {
  spf: { result: string; domain: string | null } | null;
  dkim: { result: string; domain: string | null; selector: string | null; algo: string | null; aligned: boolean }[];
  dmarc: { result: string; policy: string | null; domain: string | null } | null;
  arc: { result: string } | null;
  /** Problems a reader must see, e.g. `dmarc_fail`, `dkim_fail`, `spf_fail`, `no_authentication`. Empty when all passed. */
  flags: string[];
};

export const parseAuthResults = (s: string | null): InboundAuthResults | null => (s ? (JSON.parse(s) as InboundAuthResults) : null);
