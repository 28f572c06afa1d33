import { X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import { createTransport } from 'nodemailer';
import type { KeyRing } from '../kernel/crypto/keyring.js';
import type { MailResolver } from '../mail/dns-overrides.js';
import type { OrgDnsRecords } from '../mail/dns-records.js';
import { devCertPaths } from '../smtp/tls-cert.js';
import type { Store } from '../store/db.js';
import type { Config } from './config.js';
import { keyVersionsInUse } from './key-rotation.js';
import { checkKeyRing, masterKeyPath } from './master-key.js';
import { SEALED_COLUMNS } from './sealed-columns.js';

export type CheckStatus = 'ok' | 'warn' | 'fail' | 'skip';

/** One finding: what was checked (`check` is stable, e.g. `dns.dkim`), the record or thing it is about, and what to do. */
export type DoctorCheck = { check: string; subject: string; status: CheckStatus; detail: string; fix?: string };

export type DoctorReport = { ok: boolean; checks: DoctorCheck[] };

const withTimeout = <T>(p: Promise<T>, ms: number, what: string): Promise<T> =>
  new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(Object.assign(new Error(`${what} timed out after ${ms} ms`), { code: 'ETIMEOUT' })), ms);
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e) => {
        clearTimeout(t);
        reject(e);
      },
    );
  });

const codeOf = (e: unknown) => String((e as { code?: unknown })?.code ?? (e as Error)?.message ?? 'error');

/** TXT strings of a name, each record's character-strings joined (RFC 7208 3.3, RFC 6376 3.6.2.2); null when it has none. */
const txtRecords = async (resolver: Pick<MailResolver, 'txt'>, name: string): Promise<string[] | { error: string }> => {
  try {
    const answer = await withTimeout(resolver.txt(name, 'TXT'), 5000, `TXT ${name}`);
    return answer.map((chunks) => chunks.join(''));
  } catch (e) {
    const code = codeOf(e);
    if (code === 'ENOTFOUND' || code === 'ENODATA') return [];
    return { error: code };
  }
};

/** `k=v; k=v` tags of a DKIM or DMARC record, whitespace-insensitive (RFC 6376 3.2). */
const tags = (record: string) =>
  new Map(
    record
      .split(';')
      .map((t) => t.trim())
      .filter(Boolean)
      .map((t) => {
        const i = t.indexOf('=');
        return [t.slice(0, i).trim().toLowerCase(), t.slice(i + 1).replace(/\s+/g, '')] as const;
      }),
  );

