import { describe, expect, it } from 'vitest';
import { createMailResolver, type DnsLookups, DnsLookupError } from './dns-overrides.js';

const fail = (code: string) => () => Promise.reject(Object.assign(new Error(code), { code }));

/** Fake DNS (STYLE.md: fakes only for the clock and for DNS): per-name answers or node's error codes. */
const fakeDns = (answers: { mx?: Record<string, unknown>; a?: Record<string, unknown>; aaaa?: Record<string, unknown> }) => {
  const calls: string[] = [];
  const answer =
    <T>(type: string, table: Record<string, unknown> | undefined) =>
    async (name: string): Promise<T> => {
      calls.push(`${type} ${name}`);
      const v = table?.[name] ?? 'ENODATA';
      if (typeof v === 'string') return fail(v)();
      return v as T;
    };
  const lookups: DnsLookups = {
    resolveMx: answer('MX', answers.mx),
    resolve4: answer('A', answers.a),
    resolve6: answer('AAAA', answers.aaaa),
    resolveTxt: answer('TXT', undefined),
  };
  return { lookups, calls };
};

describe('mail hosts of a domain (RFC 5321 5.1, RFC 7505)', () => {
  it('uses the MX records in preference order', async () => {
    const { lookups } = fakeDns({
      mx: {
        'clinic.example': [
          { exchange: 'b.mx.example', priority: 20 },
          { exchange: 'a.mx.example', priority: 10 },
        ],
      },
    });
    expect(await createMailResolver({}, lookups).mailHosts('Clinic.Example')).toEqual({
      kind: 'hosts',
      hosts: [
        { exchange: 'a.mx.example', priority: 10 },
        { exchange: 'b.mx.example', priority: 20 },
      ],
    });
  });

  it('falls back to the domain itself only when it exists without MX records and has an address', async () => {
    const v4 = fakeDns({ a: { 'clinic.example': ['192.0.2.1'] } });
    expect(await createMailResolver({}, v4.lookups).mailHosts('clinic.example')).toEqual({
      kind: 'hosts',
      hosts: [{ exchange: 'clinic.example', priority: 0 }],
    });
    const v6 = fakeDns({ aaaa: { 'clinic.example': ['2001:db8::1'] } });
    expect(await createMailResolver({}, v6.lookups).mailHosts('clinic.example')).toEqual({
      kind: 'hosts',
      hosts: [{ exchange: 'clinic.example', priority: 0 }],
    });
    const none = fakeDns({});
    expect(await createMailResolver({}, none.lookups).mailHosts('clinic.example')).toEqual({ kind: 'none', reason: 'no_mail_host' });
  });

  it('answers NXDOMAIN with no mail host and never tries the bare domain', async () => {
    const { lookups, calls } = fakeDns({ mx: { 'nx.example': 'ENOTFOUND' } });
    expect(await createMailResolver({}, lookups).mailHosts('nx.example')).toEqual({ kind: 'none', reason: 'domain_not_found' });
    expect(calls).toEqual(['MX nx.example']);
  });

  it('answers a null MX with no mail host', async () => {
    const { lookups } = fakeDns({ mx: { 'nomail.example': [{ exchange: '', priority: 0 }] } });
    expect(await createMailResolver({}, lookups).mailHosts('nomail.example')).toEqual({ kind: 'none', reason: 'null_mx' });
    // The same from MAILWARD_DNS_OVERRIDES, where the exchange is written "."
    expect(
      await createMailResolver({ MX: { 'nomail.example': [{ exchange: '.', priority: 0 }] } }, lookups).mailHosts('nomail.example'),
    ).toEqual({ kind: 'none', reason: 'null_mx' });
  });

  it('throws a transient DnsLookupError on SERVFAIL, timeouts and a failed address look-up, never falling back', async () => {
    for (const code of ['ESERVFAIL', 'ETIMEOUT', 'ECONNREFUSED', 'EREFUSED']) {
      const { lookups, calls } = fakeDns({ mx: { 'clinic.example': code } });
      const err = await createMailResolver({}, lookups)
        .mailHosts('clinic.example')
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(DnsLookupError);
      expect((err as DnsLookupError).code).toBe(code);
      expect(calls).toEqual(['MX clinic.example']);
    }
    const { lookups } = fakeDns({ a: { 'clinic.example': 'ESERVFAIL' } });
    await expect(createMailResolver({}, lookups).mailHosts('clinic.example')).rejects.toMatchObject({ code: 'ESERVFAIL' });
  });

  it('answers from MAILWARD_DNS_OVERRIDES before DNS', async () => {
    const { lookups, calls } = fakeDns({ mx: { 'clinic.example': 'ENOTFOUND' } });
    const r = createMailResolver({ MX: { 'clinic.example': [{ exchange: '127.0.0.1', priority: 10 }] } }, lookups);
    expect(await r.mailHosts('clinic.example')).toEqual({ kind: 'hosts', hosts: [{ exchange: '127.0.0.1', priority: 10 }] });
    expect(calls).toEqual([]);
  });
});
