import { type RequestContext, requireAnyRole } from '../identity/principal.js';
import { dkimPublicValue } from '../identity/signing-keys.js';
import { notFound } from '../kernel/errors.js';
import type { Db, Executor } from '../store/db.js';
import type { SigningKeysTable } from '../store/schema.js';

/** `zone_value`: `value` as a zone file holds it (zoneTxtValue). */
export type DnsRecord = { type: 'TXT'; name: string; value: string; zone_value: string; purpose: string };

/** Where DMARC aggregate reports go (rua=); `mailward init` gives it a mailbox, with postmaster@. */
export const dmarcReportAddress = (domain: string) => `dmarc-reports@${domain}`;

/**
 * A TXT value as a zone file must hold it: character-strings of at most 255
 * octets each (RFC 1035 3.3.14), quoted and in parentheses when there are
 * several; receivers join them (RFC 6376 3.6.2.2). rsa-2048 DKIM keys need two.
 */
export const zoneTxtValue = (value: string): string => {
  const parts = value.match(/.{1,255}/g) ?? [''];
  const quoted = parts.map((p) => `"${p.replace(/["\\]/g, '\\$&')}"`);
  return quoted.length === 1 ? (quoted[0] as string) : `( ${quoted.join(' ')} )`;
};

/** The TXT records an organisation publishes so receivers can check its mail (RFC 6376, 7208, 7489, 8463). */
export const dnsRecordsFor = (domain: string, dkimKeys: SigningKeysTable[]): DnsRecord[] =>
  records(domain, dkimKeys).map((r) => ({ ...r, zone_value: zoneTxtValue(r.value) }));

const records = (domain: string, dkimKeys: SigningKeysTable[]): Omit<DnsRecord, 'zone_value'>[] => [
  ...dkimKeys.map((k) => ({
    type: 'TXT' as const,
    name: k.kid,
    value: `v=DKIM1; k=${k.purpose === 'dkim-ed25519' ? 'ed25519' : 'rsa'}; p=${dkimPublicValue(k)}`,
    purpose: `DKIM (${k.purpose === 'dkim-ed25519' ? 'ed25519-sha256' : 'rsa-sha256'})`,
  })),
  {
    type: 'TXT',
    name: domain,
    value: 'v=spf1 mx -all',
    purpose: "SPF: add your relay's include: or ip4: terms if mail leaves through a relay",
  },
  {
    type: 'TXT',
    name: `_dmarc.${domain}`,
    value: `v=DMARC1; p=quarantine; adkim=s; aspf=s; rua=mailto:${dmarcReportAddress(domain)}`,
    purpose: 'DMARC',
  },
];

/**
 * The records of one organization as `mailward dns` prints them: its domain and
 * the DKIM keys not retired (a key being rotated in is listed with the old
 * one, so both can be published before the switch). Null for an unknown org.
 */
export const loadDnsRecords = async (ex: Executor, orgId: string): Promise<{ domain: string; dns_records: DnsRecord[] } | null> => {
  const org = await ex.selectFrom('organizations').select(['id', 'domain']).where('id', '=', orgId).executeTakeFirst();
  if (!org) return null;
  const keys = await ex
    .selectFrom('signing_keys')
    .selectAll()
    .where('org_id', '=', org.id)
    .where('purpose', 'in', ['dkim-ed25519', 'dkim-rsa'])
    .where('retired_at', 'is', null)
    .orderBy('created_at')
    .execute();
  return { domain: org.domain, dns_records: dnsRecordsFor(org.domain, keys) };
};

export type OrgDnsRecords = { domain: string; dns_records: DnsRecord[] };

/**
 * The one place GET /v1/dns-records and `mailward dns` read the records
 * from (STYLE.md, Dependency direction: adapters call one service function).
 * Public keys and policies only: nothing secret, so no audit event.
 */
export const createDnsRecordsService = ({ db }: { db: Db }) => {
  /** The caller's organization's records. Throws 404 (not a human), 403 role_required (not an admin), 404 organization. */
  const forCaller = async (ctx: RequestContext): Promise<OrgDnsRecords> => {
    requireAnyRole(ctx, ['admin'], 'route');
    const r = await loadDnsRecords(db, ctx.principal.orgId);
    if (!r) throw notFound('organization');
    return r;
  };

  /** The operator's view (CLI, no principal): every organization's records by domain, or only `domain`'s; empty when none. */
  const forOrganizations = async (opts: { domain?: string } = {}): Promise<OrgDnsRecords[]> => {
    let q = db.selectFrom('organizations').select(['id', 'domain']).orderBy('domain');
    if (opts.domain) q = q.where('domain', '=', opts.domain.toLowerCase());
    const out: OrgDnsRecords[] = [];
    for (const o of await q.execute()) {
      const records = await loadDnsRecords(db, o.id);
      if (records) out.push(records);
    }
    return out;
  };

  return { forCaller, forOrganizations };
};

export type DnsRecordsService = ReturnType<typeof createDnsRecordsService>;
