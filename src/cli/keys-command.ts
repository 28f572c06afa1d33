import type { Command } from 'commander';
import { createContainer } from '../app/container.js';
import { rotateKeys } from '../app/key-rotation.js';
import { SEALED_COLUMNS } from '../app/sealed-columns.js';
import { createLogger } from '../kernel/log.js';
import { configOrExit, runCommand } from './cli-support.js';

export const registerKeys = (program: Command) => {
  const keys = program.command('keys').description('Key-encryption keys (the master key) and signing keys');
  keys
    .command('rotate-identity')
    .description(
      "Replace an organisation's X-Agent-Identity signing key: the old key stays in /.well-known/http-message-signatures-directory and jwks.json with its validity window, so mail it signed still verifies",
    )
    .option('--domain <domain>', 'the organisation (default: the first one)')
    .option('--json', 'print one JSON document on stdout')
    .action(
      runCommand(async (opts: { domain?: string; json?: boolean }) => {
        const c = await createContainer(configOrExit(), { logger: createLogger({ level: 'warn', destination: 2 }) });
        try {
          let q = c.store.db.selectFrom('organizations').select(['id', 'domain']).orderBy('created_at').limit(1);
          if (opts.domain) q = q.where('domain', '=', opts.domain.toLowerCase());
          const org = await q.executeTakeFirst();
          if (!org) {
            process.stderr.write('mailward: no such organisation\n');
            return 1;
          }
          const r = await c.keyDirectory.rotateIdentityKey(org);
          process.stdout.write(
            opts.json ? `${JSON.stringify(r)}\n` : `Identity key ${r.active} is active; ${r.retired ?? 'no key'} retired (still listed).\n`,
          );
          return 0;
        } finally {
          await c.close();
        }
      }),
    );
  keys
    .command('rotate')
    .description(
      'Add a new key-encryption key, re-wrap every sealed data key under it and retire the old one. ' +
        'With the key in <data dir>/master.key the new version is appended there; with MAILWARD_MASTER_KEYS, set its "active" to the new version first. ' +
        'Running servers pick up the new key by themselves.',
    )
    .option('--json', 'print one JSON document on stdout')
    .action(
      runCommand(async (opts: { json?: boolean }) => {
        const config = configOrExit();
        const c = await createContainer(config, { logger: createLogger({ level: 'warn', destination: 2 }) });
        const tty = process.stderr.isTTY === true;
        try {
          const r = await rotateKeys({
            store: c.store,
            keys: { masterKey: config.masterKey, masterKeys: config.masterKeys, dataDir: config.dataDir },
            clock: c.clock,
            audit: c.audit,
            columns: SEALED_COLUMNS,
            // Progress only on a terminal: \r redraws one line per sealed column.
            onProgress: tty
              ? (p) => process.stderr.write(`\r  re-wrapping ${p.label}: ${p.done}/${p.total}${p.done >= p.total ? '\n' : ''}`)
              : undefined,
          });
          if (opts.json) {
            process.stdout.write(`${JSON.stringify(r)}\n`);
          } else {
            const still = [...new Set(r.remaining.map((u) => u.version))];
            process.stdout.write(
              `Key-encryption key version ${r.to} is active. Re-wrapped ${r.rewrapped} data keys (${r.unchanged} already current).\n` +
                (r.retired.length
                  ? `Retired version(s) ${r.retired.join(', ')}: no sealed value uses them any more. Keep them until every server has reloaded the key (within a second for the key file; a restart for MAILWARD_MASTER_KEYS), then they may be dropped.\n`
                  : '') +
                (r.failed.length
                  ? `${r.failed.length} value(s) failed to re-wrap (tampered or sealed under a missing key); nothing was retired:\n${r.failed.map((f) => `  ${f.table} ${f.id} (${f.code})`).join('\n')}\n`
                  : '') +
                (still.length
                  ? `Values are still sealed under version(s) ${still.join(', ')} (${r.remaining.map((u) => `${u.label}: ${u.count}`).join(', ')}); do not drop them. Run \`mailward keys rotate\` again once every server uses version ${r.to}.\n`
                  : ''),
            );
          }
          return r.failed.length || r.remaining.length ? 1 : 0;
        } finally {
          await c.close();
        }
      }),
    );
};
