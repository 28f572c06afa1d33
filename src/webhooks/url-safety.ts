import { promises as dns } from 'node:dns';
import net from 'node:net';
import { AppError } from '../kernel/errors.js';

/** One resolved address: what the connection is pinned to (no second look-up between check and connect). */
export type ResolvedAddress = { address: string; family: 4 | 6 };

/** Looks a host up (A and AAAA); tests inject answers (MAILWARD_DNS_OVERRIDES A/AAAA), otherwise node:dns. */
export type HostLookup = (host: string) => Promise<ResolvedAddress[]>;

export const systemLookup: HostLookup = async (host) =>
  (await dns.lookup(host, { all: true, verbatim: true })).map((a) => ({ address: a.address, family: a.family === 6 ? 6 : 4 }));

/** A lookup answering from static A/AAAA records first, then `fallback`. */
export const overridingLookup =
  (records: { A?: Record<string, string[]>; AAAA?: Record<string, string[]> }, fallback: HostLookup = systemLookup): HostLookup =>
  async (host) => {
    const h = host.toLowerCase();
    const a = records.A?.[h];
    const aaaa = records.AAAA?.[h];
    if (a || aaaa)
      return [
        ...(a ?? []).map((address) => ({ address, family: 4 as const })),
        ...(aaaa ?? []).map((address) => ({ address, family: 6 as const })),
      ];
    return fallback(host);
  };

/**
 * Addresses a webhook may never reach unless allow-listed (SSRF): loopback, RFC 1918 and unique-local
 * (RFC 4193 fc00::/7), link-local (RFC 3927 169.254/16 with the cloud metadata address 169.254.169.254,
 * fe80::/10), CGNAT (RFC 6598 100.64/10), "this network" 0/8, multicast, broadcast, reserved and
 * documentation ranges, and the IPv4-mapped forms of all of them (checked by mapping back to IPv4).
 */
const BLOCKED = (() => {
  const v4: [string, number, string][] = [
    ['0.0.0.0', 8, 'unspecified'],
    ['10.0.0.0', 8, 'private'],
    ['100.64.0.0', 10, 'cgnat'],
    ['127.0.0.0', 8, 'loopback'],
    ['169.254.0.0', 16, 'link_local'],
    ['172.16.0.0', 12, 'private'],
    ['192.0.0.0', 24, 'reserved'],
    ['192.0.2.0', 24, 'reserved'],
    ['192.168.0.0', 16, 'private'],
    ['198.18.0.0', 15, 'reserved'],
    ['198.51.100.0', 24, 'reserved'],
    ['203.0.113.0', 24, 'reserved'],
    ['224.0.0.0', 4, 'multicast'],
    ['240.0.0.0', 4, 'reserved'],
  ];
  const v6: [string, number, string][] = [
    ['::', 128, 'unspecified'],
    ['::1', 128, 'loopback'],
    ['fc00::', 7, 'private'],
    ['fe80::', 10, 'link_local'],
    ['ff00::', 8, 'multicast'],
    ['64:ff9b::', 96, 'reserved'],
    ['2001:db8::', 32, 'reserved'],
  ];
  const reasons: { list: net.BlockList; reason: string; family: 'ipv4' | 'ipv6' }[] = [];
  for (const [a, p, reason] of v4) {
    const l = new net.BlockList();
    l.addSubnet(a, p, 'ipv4');
    reasons.push({ list: l, reason, family: 'ipv4' });
  }
  for (const [a, p, reason] of v6) {
    const l = new net.BlockList();
    l.addSubnet(a, p, 'ipv6');
    reasons.push({ list: l, reason, family: 'ipv6' });
  }
  return reasons;
})();

