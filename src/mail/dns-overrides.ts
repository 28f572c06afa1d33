import { promises as dns } from 'node:dns';
import fs from 'node:fs';
import { AppError } from '../kernel/errors.js';

/** MAILWARD_DNS_OVERRIDES (CONTRACT.md): answers for TXT and MX before real DNS. */
export type DnsOverrides = {
  TXT?: Record<string, string[]>;
  MX?: Record<string, { exchange: string; priority: number }[]>;
};

export const loadDnsOverrides = (file: string | undefined): DnsOverrides => {
  if (!file) return {};
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as DnsOverrides;
  } catch (e) {
    throw new AppError('dns_overrides_invalid', 500, 'MAILWARD_DNS_OVERRIDES does not name a readable JSON file.', { cause: e });
  }
};

export type MailResolver = {
  mx: (domain: string) => Promise<{ exchange: string; priority: number }[]>;
  /** mailauth's resolver shape: TXT answers as arrays of strings. */
  txt: (name: string, rrtype: string) => Promise<string[][]>;
};

export const createMailResolver = (o: DnsOverrides): MailResolver => ({
  mx: async (domain) => {
    const d = domain.toLowerCase();
    const hit = o.MX?.[d];
    const list = hit ?? (await dns.resolveMx(d).catch(() => []));
    // RFC 5321 5.1: no MX record means the domain itself is the mail host.
    if (list.length === 0) return [{ exchange: d, priority: 0 }];
    return [...list].sort((a, b) => a.priority - b.priority);
  },
  txt: async (name, rrtype) => {
    if (rrtype !== 'TXT') throw Object.assign(new Error('unsupported rrtype'), { code: 'ENOTFOUND' });
    const hit = o.TXT?.[name.toLowerCase()] ?? o.TXT?.[name];
    if (hit) return hit.map((s) => [s]);
    return dns.resolveTxt(name);
  },
});
