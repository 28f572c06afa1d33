import type { Command } from 'commander';
import { openContainer, runCommand } from './cli-support.js';
import { registerSendBulk } from './send-bulk-command.js';

export const registerMail = (program: Command) => {
  const mail = program.command('mail').description('Mail housekeeping (message retention) and bulk template sends');
  registerSendBulk(mail);
  mail
    .command('purge')
    .description(
      "Destroy the sealed content of settled messages past their organisation's retention (GET/PUT /v1/mail/retention, at least 2190 days " +
        'after the last status change), keeping metadata and hashes; never under a legal hold; each purge is audited',
    )
    .option('--dry-run', 'only count what would be purged')
    .option('--json', 'print one JSON document on stdout')
    .action(
      runCommand(async (opts: { dryRun?: boolean; json?: boolean }) => {
        const c = await openContainer();
        try {
          const r = await c.mail.retention.purge({ dryRun: opts.dryRun });
          if (opts.json) process.stdout.write(`${JSON.stringify(r)}\n`);
          else {
            const verb = r.dry_run ? 'would be purged' : 'purged';
            for (const o of r.organizations)
              process.stdout.write(
                `${o.org_id}: ${o.purged} message(s) ${verb} (last changed before ${o.cutoff}), ${o.held} kept under a legal hold\n`,
              );
            if (r.organizations.length === 0) process.stdout.write('no organization yet: nothing to purge\n');
          }
          return 0;
        } finally {
          await c.close();
        }
      }),
    );
};
