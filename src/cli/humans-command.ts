import type { Command } from 'commander';
import { z } from 'zod';
import { createContainer } from '../app/container.js';
import { emailAddress } from '../identity/identity-schemas.js';
import { HUMAN_ROLES, type Role } from '../identity/principal.js';
import { createLogger } from '../kernel/log.js';
import { configOrExit, runCommand } from './cli-support.js';

const inviteArgs = z.object({
  email: emailAddress,
  name: z.string().trim().min(1).max(200),
  roles: z.array(z.enum(HUMAN_ROLES)).min(1),
  org: z
    .string()
    .regex(/^org_[0-9a-f]{32}$/)
    .optional(),
});

export const registerHumans = (program: Command) => {
  // `mailward humans create|list|deactivate` (provisioning) and `invite` share one command group.
  const humans =
    program.commands.find((c) => c.name() === 'humans') ?? program.command('humans').description('People who sign in to the console');
  humans
    .command('invite')
    .description('Create a human and print a one-time link where they set a password and enrol a second factor (shown once)')
    .requiredOption('--email <email>', 'their email (they sign in with it)')
    .requiredOption('--name <name>', 'their name as it appears on signatures')
    .requiredOption('--roles <roles>', `comma-separated roles: ${HUMAN_ROLES.join(', ')}`)
    .option('--org <id>', 'organization id (default: the only one)')
    .option('--json', 'print one JSON document on stdout')
    .action(
      runCommand(async (opts: { email: string; name: string; roles: string; org?: string; json?: boolean }) => {
        const parsed = inviteArgs.safeParse({ ...opts, roles: opts.roles.split(',').map((r) => r.trim()) });
        if (!parsed.success) {
          process.stderr.write(`mailward: ${parsed.error.issues.map((i) => `--${i.path.join('.')}: ${i.message}`).join('; ')}\n`);
          return 2;
        }
        const config = configOrExit();
        const c = await createContainer(config, { logger: createLogger({ level: 'warn', destination: 2 }) });
        try {
          let orgId = parsed.data.org;
          if (!orgId) {
            const orgs = await c.store.db.selectFrom('organizations').select('id').limit(2).execute();
            if (orgs.length !== 1) {
              process.stderr.write('mailward: name the organization with --org (there is not exactly one)\n');
              return 2;
            }
            orgId = orgs[0]!.id;
          }
          // The link's origin: MAILWARD_PUBLIC_URL, else the local console this configuration serves.
          const origin = config.accounts.publicUrl ?? `http://localhost:${config.http.port}`;
          const r = await c.accounts.accounts.inviteNewHuman(
            orgId,
            { name: parsed.data.name, email: parsed.data.email, roles: parsed.data.roles as Role[] },
            origin,
          );
          if (opts.json) process.stdout.write(`${JSON.stringify(r)}\n`);
          else
            process.stdout.write(`Human ${r.human_id} created. One-time sign-in link (shown once, expires ${r.expires_at}):\n  ${r.url}\n`);
          return 0;
        } finally {
          await c.close();
        }
      }),
    );
};