/** Why an address is not public, or null when it is. */
export const nonPublicReason = (address: string): string | null => {
  let a = address.toLowerCase();
  let family: 'ipv4' | 'ipv6' = net.isIPv4(a) ? 'ipv4' : 'ipv6';
  // ::ffff:a.b.c.d (IPv4-mapped) reaches the IPv4 address: judge it as one.
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(a);
  // The WHATWG URL parser writes it in hex (::ffff:a00:1): the same address.
  const hex = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(a);
  if (mapped) {
    a = mapped[1]!;
    family = 'ipv4';
  } else if (hex) {
    const n = (Number.parseInt(hex[1]!, 16) << 16) | Number.parseInt(hex[2]!, 16);
    a = [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
    family = 'ipv4';
  }
  if (!net.isIP(a)) return 'not_an_address';
  if (a === '255.255.255.255') return 'broadcast';
  for (const r of BLOCKED) if (r.family === family && r.list.check(a, family)) return r.reason;
  return null;
};

export const urlRefused = (reason: string, detail: string) => new AppError('webhook_url_refused', 422, detail, { extra: { reason } });

/**
 * A URL checked for delivery: where to connect (pinned) and what to send as Host and SNI; `host` (brackets
 * stripped), `port` and `path` (path and query) are the URL's, worked out once per URL text.
 */
export type CheckedUrl = {
  url: URL;
  isHttps: boolean;
  host: string;
  port: number;
  path: string;
  address: ResolvedAddress;
  allowListed: boolean;
};

/**
 * Checks a webhook URL (at create/update time and again before every attempt): HTTPS only, no
 * credentials in it, and every address the host resolves to public; the attempt then connects to the
 * address checked here. An entry `host:port` of MAILWARD_WEBHOOK_ALLOW_HOSTS lifts the address rules
 * and allows plain http for that host and port only (test receivers, internal deployments).
 * Throws 422 `webhook_url_refused` with `reason`.
 */
/** What a URL's text alone decides (no DNS): its parsed form, host and port, or why it is refused. */
type ParsedUrl =
  | { url: URL; host: string; port: string; path: string; literal: ResolvedAddress | null }
  | { refused: { reason: string; detail: string } };
/*
 * The text of a URL decides the same every time, so its parse is kept (bounded, by the exact text): an
 * attempt re-parsed the same endpoint URL each time. The parts that can change are still checked at every
 * call: the allow-list entry, the DNS answer and every address in it.
 */
const parsed = new Map<string, ParsedUrl>();
const parseUrl = (raw: string): ParsedUrl => {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return { refused: { reason: 'invalid_url', detail: 'The webhook URL is not a valid absolute URL.' } };
  }
  if (url.username || url.password)
    return { refused: { reason: 'credentials_in_url', detail: 'The webhook URL must not carry a user name or password.' } };
  const host = url.hostname.replace(/^\[|\]$/g, '').toLowerCase();
  const port = url.port || (url.protocol === 'https:' ? '443' : url.protocol === 'http:' ? '80' : '');
  const literal: ResolvedAddress | null = net.isIP(host) ? { address: host, family: net.isIPv6(host) ? 6 : 4 } : null;
  return { url, host, port, path: `${url.pathname}${url.search}`, literal };
};

/**
 * Checks a webhook URL (at create/update time and again before every attempt): HTTPS only, no
 * credentials in it, and every address the host resolves to public; the attempt then connects to the
 * address checked here. An entry `host:port` of MAILWARD_WEBHOOK_ALLOW_HOSTS lifts the address rules
 * and allows plain http for that host and port only (test receivers, internal deployments).
 * Throws 422 `webhook_url_refused` with `reason`.
 */
export const checkWebhookUrl = async (raw: string, allowHosts: readonly string[], lookup: HostLookup): Promise<CheckedUrl> => {
  let p = parsed.get(raw);
  if (!p) {
    p = parseUrl(raw);
    if (parsed.size >= 10_000) parsed.clear();
    parsed.set(raw, p);
  }
  if ('refused' in p) throw urlRefused(p.refused.reason, p.refused.detail);
  const { url, host, port, path, literal } = p;
  const allowListed = allowHosts.includes(`${host}:${port}`);
  if (url.protocol !== 'https:' && !(allowListed && url.protocol === 'http:')) {
    throw urlRefused('https_required', 'Webhook URLs must use https (plain http only for hosts in MAILWARD_WEBHOOK_ALLOW_HOSTS).');
  }
  let addresses: ResolvedAddress[];
  if (literal) addresses = [literal];
  else {
    try {
      addresses = await lookup(host);
    } catch {
      throw urlRefused('unresolvable', 'The webhook host does not resolve.');
    }
  }
  if (addresses.length === 0) throw urlRefused('unresolvable', 'The webhook host does not resolve.');
  if (!allowListed) {
    // Every answer must be public: a name answering with one public and one private address could be steered to the private one.
    for (const a of addresses) {
      const reason = nonPublicReason(a.address);
      if (reason)
        throw urlRefused(
          reason,
          `The webhook host resolves to a ${reason.replace('_', '-')} address; only public addresses may receive webhooks.`,
        );
    }
  }
  return { url, isHttps: url.protocol === 'https:', host, port: Number(port), path, address: addresses[0]!, allowListed };
};
