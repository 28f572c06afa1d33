import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { DoctorCheck } from '../src/app/doctor.js';
import { freshDatabase, tempDir, testDialects } from './support/dialects.js';
import { selfSignedCert, startSink } from './support/outbound-sink.js';
import { freePort, runCli } from './support/processes.js';

const DOMAIN = 'doctor.example';
const MX_HOST = 'mx.doctor.example';

const find = (checks: DoctorCheck[], check: string, subject: string) => checks.find((c) => c.check === check && c.subject === subject);

for (const dialect of testDialects()) {
  describe(`mailward doctor (${dialect})`, () => {
    const drops: (() => Promise<void>)[] = [];
    afterAll(async () => {
      for (const d of drops) await d();
    });

    it('names each wrongly published DNS record, then passes them once DNS publishes what `mailward dns` says; checks the relay with STARTTLS', async () => {
      const db = await freshDatabase(dialect);
      drops.push(db.drop);
      const dir = tempDir('mw-doctor');
      const overrides = path.join(dir, 'dns.json');
      const env = { ...db.env, MAILWARD_DNS_OVERRIDES: overrides, MAILWARD_SMTP_HOSTNAME: MX_HOST };
      fs.writeFileSync(overrides, '{}');
      const init = await runCli(['init', '--org', 'Doctor Hospital', '--domain', DOMAIN, '--json'], env);
      expect(init.code, init.stderr).toBe(0);
      const records = JSON.parse(init.stdout).dns_records as { name: string; value: string }[];
      const ed = records.find((r) => r.value.includes('k=ed25519'))!;
      const rsa = records.find((r) => r.value.includes('k=rsa'))!;
      const spf = records.find((r) => r.name === DOMAIN)!;
      const dmarc = records.find((r) => r.name === `_dmarc.${DOMAIN}`)!;

      // Misconfigured: the rsa selector publishes another key, SPF allows everyone, no DMARC, a null MX.
      const otherKey = rsa.value.replace(/p=([A-Za-z0-9+/]{20})/, 'p=AAAAAAAAAAAAAAAAAAAA');
      fs.writeFileSync(
        overrides,
        JSON.stringify({
          TXT: { [ed.name]: [ed.value], [rsa.name]: [otherKey], [DOMAIN]: ['v=spf1 +all'], [`_dmarc.${DOMAIN}`]: [] },
          MX: { [DOMAIN]: [{ exchange: '.', priority: 0 }] },
        }),
      );
      const deadRelay = await freePort();
      const bad = await runCli(['doctor', '--json'], {
        ...env,
        MAILWARD_SMTP_RELAY: `smtp://127.0.0.1:${deadRelay}`,
      });
      expect(bad.code, bad.stderr).toBe(1);
      const badReport = JSON.parse(bad.stdout) as { ok: boolean; checks: DoctorCheck[] };
      expect(badReport.ok).toBe(false);
      expect(find(badReport.checks, 'dns.dkim', ed.name)?.status).toBe('ok');
      expect(find(badReport.checks, 'dns.dkim', rsa.name)).toMatchObject({ status: 'fail', fix: expect.stringContaining(rsa.value) });
      expect(find(badReport.checks, 'dns.spf', DOMAIN)).toMatchObject({ status: 'fail', detail: expect.stringContaining('+all') });
      expect(find(badReport.checks, 'dns.dmarc', dmarc.name)).toMatchObject({ status: 'fail', detail: 'no DMARC record published' });
      expect(find(badReport.checks, 'dns.mx', DOMAIN)).toMatchObject({ status: 'fail', fix: `publish MX ${DOMAIN} 10 ${MX_HOST}` });
      expect(find(badReport.checks, 'smtp.relay', `127.0.0.1:${deadRelay}`)).toMatchObject({
        status: 'fail',
        detail: expect.stringContaining('ECONNREFUSED'),
      });
      expect(find(badReport.checks, 'keys.ring', 'master key')?.status).toBe('ok');
      // The development certificate generated at init names the MX host but comes from no CA: said, with what to do.
      expect(find(badReport.checks, 'smtp.certificate.name', MX_HOST)?.status).toBe('ok');
      expect(find(badReport.checks, 'smtp.certificate.issuer', path.join(db.dataDir, 'smtp-tls-cert.pem'))).toMatchObject({
        status: 'warn',
        fix: expect.stringContaining('MAILWARD_SMTP_TLS_CERT_FILE'),
      });
      // A host name the certificate does not carry fails.
      const renamed = await runCli(['doctor', '--json'], { ...env, MAILWARD_SMTP_HOSTNAME: 'mail.elsewhere.example' });
      expect(find(JSON.parse(renamed.stdout).checks, 'smtp.certificate.name', 'mail.elsewhere.example')?.status).toBe('fail');
      expect(find(badReport.checks, 'clock.skew', '(no reference)')?.status).toBe('skip');

      // The human-readable form names each wrong record and prints what to fix.
      const text = await runCli(['doctor'], { ...env, MAILWARD_SMTP_RELAY: `smtp://127.0.0.1:${deadRelay}` });
      expect(text.code).toBe(1);
      for (const name of [rsa.name, `_dmarc.${DOMAIN}`])
        expect(text.stdout).toMatch(new RegExp(`FAIL\\s+dns\\.\\w+\\s+${name.replace(/\./g, '\\.')}`));
      expect(text.stdout).toContain('fix: publish TXT');

      // Published as `mailward dns` says (the rsa value split in 255-character strings, as a zone file holds it), a relay with STARTTLS.
      const split = (v: string) => v.match(/.{1,255}/g) as string[];
      fs.writeFileSync(
        overrides,
        JSON.stringify({
          TXT: {
            [ed.name]: [ed.value],
            [rsa.name]: [split(rsa.value).join('')],
            [DOMAIN]: [spf.value],
            [`_dmarc.${DOMAIN}`]: [dmarc.value],
          },
          MX: { [DOMAIN]: [{ exchange: MX_HOST, priority: 10 }] },
        }),
      );
      // A reference clock a minute ahead fails the skew check; one that agrees passes it.
      let offsetMs = 60_000;
      const clock = http.createServer((_req, res) => {
        res.setHeader('date', new Date(Date.now() + offsetMs).toUTCString());
        res.end();
      });
      await new Promise<void>((r) => clock.listen(0, '127.0.0.1', () => r()));
      const timeUrl = `http://127.0.0.1:${(clock.address() as AddressInfo).port}/`;
      try {
        const skewed = JSON.parse((await runCli(['doctor', '--json', '--time-url', timeUrl], env)).stdout);
        expect(find(skewed.checks, 'clock.skew', timeUrl)).toMatchObject({ status: 'fail', fix: expect.stringContaining('NTP') });
        offsetMs = 0;
        const agreed = JSON.parse((await runCli(['doctor', '--json', '--time-url', timeUrl], env)).stdout);
        expect(find(agreed.checks, 'clock.skew', timeUrl)?.status).toBe('ok');
      } finally {
        clock.close();
      }

      // A configured certificate two days from expiry, for localhost only: expiry warns, the MX name fails.
      const short = selfSignedCert(fs.mkdtempSync(path.join(dir, 'short-')));
      const certEnv = { ...env, MAILWARD_SMTP_TLS_CERT_FILE: short.caFile, MAILWARD_SMTP_TLS_KEY_FILE: short.keyFile };
      const certReport = JSON.parse((await runCli(['doctor', '--json'], certEnv)).stdout);
      expect(find(certReport.checks, 'smtp.certificate', short.caFile)).toMatchObject({
        status: 'warn',
        detail: expect.stringMatching(/^expires in [01] days$/),
      });
      expect(find(certReport.checks, 'smtp.certificate.name', MX_HOST)?.status).toBe('fail');

      const sink = await startSink(dir);
      try {
        const good = await runCli(['doctor', '--json'], {
          ...env,
          MAILWARD_SMTP_RELAY: `smtp://127.0.0.1:${sink.port}`,
          MAILWARD_SMTP_TLS_CA_FILE: sink.caFile,
        });
        const report = JSON.parse(good.stdout) as { ok: boolean; checks: DoctorCheck[] };
        expect(report.checks.filter((c) => c.check.startsWith('dns.') && c.status !== 'ok')).toEqual([]);
        expect(find(report.checks, 'smtp.relay', `127.0.0.1:${sink.port}`)).toMatchObject({ status: 'ok' });
        expect(report.checks.filter((c) => c.status === 'fail')).toEqual([]);
        expect(good.code).toBe(0);
      } finally {
        await sink.close();
      }
    }, 120_000);
  });
}
