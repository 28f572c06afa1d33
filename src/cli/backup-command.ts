import type { Command } from 'commander';
import { createBackup, masterKeyWhere, restoreBackup } from '../app/backup.js';
import { createContainer } from '../app/container.js';
import { loadKeyRing } from '../app/master-key.js';
import { systemActor } from '../identity/principal.js';
import { createLogger } from '../kernel/log.js';
import { configOrExit, runCommand } from './cli-support.js';

/** `mailward backup --out FILE` and `mailward restore FILE` (CONTRACT.md, CLI). */
export const registerBackup = (program: Command) => {
  program
    .command('backup')
    .description(
      'Write a consistent copy of the store (SQLite: online, while servers run; PostgreSQL: pg_dump) and the rest of the data dir to FILE (.tar.gz, mode 0600). ' +
        'The master key is never included: keep it apart from the backups.',
    )
    .requiredOption('--out <file>', 'the backup file to create (never overwritten)')
    .option('--json', 'print one JSON document on stdout')
    .action(
      runCommand(async (opts: { out: string; json?: boolean }) => {
        const config = configOrExit();
        const c = await createContainer(config, { logger: createLogger({ level: 'warn', destination: 2 }) });
        try {
          const r = await createBackup(c, opts.out);
          const where = masterKeyWhere(config);
          if (opts.json) process.stdout.write(`${JSON.stringify({ ...r, master_key_included: false, master_key_source: where })}\n`);
          else
            process.stdout.write(
              `Backup written to ${r.file} (${r.bytes} bytes, sha256 ${r.sha256}): ${r.dialect} store at audit seq ${r.audit_seq}, ${r.files.length} files.\n`,
            );
          // The reminder goes to stderr in both modes, so --json stays one document.
          process.stderr.write(
            `mailward: the master key is NOT in this backup. Without it the backup cannot be opened. Keep a copy of ${where} ` +
              `(key versions ${r.key_versions.join(', ') || 'none'}) apart from the backups, e.g. in the hospital's password manager or HSM, ` +
              'never on the same disk or tape.\n',
          );
          return 0;
        } finally {
          await c.close();
        }
      }),
    );

  program
    .command('restore')
    .description(
      'Restore a backup made by `mailward backup` into an empty data dir (SQLite) or an empty database (DATABASE_URL, with pg_restore). ' +
        'Put the master key in place first (MAILWARD_MASTER_KEY(S) or <data dir>/master.key); a key that cannot open the backup is refused (exit 2).',
    )
    .argument('<file>', 'the backup file')
    .option('--json', 'print one JSON document on stdout')
    .action(
      runCommand(async (file: string, opts: { json?: boolean }) => {
        const config = configOrExit();
        const r = await restoreBackup(config, () => loadKeyRing({ ...config, create: false }), file);
        // Opening the restored store runs what every start runs (key checks, migrations); the restore is audited in it.
        const c = await createContainer(config, { logger: createLogger({ level: 'warn', destination: 2 }) });
        try {
          await c.store.db.transaction().execute((tx) =>
            c.audit.record(tx, {
              action: 'store.restored',
              actor: systemActor(),
              orgId: null,
              target: null,
              details: { dialect: r.dialect, backup_created_at: r.created_at, backup_audit_seq: r.audit_seq },
            }),
          );
        } finally {
          await c.close();
        }
        if (opts.json) process.stdout.write(`${JSON.stringify(r)}\n`);
        else
          process.stdout.write(
            `Restored a ${r.dialect} backup of ${r.created_at} (audit seq ${r.audit_seq}) into ${r.data_dir}. Run \`mailward audit verify\`, then start the server.\n`,
          );
        return 0;
      }),
    );
};
