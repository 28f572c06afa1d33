import type { Command } from 'commander';
import { createContainer } from '../app/container.js';
import { createLogger } from '../kernel/log.js';
import { configOrExit, runCommand } from './cli-support.js';

/** `mailward dns [--domain D] [--json]`: the DKIM, SPF and DMARC TXT records to publish, per organization. */
export const registerDns = (program: Command) =>
  program
    .command('dns')
    .description('Print the DKIM (ed25519 + rsa), SPF and DMARC TXT records each organization must publish')
    .option('--domain <domain>', 'only this organization')
    .option('--json', 'print one JSON document on stdout')
    .action(
      runCommand(async (opts: { domain?: string; json?: boolean }) => {
        const config = configOrExit();
        const c = await createContainer(config, { logger: createLogger({ level: 'warn', destination: 2 }) });
        try {
          const out = await c.mail.dnsRecords.forOrganizations({ domain: opts.domain });
          if (out.length === 0) {
            process.stderr.write('mailward: no organization found (run mailward init first)\n');
            return 1;
          }
          if (opts.json) {
            process.stdout.write(
              `${JSON.stringify({ organizations: out.map((o) => ({ domain: o.domain, dns_records: o.dns_records.map(({ type, name, value, zone_value }) => ({ type, name, value, zone_value })) })) })}\n`,
            );
          } else {
            for (const o of out) {
              process.stdout.write(
                `${o.domain}:\n${o.dns_records.map((d) => `  ${d.name}.  IN TXT  ${d.zone_value}\n    (${d.purpose})`).join('\n')}\n`,
              );
            }
          }
          return 0;
        } finally {
          await c.close();
        }
      }),
    );
