import type { Command } from 'commander';
import { openContainer, runCommand } from './cli-support.js';

/** `mailward compliance report [--json]`: the signed evidence pack for auditors (src/compliance/compliance-report.ts). */
export const registerCompliance = (program: Command) => {
  const compliance = program.command('compliance').description('Evidence for auditors');
  compliance
    .command('report')
    .description(
      'Encryption at rest and key ages, MFA coverage of humans, the last audit verification and checkpoint, retention and legal holds, ' +
        'the last backup; signed like an audit export (its SHA-256 is in an audit event with an RFC 6962 proof under a signed checkpoint)',
    )
    .option('--json', 'print one JSON document (report and signature)')
    .action(
      runCommand(async (opts: { json?: boolean }) => {
        const c = await openContainer();
        try {
          const out = await c.complianceReport.generate();
          if (opts.json) {
            process.stdout.write(`${JSON.stringify(out)}\n`);
            return 0;
          }
          const r = out.report;
          const w = (s: string) => process.stdout.write(`${s}\n`);
          w(`Mailward compliance report, ${r.generated_at}`);
          w('Encryption at rest (AES-256-GCM envelopes):');
          for (const k of r.encryption_at_rest.key_encryption_keys)
            w(`  KEK version ${k.version}: ${k.age_days} day(s) old${k.retired_at ? `, retired ${k.retired_at}` : ''}`);
          for (const k of r.encryption_at_rest.signing_keys.filter((x) => !x.retired))
            w(`  ${k.purpose} ${k.kid}: ${k.age_days} day(s) old`);
          for (const o of r.organizations) {
            w(`Organisation ${o.org_id}:`);
            w(
              `  MFA: ${o.mfa.with_second_factor} of ${o.mfa.active_humans} active humans (TOTP ${o.mfa.totp}, passkey ${o.mfa.passkey}; SSO-linked ${o.mfa.sso_linked})`,
            );
            w(
              `  message retention: ${o.retention.message_retention_days} days; legal holds: audit ${o.legal_holds.audit}, mail ${o.legal_holds.mail}`,
            );
          }
          const v = r.audit.last_verification;
          w(`Last audit verification: ${v ? `${v.at} (${v.outcome})` : 'never'}`);
          const cp = r.audit.last_checkpoint;
          w(`Last checkpoint: ${cp ? `size ${cp.tree_size} at ${cp.at}` : 'none'}`);
          w(`Last backup: ${r.backup ? `${r.backup.last_at} (${r.backup.age_days} day(s) ago)` : 'unknown'}`);
          w(
            `Signed: sha256 ${out.signature.report_sha256} in audit event ${out.signature.seq}, checkpoint size ${out.signature.checkpoint.tree_size}`,
          );
          return 0;
        } finally {
          await c.close();
        }
      }),
    );
};