/** The DNS records each organisation should publish (what `mailward dns` prints), against what DNS answers. */
export const checkDns = async (orgs: OrgDnsRecords[], resolver: MailResolver, opts: { mxHost?: string }): Promise<DoctorCheck[]> => {
  const out: DoctorCheck[] = [];
  for (const org of orgs) {
    for (const want of org.dns_records) {
      const got = await txtRecords(resolver, want.name);
      const publish = `publish TXT ${want.name} "${want.value}" (mailward dns prints it split for zone files)`;
      if (!Array.isArray(got)) {
        out.push({
          check: 'dns.lookup',
          subject: want.name,
          status: 'fail',
          detail: `TXT look-up failed: ${got.error}`,
          fix: 'check the resolver of this host',
        });
        continue;
      }
      if (want.name.includes('._domainkey.')) {
        const dkim = got.filter((r) => /^v=DKIM1/i.test(r.trim()) || tags(r).has('p'));
        const wantTags = tags(want.value);
        if (dkim.length === 0)
          out.push({ check: 'dns.dkim', subject: want.name, status: 'fail', detail: 'no DKIM record published', fix: publish });
        else if (!dkim.some((r) => tags(r).get('p') === wantTags.get('p') && (tags(r).get('k') ?? 'rsa') === wantTags.get('k')))
          out.push({
            check: 'dns.dkim',
            subject: want.name,
            status: 'fail',
            detail: 'the published key is not the key Mailward signs with: receivers will fail this signature',
            fix: publish,
          });
        else out.push({ check: 'dns.dkim', subject: want.name, status: 'ok', detail: `${wantTags.get('k')} key published` });
      } else if (want.name.startsWith('_dmarc.')) {
        const dmarc = got.filter((r) => /^v=DMARC1/i.test(r.trim()));
        if (dmarc.length !== 1)
          out.push({
            check: 'dns.dmarc',
            subject: want.name,
            status: 'fail',
            detail:
              dmarc.length === 0
                ? 'no DMARC record published'
                : `${dmarc.length} DMARC records (RFC 7489 6.6.3: receivers then ignore them all)`,
            fix: publish,
          });
        else {
          const t = tags(dmarc[0] as string);
          const p = t.get('p');
          if (p !== 'quarantine' && p !== 'reject')
            out.push({
              check: 'dns.dmarc',
              subject: want.name,
              status: p === 'none' ? 'warn' : 'fail',
              detail: p ? `policy p=${p}: spoofed mail from this domain is still delivered` : 'no p= tag (RFC 7489 6.3: invalid)',
              fix: publish,
            });
          else if (!t.get('rua'))
            out.push({
              check: 'dns.dmarc',
              subject: want.name,
              status: 'warn',
              detail: 'no rua=: nobody receives aggregate reports',
              fix: publish,
            });
          else out.push({ check: 'dns.dmarc', subject: want.name, status: 'ok', detail: `p=${p}` });
        }
      } else {
        const spf = got.filter((r) => /^v=spf1(\s|$)/i.test(r.trim()));
        if (spf.length !== 1)
          out.push({
            check: 'dns.spf',
            subject: want.name,
            status: 'fail',
            detail:
              spf.length === 0 ? 'no SPF record published' : `${spf.length} SPF records (RFC 7208 3.2: a permerror for every receiver)`,
            fix: publish,
          });
        else {
          const all = /\s([+?~-]?)all\s*$/i.exec(` ${spf[0]}`)?.[1];
          if (all === '+' || all === '')
            out.push({
              check: 'dns.spf',
              subject: want.name,
              status: 'fail',
              detail: 'ends in +all: anyone may send as this domain',
              fix: publish,
            });
          else if (all === undefined || all === '?')
            out.push({ check: 'dns.spf', subject: want.name, status: 'warn', detail: 'no -all or ~all: SPF proves nothing', fix: publish });
          else if ((spf[0] as string).trim().toLowerCase() !== want.value.toLowerCase())
            out.push({
              check: 'dns.spf',
              subject: want.name,
              status: 'ok',
              detail: `published "${spf[0]}" differs from the suggested "${want.value}" (fine if it lists your relay)`,
            });
          else out.push({ check: 'dns.spf', subject: want.name, status: 'ok', detail: want.value });
        }
      }
    }
    // MX: inbound mail for the organisation's addresses must reach this server (or the gateway in front of it).
    try {
      const mx = await withTimeout(resolver.mailHosts(org.domain), 5000, `MX ${org.domain}`);
      if (mx.kind === 'none')
        out.push({
          check: 'dns.mx',
          subject: org.domain,
          status: 'fail',
          detail: mx.reason === 'null_mx' ? 'null MX (RFC 7505): the domain says it accepts no mail' : `no mail host (${mx.reason})`,
          fix: `publish MX ${org.domain} 10 ${opts.mxHost ?? '<your MX host>'}`,
        });
      else {
        const hosts = mx.hosts.map((h) => h.exchange.toLowerCase().replace(/\.$/, ''));
        if (opts.mxHost && !hosts.includes(opts.mxHost.toLowerCase()))
          out.push({
            check: 'dns.mx',
            subject: org.domain,
            status: 'warn',
            detail: `MX hosts are ${hosts.join(', ')}; MAILWARD_SMTP_HOSTNAME is ${opts.mxHost} (fine if a gateway in front forwards to Mailward)`,
          });
        else out.push({ check: 'dns.mx', subject: org.domain, status: 'ok', detail: hosts.join(', ') });
      }
    } catch (e) {
      out.push({
        check: 'dns.mx',
        subject: org.domain,
        status: 'fail',
        detail: `MX look-up failed: ${codeOf(e)}`,
        fix: 'check the resolver of this host',
      });
    }
  }
  return out;
};

