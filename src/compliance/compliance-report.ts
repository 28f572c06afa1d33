import { createHash } from 'node:crypto';
import type { AuditLog } from '../audit/audit-log.js';
import type { AuditService } from '../audit/audit-service.js';
import { leafHash } from '../audit/merkle.js';
import { systemActor } from '../identity/principal.js';
import type { Clock } from '../kernel/clock.js';
import type { Db } from '../store/db.js';

type Deps = {
  db: Db;
  audit: AuditService;
  auditLog: AuditLog;
  clock: Clock;
  /** Sealed values per key-encryption key version (key-rotation.ts keyVersionsInUse), injected from app/. */
  sealedByVersion?: () => Promise<{ version: string; label: string; count: number }[]>;
};

const DAY_MS = 86_400_000;
const ageDays = (now: Date, at: string | null | undefined) => (at ? Math.floor((now.getTime() - Date.parse(at)) / DAY_MS) : null);

/**
 * The evidence pack for auditors (45 CFR 164.308(a)(8) evaluation, 164.312): encryption at rest and key ages, MFA
 * coverage of humans, the last audit verification, the last checkpoint, retention and legal holds, the last backup.
 * Signed like an audit export: the report's SHA-256 goes into a `compliance.reported` audit event, and the report
 * carries that event's RFC 6962 inclusion proof under a signed checkpoint, so an auditor checks it with the
 * published audit key alone. Figures only: no names, addresses or content.
 */
export const createComplianceReport = ({ db, audit, auditLog, clock, sealedByVersion }: Deps) => {
  const build = async () => {
    const now = clock.now();
    const ring = await db.selectFrom('key_ring').selectAll().orderBy('created_at').execute();
    const signing = await db.selectFrom('signing_keys').select(['purpose', 'kid', 'org_id', 'created_at', 'retired_at']).execute();
    const indexKeys = await db.selectFrom('recipient_index_keys').select(['org_id', 'version', 'created_at', 'retired_at']).execute();
    const orgs = await db.selectFrom('organizations').select(['id', 'name', 'message_retention_days']).orderBy('id').execute();
    const humans = await db.selectFrom('humans').select(['id', 'org_id']).where('is_active', '=', 1).execute();
    const creds = await db.selectFrom('human_credentials').select(['human_id', 'totp_confirmed_at', 'sso_subject']).execute();
    const passkeys = new Set((await db.selectFrom('webauthn_credentials').select('human_id').execute()).map((r) => r.human_id));
    const credBy = new Map(creds.map((c) => [c.human_id, c]));
    const last = async (action: string) =>
      db
        .selectFrom('audit_events')
        .select(['seq', 'at', 'outcome', 'details'])
        .where('action', '=', action)
        .orderBy('seq', 'desc')
        .limit(1)
        .executeTakeFirst();
    const verified = await last('audit.verified');
    const backup = await last('store.backup');
    const cp = await db
      .selectFrom('audit_checkpoints')
      .select(['tree_size', 'root_hash', 'at', 'key_id'])
      .orderBy('tree_size', 'desc')
      .limit(1)
      .executeTakeFirst();
    const auditHolds = await db.selectFrom('audit_legal_holds').select(['org_id']).where('released_at', 'is', null).execute();
    const mailHolds = await db.selectFrom('mail_legal_holds').select(['org_id', 'scope']).where('released_at', 'is', null).execute();

    return {
      format: 'mailward-compliance-report/1',
      generated_at: now.toISOString(),
      encryption_at_rest: {
        algorithm: 'AES-256-GCM envelope encryption, data keys wrapped under the key ring',
        key_encryption_keys: ring.map((k) => ({
          version: k.version,
          fingerprint: k.fingerprint,
          created_at: k.created_at,
          age_days: ageDays(now, k.created_at),
          retired_at: k.retired_at,
        })),
        sealed_values_by_version: sealedByVersion ? await sealedByVersion() : null,
        signing_keys: signing.map((k) => ({
          purpose: k.purpose,
          kid: k.kid,
          org_id: k.org_id,
          created_at: k.created_at,
          age_days: ageDays(now, k.created_at),
          retired: k.retired_at !== null,
        })),
        recipient_index_keys: indexKeys.map((k) => ({
          org_id: k.org_id,
          version: Number(k.version),
          age_days: ageDays(now, k.created_at),
          retired: k.retired_at !== null,
        })),
      },
      organizations: orgs.map((o) => {
        const hs = humans.filter((h) => h.org_id === o.id);
        const totp = hs.filter((h) => credBy.get(h.id)?.totp_confirmed_at).length;
        const passkey = hs.filter((h) => passkeys.has(h.id)).length;
        const sso = hs.filter((h) => credBy.get(h.id)?.sso_subject).length;
        const mfa = hs.filter((h) => credBy.get(h.id)?.totp_confirmed_at || passkeys.has(h.id)).length;
        return {
          org_id: o.id,
          mfa: {
            active_humans: hs.length,
            with_second_factor: mfa,
            totp,
            passkey,
            sso_linked: sso,
            coverage: hs.length === 0 ? null : Math.round((mfa / hs.length) * 1000) / 1000,
          },
          retention: { message_retention_days: o.message_retention_days },
          legal_holds: {
            audit: auditHolds.filter((h) => h.org_id === o.id).length,
            mail: mailHolds.filter((h) => h.org_id === o.id).length,
          },
        };
      }),
      audit: {
        last_verification: verified
          ? { at: verified.at, outcome: verified.outcome, seq: Number(verified.seq), details: JSON.parse(verified.details) as unknown }
          : null,
        last_checkpoint: cp ? { tree_size: Number(cp.tree_size), root_hash: cp.root_hash, at: cp.at, key_id: cp.key_id } : null,
      },
      backup: backup ? { last_at: backup.at, age_days: ageDays(now, backup.at), outcome: backup.outcome } : null,
    };
  };

  /** Builds, records and signs the report. The audit event and the checkpoint are written; nothing else changes. */
  const generate = async () => {
    const report = await build();
    const reportJson = JSON.stringify(report);
    const reportHash = createHash('sha256').update(reportJson).digest('hex');
    const ev = await audit.recordSequenced({
      action: 'compliance.reported',
      actor: systemActor(),
      details: { report_sha256: reportHash, format: report.format },
    });
    const cp = await auditLog.checkpoints.current();
    const path = await auditLog.tree.inclusionProof(ev.seq - 1, cp.tree_size);
    return {
      report,
      signature: {
        report_sha256: reportHash,
        how: 'sha256 of JSON.stringify(report) equals details.report_sha256 of audit event `seq`, whose leaf is in the signed checkpoint (RFC 6962)',
        seq: ev.seq,
        event_hash: ev.hash,
        leaf_hash: leafHash(Buffer.from(ev.hash, 'hex')).toString('hex'),
        audit_path: path.map((b) => b.toString('hex')),
        checkpoint: cp,
      },
    };
  };

  return { build, generate };
};

export type ComplianceReport = ReturnType<typeof createComplianceReport>;
