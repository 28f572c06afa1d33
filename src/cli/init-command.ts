import type { Command } from 'commander';
import { createContainer } from '../app/container.js';
import { postmasterAddresses } from '../app/init.js';
import { zoneTxtValue } from '../mail/dns-records.js';
import { loadSmtpTls } from '../smtp/tls-cert.js';
import { createLogger } from '../kernel/log.js';
import { configOrExit, runCommand } from './cli-support.js';

export const registerInit = (program: Command) =>
  program
    .command('init')
    .description('Create an organization: DKIM keys (ed25519 + rsa-2048), identity-signing key and its first admin')
    .requiredOption('--org <name>', 'organization name')
    .requiredOption('--domain <domain>', 'mail domain of the organization (agent addresses live here)')
    .option('--admin-name <name>', 'name of the first admin', 'Administrator')
    .option('--admin-email <email>', 'email of the first admin (default admin@<domain>)')
    .option('--json', 'print one JSON document on stdout')
    .action(
      runCommand(async (opts: { org: string; domain: string; adminName: string; adminEmail?: string; json?: boolean }) => {
        const config = configOrExit();
        const c = await createContainer(config, { createMasterKey: true, logger: createLogger({ level: 'warn', destination: 2 }) });
        try {
          if (!/^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]$/i.test(opts.domain)) {
            process.stderr.write('mailward: --domain must be a domain name such as hospital.example\n');
            return 1;
          }
          // Inbound SMTP STARTTLS: a self-signed development certificate in the data dir unless files are configured (before the organisation, so a missing openssl leaves nothing half done).
          loadSmtpTls({ ...config, bootstrap: { ...config.bootstrap, domain: opts.domain.toLowerCase() } });
          const r = await c.init({ orgName: opts.org, domain: opts.domain, adminName: opts.adminName, adminEmail: opts.adminEmail });
          if (!r) return 1;
          // The first signed checkpoint is published at once, so `audit verify` has one kept outside the store from the start.
          await c.auditLog.checkpoints.current();
          if (opts.json) {
            process.stdout.write(
              `${JSON.stringify({ org_id: r.org_id, domain: r.domain, admin_api_key: r.admin_api_key, admin_human_id: r.admin_human_id, dns_records: r.dns_records.map(({ type, name, value }) => ({ type, name, value })) })}\n`,
            );
          } else {
            const out = [
              `Organization ${opts.org} (${r.domain}) created: ${r.org_id}`,
              '',
              'Admin API key (shown once, store it in your secrets manager):',
              `  ${r.admin_api_key}`,
              '',
              'Publish these DNS TXT records (zone-file form: values over 255 characters are split into several strings):',
              ...r.dns_records.map((d) => `  ${d.name}.  IN TXT  ${zoneTxtValue(d.value)}\n    (${d.purpose})`),
              '',
              `Mail for ${postmasterAddresses(r.domain).join(' and ')} is received into read-only mailboxes of the Postmaster agent (admins and reviewers read them).`,
            ];
            process.stdout.write(`${out.join('\n')}\n`);
          }
          return 0;
        } finally {
          await c.close();
        }
      }),
    );