/** The inbound STARTTLS certificate: not expired, not close to it, valid for the host name the MX points at. */
export const checkCertificate = (config: Pick<Config, 'dataDir' | 'inbound'>, now: Date): DoctorCheck[] => {
  const file = config.inbound.tlsCertFile ?? devCertPaths(config.dataDir).certFile;
  const generated = !config.inbound.tlsCertFile;
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(fs.readFileSync(file));
  } catch (e) {
    return [
      {
        check: 'smtp.certificate',
        subject: file,
        status: 'fail',
        detail: `cannot read the certificate: ${codeOf(e)}`,
        fix: 'set MAILWARD_SMTP_TLS_CERT_FILE and MAILWARD_SMTP_TLS_KEY_FILE to your MX certificate (PEM, chain included)',
      },
    ];
  }
  const out: DoctorCheck[] = [];
  const until = new Date(cert.validTo);
  const days = Math.floor((until.getTime() - now.getTime()) / 86_400_000);
  if (days < 0)
    out.push({ check: 'smtp.certificate', subject: file, status: 'fail', detail: `expired on ${until.toISOString()}`, fix: 'renew it' });
  else if (days < 14)
    out.push({ check: 'smtp.certificate', subject: file, status: 'warn', detail: `expires in ${days} days`, fix: 'renew it' });
  else out.push({ check: 'smtp.certificate', subject: file, status: 'ok', detail: `valid until ${until.toISOString()}` });
  const host = config.inbound.hostname ?? os.hostname();
  if (!cert.checkHost(host))
    out.push({
      check: 'smtp.certificate.name',
      subject: host,
      status: 'fail',
      detail: `the certificate does not name ${host} (${cert.subjectAltName ?? cert.subject})`,
      fix: 'use a certificate for your MX host name, or set MAILWARD_SMTP_HOSTNAME to the name it carries',
    });
  else out.push({ check: 'smtp.certificate.name', subject: host, status: 'ok', detail: `the certificate names ${host}` });
  if (generated && cert.issuer === cert.subject)
    out.push({
      check: 'smtp.certificate.issuer',
      subject: file,
      status: 'warn',
      detail: 'a self-signed development certificate: senders that verify certificates (MTA-STS, DANE) will refuse it',
      fix: 'set MAILWARD_SMTP_TLS_CERT_FILE and MAILWARD_SMTP_TLS_KEY_FILE to a certificate from a public CA',
    });
  return out;
};

/** MAILWARD_SMTP_RELAY answers, offers STARTTLS, and its certificate verifies (what every delivery requires). */
export const checkRelay = async (config: Pick<Config, 'smtp' | 'delivery' | 'bootstrap'>): Promise<DoctorCheck[]> => {
  const relay = config.smtp.relay;
  if (!relay)
    return [
      {
        check: 'smtp.relay',
        subject: '(none)',
        status: 'skip',
        detail: "MAILWARD_SMTP_RELAY is unset: mail goes to each domain's MX on port 25",
      },
    ];
  const u = new URL(relay);
  const secure = u.protocol === 'smtps:';
  const host = u.hostname.replace(/^\[|\]$/g, '');
  const port = Number(u.port || (secure ? 465 : 587));
  const subject = `${host}:${port}`;
  const requireTls = config.delivery.requireTls;
  const tr = createTransport({
    host,
    port,
    secure,
    requireTLS: requireTls && !secure,
    ignoreTLS: !requireTls && !secure,
    name: config.bootstrap.domain,
    tls: { rejectUnauthorized: true, ...(config.delivery.tlsCaFile ? { ca: fs.readFileSync(config.delivery.tlsCaFile) } : {}) },
    connectionTimeout: 10_000,
    greetingTimeout: 10_000,
    socketTimeout: 15_000,
  });
  try {
    await tr.verify();
    return [
      {
        check: 'smtp.relay',
        subject,
        status: requireTls ? 'ok' : 'warn',
        detail: requireTls
          ? 'answers, STARTTLS offered and its certificate verified'
          : 'answers; STARTTLS is not required (MAILWARD_SMTP_RELAY_REQUIRE_TLS=false)',
        ...(requireTls ? {} : { fix: 'require TLS for anything but a loopback test relay (45 CFR 164.312(e)(1))' }),
      },
    ];
  } catch (e) {
    const err = e as { code?: string; message?: string };
    const tls = err.code === 'ETLS' || /certificate|STARTTLS|TLS/i.test(err.message ?? '');
    return [
      {
        check: 'smtp.relay',
        subject,
        status: 'fail',
        detail: `${err.code ?? 'error'}: ${(err.message ?? '').replace(/\s+/g, ' ').slice(0, 200)}`,
        fix: tls
          ? 'the relay must offer STARTTLS with a certificate this host trusts (MAILWARD_SMTP_TLS_CA_FILE for a private CA)'
          : 'check that the relay runs and that this host may reach it (firewall, host name, port)',
      },
    ];
  } finally {
    tr.close();
  }
};

