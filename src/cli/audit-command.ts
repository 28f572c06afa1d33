import fs from 'node:fs';
import readline from 'node:readline';
import type { Command } from 'commander';
import type { VerifyReport } from '../audit/audit-verify.js';
import { verifyExportLines } from '../audit/audit-verify.js';
import { systemActor } from '../identity/principal.js';
import { openContainer, runCommand } from './cli-support.js';

/** Progress on stderr, only when a human watches (stdout may be the JSON or the export). */
const progress = (label: string) => {
  if (!process.stderr.isTTY) return undefined;
  let last = 0;
  return (done: number, total: number) => {
    const now = Date.now();
    if (now - last < 200 && done < total) return;
    last = now;
    const pct = total > 0 ? Math.floor((done / total) * 100) : 100;
    process.stderr.write(
      `\r${label} ${done.toLocaleString('en')} / ${total.toLocaleString('en')} events (${pct}%)${done >= total ? '\n' : ''}`,
    );
  };
};

const printReport = (r: VerifyReport & { key_pinned?: boolean }, json: boolean | undefined) => {
  if (json) {
    process.stdout.write(`${JSON.stringify(r)}\n`);
    return;
  }
  const cov = r.coverage;
  if (r.ok) {
    process.stdout.write(
      `audit log intact: ${r.events_checked} events (seq ${r.first_seq ?? '-'}..${r.last_seq}), tree size ${r.tree_size}, root ${r.root_hash}\n` +
        `${r.checkpoints.signatures_checked} checkpoint signature(s) verified, ${r.checkpoints.roots_checked} root(s) recomputed` +
        (r.purged_through ? `; events through seq ${r.purged_through} purged after retention` : '') +
        '\n',
    );
    if (cov) {
      process.stdout.write(
        `signed checkpoints cover seq ..${cov.signed_through}; ${cov.unsigned_events} newest event(s) are covered by no signed checkpoint\n` +
          `${cov.external.checked} checkpoint(s) kept outside the store checked` +
          (cov.external.newest_size !== null ? ` (newest at size ${cov.external.newest_size})` : '') +
          (cov.external.checked && !cov.external.key_pinned
            ? "; their signatures were checked with the store's keys (pass --key to pin the published key)"
            : '') +
          '\n',
      );
    }
    if (r.key_pinned === false)
      process.stdout.write('note: checked against the key named inside the file; pass --key to pin the published key\n');
  } else {
    process.stdout.write(`audit log TAMPERED${r.first_bad_seq !== null ? `: first bad seq ${r.first_bad_seq}` : ''}\n`);
    for (const p of r.problems) process.stdout.write(`  ${p.code}: ${p.message}\n`);
    if (cov) process.stdout.write(`  ${cov.unsigned_events} newest event(s) are covered by no signed checkpoint\n`);
  }
  for (const w of r.warnings ?? []) process.stdout.write(`warning ${w.code}: ${w.message}\n`);
};

/**
 * Exit codes of `audit verify` (CONTRACT: 0 intact, 1 tampered): 0 intact (warnings, such as checkpoints
 * overdue or none kept outside the store, are printed), 1 tampered or inconsistent with a checkpoint,
 * 3 only with --strict: nothing found, but the checkpoints do not cover the log as the cadence requires.
 */
const verifyExit = (r: VerifyReport, strict: boolean) => (!r.ok ? 1 : strict && r.warnings?.length ? 3 : 0);

/** A checkpoint note from a file or an http(s) URL; a JSON body (GET /v1/audit/checkpoint) gives its `note`. */
const readNote = async (where: string): Promise<{ source: string; text: string }> => {
  let text: string;
  if (/^https?:\/\//i.test(where)) {
    const res = await fetch(where, { signal: AbortSignal.timeout(15_000), redirect: 'error' });
    if (!res.ok) throw new Error(`GET ${where} answered ${res.status}`);
    text = await res.text();
  } else {
    text = fs.readFileSync(where, 'utf8');
  }
  if (text.trimStart().startsWith('{')) {
    const note = (JSON.parse(text) as { note?: unknown }).note;
    if (typeof note !== 'string') throw new Error(`${where} holds JSON without a note`);
    text = note;
  }
  return { source: where, text };
};

const collect = (v: string, prev: string[] = []) => [...prev, v];

const readKey = (key: string | undefined) => (key && fs.existsSync(key) ? fs.readFileSync(key, 'utf8') : key);

