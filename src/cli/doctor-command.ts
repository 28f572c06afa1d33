import type { Command } from 'commander';
import { type DoctorCheck, checkCertificate, checkClock, checkDns, checkKeys, checkRelay, summarize } from '../app/doctor.js';
import { loadKeyRing } from '../app/master-key.js';
import { createMailResolver, loadDnsOverrides } from '../mail/dns-overrides.js';
import { createDnsRecordsService } from '../mail/dns-records.js';
import { openStore } from '../store/db.js';
import { configOrExit, runCommand } from './cli-support.js';

const MARK: Record<DoctorCheck['status'], string> = { ok: 'ok  ', warn: 'WARN', fail: 'FAIL', skip: 'skip' };

/**
 * `mailward doctor [--json] [--time-url URL]`: what an operator must fix before (and after) going live,
 * checked against the world as it is: DNS as published (honouring MAILWARD_DNS_OVERRIDES), the SMTP
 * certificate, the relay with STARTTLS, the clock, the key ring. Exit 1 when any check fails.
 */
export const registerDoctor = (program: Command) =>
  program
    .command('doctor')
    .description(
      'Check DNS as published (DKIM for each selector, SPF, DMARC, MX) against `mailward dns`, the SMTP certificate, the relay (STARTTLS), ' +
        'clock skew and the key ring; print what to fix. Exit 1 when a check fails.',
    )
    .option('--json', 'print one JSON document on stdout')
    .option('--time-url <url>', 'an HTTPS server whose Date header is the reference clock')
    .option('--domain <domain>', 'only this organization')
    .action(
      runCommand(async (opts: { json?: boolean; timeUrl?: string; domain?: string }) => {
        const config = configOrExit();
        const checks: DoctorCheck[] = [];
        const store = openStore(config.database);
        try {
          let ring: ReturnType<typeof loadKeyRing> | null = null;
          try {
            ring = loadKeyRing({ ...config, create: false });
          } catch (e) {
            checks.push({
              check: 'keys.ring',
              subject: 'master key',
              status: 'fail',
              detail: (e as { detail?: string }).detail ?? String(e),
              fix: 'set MAILWARD_MASTER_KEY(S) or restore <data dir>/master.key',
            });
          }
          if (ring) checks.push(...(await checkKeys(store, ring, config)));
          const orgs = await createDnsRecordsService({ db: store.db }).forOrganizations({ domain: opts.domain });
          if (orgs.length === 0)
            checks.push({
              check: 'dns',
              subject: opts.domain ?? '(all)',
              status: 'fail',
              detail: 'no organization found',
              fix: 'run mailward init',
            });
          const resolver = createMailResolver(loadDnsOverrides(config.dnsOverridesFile));
          checks.push(...(await checkDns(orgs, resolver, { mxHost: config.inbound.hostname })));
        } finally {
          await store.destroy();
        }
        checks.push(...checkCertificate(config, new Date()));
        checks.push(...(await checkRelay(config)));
        checks.push(...(await checkClock(opts.timeUrl, () => new Date())));
        const report = summarize(checks);
        if (opts.json) process.stdout.write(`${JSON.stringify(report)}\n`);
        else {
          for (const c of checks) {
            process.stdout.write(`${MARK[c.status]}  ${c.check.padEnd(24)} ${c.subject}: ${c.detail}\n`);
            if (c.fix && c.status !== 'ok') process.stdout.write(`      fix: ${c.fix}\n`);
          }
          const fails = checks.filter((c) => c.status === 'fail').length;
          const warns = checks.filter((c) => c.status === 'warn').length;
          process.stdout.write(
            fails ? `\n${fails} problem(s) to fix, ${warns} warning(s).\n` : `\nNo problems found (${warns} warning(s)).\n`,
          );
        }
        return report.ok ? 0 : 1;
      }),
    );