/** This host's clock against an HTTP `Date` header (RFC 9110 6.6.1), when a URL is given; DKIM, JWS and TOTP all depend on it. */
export const checkClock = async (timeUrl: string | undefined, now: () => Date): Promise<DoctorCheck[]> => {
  if (!timeUrl)
    return [
      {
        check: 'clock.skew',
        subject: '(no reference)',
        status: 'skip',
        detail: 'no reference clock given: pass --time-url https://<a server you trust> to compare with its Date header',
      },
    ];
  try {
    const before = now().getTime();
    const r = await fetch(timeUrl, { method: 'HEAD', signal: AbortSignal.timeout(10_000) });
    const after = now().getTime();
    const date = r.headers.get('date');
    if (!date) return [{ check: 'clock.skew', subject: timeUrl, status: 'skip', detail: 'the reference sent no Date header' }];
    // The Date has one-second resolution: compare with the middle of the request, allow its precision.
    const skew = (Date.parse(date) - (before + after) / 2) / 1000;
    const abs = Math.abs(skew);
    return [
      {
        check: 'clock.skew',
        subject: timeUrl,
        status: abs > 30 ? 'fail' : abs > 5 ? 'warn' : 'ok',
        detail: `this host is ${abs.toFixed(1)} s ${skew > 0 ? 'behind' : 'ahead of'} the reference`,
        ...(abs > 5
          ? { fix: 'run an NTP client (chrony, systemd-timesyncd): TOTP codes, signatures and audit times need a correct clock' }
          : {}),
      },
    ];
  } catch (e) {
    return [{ check: 'clock.skew', subject: timeUrl, status: 'fail', detail: `cannot reach the reference: ${codeOf(e)}` }];
  }
};

/** The key ring: matches the store, opens every sealed value's key version, and the key file is the owner's alone. */
export const checkKeys = async (
  store: Store,
  ring: KeyRing,
  config: Pick<Config, 'masterKey' | 'masterKeys' | 'dataDir'>,
): Promise<DoctorCheck[]> => {
  const out: DoctorCheck[] = [];
  try {
    await checkKeyRing(store, ring);
    // Every registered version in the ring opens everything (the scan of every sealed column is skipped, as at start).
    const known = await store.db.selectFrom('key_ring').select(['version', 'retired_at']).execute();
    const missing = known.filter((k) => !ring.versions().includes(k.version));
    const inUse = missing.length === 0 ? [] : await keyVersionsInUse(store, SEALED_COLUMNS);
    const lacking = inUse.filter((u) => !ring.versions().includes(u.version));
    if (lacking.length > 0)
      out.push({
        check: 'keys.ring',
        subject: 'master key',
        status: 'fail',
        detail: `values sealed under version(s) ${[...new Set(lacking.map((l) => l.version))].join(', ')} that the ring lacks`,
        fix: 'put those versions back into the key file or MAILWARD_MASTER_KEYS',
      });
    else
      out.push({
        check: 'keys.ring',
        subject: 'master key',
        status: 'ok',
        detail: `active version ${ring.activeVersion}; the ring holds ${ring.versions().join(', ')}; the store registered ${known.map((k) => `${k.version}${k.retired_at ? ' (retired)' : ''}`).join(', ') || 'none'}`,
      });
  } catch (e) {
    out.push({
      check: 'keys.ring',
      subject: 'master key',
      status: 'fail',
      detail: (e as { detail?: string }).detail ?? codeOf(e),
      fix: 'configure the master key this store was sealed with',
    });
  }
  if (!config.masterKey && !config.masterKeys) {
    const file = masterKeyPath(config.dataDir);
    const mode = fs.existsSync(file) ? fs.statSync(file).mode & 0o777 : null;
    if (mode !== null && (mode & 0o077) !== 0)
      out.push({
        check: 'keys.file',
        subject: file,
        status: 'fail',
        detail: `mode ${mode.toString(8)}: readable by others`,
        fix: `chmod 600 ${file}`,
      });
    else
      out.push({
        check: 'keys.file',
        subject: file,
        status: 'ok',
        detail: 'mode 0600; keep a copy outside the data dir and its backups (README, "Backups and the 72-hour restore")',
      });
  }
  return out;
};

export const summarize = (checks: DoctorCheck[]): DoctorReport => ({ ok: !checks.some((c) => c.status === 'fail'), checks });
