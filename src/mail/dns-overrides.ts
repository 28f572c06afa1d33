import { promises as dns } from 'node:dns';
import fs from 'node:fs';
import { AppError } from '../kernel/errors.js';

/** MAILWARD_DNS_OVERRIDES (CONTRACT.md): answers for TXT and MX before real DNS. */
export type DnsOverrides = {
  TXT?: Record<string, string[]>;
  MX?: Record<string, { exchange: string; priority: number }[]>;
  /** Address answers (webhook receivers' hosts, checked against the SSRF rules like real answers). */
  A?: Record<string, string[]>;
  AAAA?: Record<string, string[]>;
};

export const loadDnsOverrides = (file: string | undefined): DnsOverrides => {
  if (!file) return {};
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as DnsOverrides;
  } catch (e) {
    throw new AppError('dns_overrides_invalid', 500, 'MAILWARD_DNS_OVERRIDES does not name a readable JSON file.', { cause: e });
  }
};

/** The look-ups the resolver makes (node:dns promises by default; tests inject fakes). They throw node's DNS errors (`code` ENOTFOUND, ENODATA, ESERVFAIL...). */
export type DnsLookups = {
  resolveMx: (domain: string) => Promise<{ exchange: string; priority: number }[]>;
  resolve4: (domain: string) => Promise<string[]>;
  resolve6: (domain: string) => Promise<string[]>;
  resolveTxt: (name: string) => Promise<string[][]>;
};

/**
 * Where mail for a domain goes: hosts in preference order, or none (a
 * permanent answer: bounce). A transient DNS failure throws a DnsLookupError.
 */
export type MailHosts =
  | { kind: 'hosts'; hosts: { exchange: string; priority: number }[] }
  | { kind: 'none'; reason: 'domain_not_found' | 'null_mx' | 'no_mail_host' };

/** A DNS failure worth retrying (SERVFAIL, timeout, refused, no reachable server): `code` is node's error code. */
export class DnsLookupError extends Error {
  constructor(readonly code: string) {
    super(`DNS look-up failed: ${code}`);
    this.name = 'DnsLookupError';
  }
}

export type MailResolver = {
  mailHosts: (domain: string) => Promise<MailHosts>;
  /** mailauth's resolver shape: TXT answers as arrays of strings. */
  txt: (name: string, rrtype: string) => Promise<string[][]>;
};

const codeOf = (e: unknown) => {
  const c = (e as { code?: unknown })?.code;
  return typeof c === 'string' && /^[A-Z0-9_]{1,32}$/.test(c) ? c : 'EUNKNOWN';
};
// node:dns (c-ares): ENOTFOUND is NXDOMAIN (the name does not exist), ENODATA an existing name without records of the type.
const isNxdomain = (e: unknown) => codeOf(e) === 'ENOTFOUND';
const isNodata = (e: unknown) => codeOf(e) === 'ENODATA';

export const createMailResolver = (o: DnsOverrides, lookups: DnsLookups = dns): MailResolver => {
  /** Records of one type: [] when the name exists without them, null when it does not exist; throws on a transient failure. */
  const records = async <T>(f: () => Promise<T[]>): Promise<T[] | null> => {
    try {
      return await f();
    } catch (e) {
      if (isNodata(e)) return [];
      if (isNxdomain(e)) return null;
      throw new DnsLookupError(codeOf(e));
    }
  };

  /**
   * RFC 5321 5.1: the MX records in preference order; only when the domain
   * exists and has no MX record is the domain itself the one host (the implicit
   * MX), and only if it has an address (A or AAAA). A domain that does not exist
   * (NXDOMAIN) has no mail host; nor does one whose MX is the null MX "0 ."
   * (RFC 7505 3). Any other failure (SERVFAIL, timeout) is transient.
   */
  const mailHosts = async (domain: string): Promise<MailHosts> => {
    const d = domain.toLowerCase();
    const mx = o.MX?.[d] ?? (await records(() => lookups.resolveMx(d)));
    if (mx === null) return { kind: 'none', reason: 'domain_not_found' };
    if (mx.length > 0) {
      // RFC 7505 3: a null MX has the exchange "." (node gives ""); it means the domain accepts no mail.
      const hosts = mx.filter((r) => r.exchange !== '' && r.exchange !== '.');
      if (hosts.length === 0) return { kind: 'none', reason: 'null_mx' };
      return { kind: 'hosts', hosts: [...hosts].sort((a, b) => a.priority - b.priority) };
    }
    const [v4, v6] = await Promise.allSettled([records(() => lookups.resolve4(d)), records(() => lookups.resolve6(d))]);
    const found = [v4, v6].some((r) => r.status === 'fulfilled' && r.value !== null && r.value.length > 0);
    if (found) return { kind: 'hosts', hosts: [{ exchange: d, priority: 0 }] };
    const failed = [v4, v6].find((r) => r.status === 'rejected');
    if (failed) throw failed.reason;
    return { kind: 'none', reason: 'no_mail_host' };
  };

  return {
    mailHosts,
    txt: async (name, rrtype) => {
      if (rrtype !== 'TXT') throw Object.assign(new Error('unsupported rrtype'), { code: 'ENOTFOUND' });
      const hit = o.TXT?.[name.toLowerCase()] ?? o.TXT?.[name];
      if (hit) return hit.map((s) => [s]);
      return lookups.resolveTxt(name);
    },
  };
};
