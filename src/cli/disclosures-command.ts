import type { Command } from 'commander';
import { disclosuresCsv } from '../compliance/disclosures.js';
import type { RequestContext } from '../identity/principal.js';
import { AppError } from '../kernel/errors.js';
import { openContainer, runCommand } from './cli-support.js';

/**
 * `mailward disclosures --contact ADDRESS`: the accounting of disclosures (45 CFR 164.528) on this host's store, as
 * the privacy officer or admin whose API key is in MAILWARD_API_KEY (or --key): the read is audited under that name.
 */
export const registerDisclosures = (program: Command) => {
  program
    .command('disclosures')
    .description("Accounting of disclosures to one contact (45 CFR 164.528) as a privacy officer's or admin's API key; audited")
    .requiredOption('--contact <address>', 'the patient or contact address')
    .option('--since <iso>', 'from this time (ISO 8601)')
    .option('--until <iso>', 'until this time (ISO 8601)')
    .option('--key <key>', 'API key of a privacy officer or admin (default: MAILWARD_API_KEY)')
    .option('--json', 'print one JSON document')
    .option('--csv', 'print CSV (RFC 4180)')
    .action(
      runCommand(async (opts: { contact: string; since?: string; until?: string; key?: string; json?: boolean; csv?: boolean }) => {
        const key = opts.key ?? process.env.MAILWARD_API_KEY;
        if (!key)
          throw new AppError('api_key_required', 400, 'Give the API key of a privacy officer or admin in MAILWARD_API_KEY or --key.');
        for (const t of [opts.since, opts.until]) {
          if (t !== undefined && Number.isNaN(Date.parse(t))) throw new AppError('invalid_time', 400, `Not an ISO 8601 time: ${t}`);
        }
        const c = await openContainer();
        try {
          const meta = { requestId: null, clientIp: null };
          const ctx: RequestContext = { principal: await c.apiKeys.authenticate(key, meta), ...meta };
          const r = await c.disclosures.report(ctx, { contact: opts.contact, since: opts.since, until: opts.until });
          if (opts.json) process.stdout.write(`${JSON.stringify(r)}\n`);
          else if (opts.csv) process.stdout.write(disclosuresCsv(r.disclosures));
          else {
            process.stdout.write(`${r.disclosures.length} disclosure(s) to ${opts.contact.trim().toLowerCase()}\n`);
            for (const d of r.disclosures)
              process.stdout.write(
                `${d.at}  ${d.email_id}  ${d.category ?? '-'}  phi: ${d.phi_types.join(',') || '-'}  agent: ${d.agent?.name ?? '-'}  ` +
                  `approved by: ${d.approved_by?.name ?? '-'}  audit seq ${d.proof?.seq ?? '-'}\n`,
              );
          }
          return 0;
        } finally {
          await c.close();
        }
      }),
    );
};