export const registerAudit = (program: Command) => {
  const audit = program.command('audit').description('Tamper-evident audit log: verify, export, checkpoints, retention');

  audit
    .command('verify')
    .description(
      'Recompute the whole hash chain and Merkle tree and check every signed checkpoint, in the store and kept outside it; exit 0 intact (coverage warnings printed), 1 tampered, 3 with --strict when nothing was found but the checkpoints do not cover the log as the cadence requires',
    )
    .option('--json', 'print one JSON document on stdout')
    .option('--file <export.jsonl>', 'verify an export file instead of the store (needs no database)')
    .option(
      '--key <key>',
      'C2SP verifier key, or a path to a JWKS file (e.g. /.well-known/jwks.json): pins the key of --file or of the checkpoints kept outside the store',
    )
    .option(
      '--checkpoint <file|url>',
      'a C2SP checkpoint note kept outside the store (a file, an http(s) URL, a witness-cosigned note); repeatable',
      collect,
    )
    .option(
      '--checkpoint-dir <dir>',
      'the directory checkpoints are published to (default MAILWARD_CHECKPOINT_DIR, <data dir>/checkpoints)',
    )
    .option(
      '--strict',
      'exit 3 when a coverage warning stands (checkpoints overdue or missing against the cadence, none kept outside the store)',
    )
    .option(
      '--witness-key <vkey>',
      'C2SP verifier key of a witness whose cosignature every --checkpoint note must carry; repeatable',
      collect,
    )
    .action(
      runCommand(
        async (opts: {
          json?: boolean;
          file?: string;
          key?: string;
          checkpoint?: string[];
          checkpointDir?: string;
          witnessKey?: string[];
          strict?: boolean;
        }) => {
          if (opts.file) {
            const file = opts.file;
            if (!fs.existsSync(file)) {
              process.stderr.write(`mailward: no such file: ${file}\n`);
              return 2;
            }
            const lines = () => readline.createInterface({ input: fs.createReadStream(file), crlfDelay: Number.POSITIVE_INFINITY });
            const r = await verifyExportLines(lines, readKey(opts.key));
            printReport(r, opts.json);
            return r.ok ? 0 : 1;
          }
          const notes: { source: string; text: string }[] = [];
          for (const where of opts.checkpoint ?? []) {
            try {
              notes.push(await readNote(where));
            } catch (e) {
              process.stderr.write(`mailward: cannot read checkpoint ${where}: ${(e as Error).message}\n`);
              return 2;
            }
          }
          const c = await openContainer();
          try {
            const r = await c.auditLog.verify(progress('verified'), {
              external: {
                notes,
                ...(opts.checkpointDir ? { dir: opts.checkpointDir } : {}),
                key: readKey(opts.key),
                witnessKeys: opts.witnessKey,
              },
            });
            printReport(r, opts.json);
            return verifyExit(r, opts.strict === true);
          } finally {
            await c.close();
          }
        },
      ),
    );

  audit
    .command('export')
    .description('Stream the log as JSONL, ending with a signed checkpoint')
    .option('--since <iso>', 'first event time (inclusive)')
    .option('--until <iso>', 'last event time (exclusive)')
    .option('--out <file>', 'write here (mode 0600) instead of stdout')
    .action(
      runCommand(async (opts: { since?: string; until?: string; out?: string }) => {
        for (const [name, v] of [
          ['--since', opts.since],
          ['--until', opts.until],
        ] as const) {
          if (v !== undefined && Number.isNaN(Date.parse(v))) {
            process.stderr.write(`mailward: ${name} must be an ISO-8601 time such as 2026-01-01T00:00:00Z\n`);
            return 2;
          }
        }
        const c = await openContainer();
        const out = opts.out ? fs.createWriteStream(opts.out, { mode: 0o600 }) : process.stdout;
        try {
          const write = (line: string) =>
            new Promise<void>((resolve, reject) => {
              const ok = out.write(`${line}\n`, (e) => (e ? reject(e) : undefined));
              if (ok) resolve();
              else out.once('drain', resolve);
            });
          const r = await c.auditLog.exporter.exportLog({
            since: opts.since ? new Date(opts.since).toISOString() : undefined,
            until: opts.until ? new Date(opts.until).toISOString() : undefined,
            write,
            onProgress: progress('exported'),
          });
          await c.audit.recordAlone({
            action: 'audit.exported',
            actor: systemActor(),
            orgId: null,
            details: { first_seq: r.first_seq, last_seq: r.last_seq, events: r.events, tree_size: r.tree_size },
          });
          if (opts.out) process.stderr.write(`mailward: exported ${r.events} events (seq ${r.first_seq}..${r.last_seq}) to ${opts.out}\n`);
          return 0;
        } finally {
          if (opts.out) await new Promise((resolve) => (out as fs.WriteStream).end(resolve));
          await c.close();
        }
      }),
    );

  audit
    .command('checkpoint')
    .description('Sign a checkpoint of the log as it is now (C2SP tlog-checkpoint)')
    .option('--json', 'print one JSON document on stdout')
    .action(
      runCommand(async (opts: { json?: boolean }) => {
        const c = await openContainer();
        try {
          const cp = await c.auditLog.checkpoints.current();
          process.stdout.write(opts.json ? `${JSON.stringify(cp)}\n` : `${cp.note}`);
          return 0;
        } finally {
          await c.close();
        }
      }),
    );

  audit
    .command('purge')
    .description(
      `Delete events, and vault versions of deleted or superseded secrets, past MAILWARD_AUDIT_RETENTION_DAYS (never under a legal hold); the purge is itself audited`,
    )
    .option('--dry-run', 'only say what would be purged')
    .option('--json', 'print one JSON document on stdout')
    .action(
      runCommand(async (opts: { dryRun?: boolean; json?: boolean }) => {
        const c = await openContainer();
        try {
          // Vault versions first: they honour legal holds per organisation, the audit purge refuses under any hold.
          const vault = await c.vault.purgeExpired({ dryRun: opts.dryRun });
          if (!opts.json) {
            const verb = vault.dry_run ? 'would be destroyed' : 'destroyed';
            process.stdout.write(
              `vault: ${vault.versions} version(s) of ${vault.secrets} secret(s), deleted or superseded before ${vault.cutoff}, ${verb}\n`,
            );
          }
          const r = await c.auditLog.retention.purge(systemActor(), { dryRun: opts.dryRun });
          process.stdout.write(
            opts.json
              ? `${JSON.stringify({ ...r, vault })}\n`
              : r.purged
                ? `purged events through seq ${r.through_seq} (${r.deleted} deleted, older than ${r.cutoff}); boundary checkpoint at size ${r.checkpoint_size}\n`
                : `nothing purged (${r.reason}); events older than ${r.cutoff} ${r.dry_run ? `would be purged through seq ${r.through_seq}` : 'are kept'}\n`,
          );
          return 0;
        } finally {
          await c.close();
        }
      }),
    );
};
