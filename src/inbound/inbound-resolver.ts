import { promises as dns } from 'node:dns';
import type { DnsOverrides } from '../mail/dns-overrides.js';

/** mailauth's resolver shape: `(name, rrtype)` answering like `dns.promises.resolve`. */
export type AuthResolver = (name: string, rrtype: string) => Promise<unknown>;

const notFound = () => Object.assign(new Error('no such record'), { code: 'ENOTFOUND' });

/**
 * The resolver sender authentication uses (SPF, DKIM, DMARC, ARC):
 * MAILWARD_DNS_OVERRIDES first (TXT and MX), then real DNS. Answers, failures
 * included, are cached for `ttlMs` (a receiving MTA asks the same few
 * domains again and again); at most `max` entries.
 */
export const createAuthResolver = (overrides: DnsOverrides, opts: { ttlMs?: number; max?: number } = {}): AuthResolver => {
  const ttlMs = opts.ttlMs ?? 60_000;
  const max = opts.max ?? 10_000;
  const cache = new Map<string, { until: number; value?: unknown; error?: unknown }>();

  const lookup = async (name: string, rrtype: string): Promise<unknown> => {
    const n = name.toLowerCase().replace(/\.$/, '');
    if (rrtype === 'TXT') {
      const hit = overrides.TXT?.[n] ?? overrides.TXT?.[name];
      if (hit) return hit.map((s) => [s]);
    }
    if (rrtype === 'MX') {
      const hit = overrides.MX?.[n];
      if (hit) return hit;
    }
    switch (rrtype) {
      case 'TXT':
        return dns.resolveTxt(n);
      case 'MX':
        return dns.resolveMx(n);
      case 'A':
        return dns.resolve4(n);
      case 'AAAA':
        return dns.resolve6(n);
      case 'PTR':
        return dns.resolvePtr(n);
      default:
        throw notFound();
    }
  };

  return async (name, rrtype) => {
    const key = `${rrtype}|${name.toLowerCase()}`;
    const now = Date.now();
    const hit = cache.get(key);
    if (hit && hit.until > now) {
      if (hit.error !== undefined) throw hit.error;
      return hit.value;
    }
    if (cache.size >= max) cache.delete(cache.keys().next().value as string);
    try {
      const value = await lookup(name, rrtype);
      cache.set(key, { until: now + ttlMs, value });
      return value;
    } catch (error) {
      // Temporary failures are not cached: the next message asks again.
      const code = (error as { code?: string })?.code;
      if (code === 'ENOTFOUND' || code === 'ENODATA') cache.set(key, { until: now + ttlMs, error });
      throw error;
    }
  };
};
