import { createHash } from 'node:crypto';
import type { AuditLog } from '../audit/audit-log.js';
import type { AuditService } from '../audit/audit-service.js';
import { atOfStored } from '../audit/audit-columns.js';
import { idIs } from '../audit/event-rows.js';
import { leafHash } from '../audit/merkle.js';
import type { Guard } from '../identity/guard.js';
import { type RequestContext, systemActor } from '../identity/principal.js';
import type { Clock } from '../kernel/clock.js';
import type { Db } from '../store/db.js';
import { requireOfficer } from './disclosures.js';

type Deps = {
  db: Db;
  audit: AuditService;
  auditLog: AuditLog;
  clock: Clock;
  /** For the organisation-scoped report (REST and console): the refusal is audited as `denied`, the success in the caller's name. */
  guard?: Pick<Guard, 'change' | 'read' | 'recordIn'>;
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
export const createComplianceReport = ({ db, audit, auditLog, clock, guard, sealedByVersion }: Deps) => {
  /**
   * The report over the whole store (`orgId` undefined: the operator's CLI), or over one organisation: then only its
   * own organisation, humans, legal holds and keys appear, with what is shared by every tenant (the key-encryption
   * keys, store-wide signing keys, the audit tree's checkpoint, store-wide verifications and backups); the count of
   * sealed values per key version, a store-wide figure, is left out (null).
   */
  const build = async (orgId?: string) => {
    const now = clock.now();
    const ring = await db.selectFrom('key_ring').selectAll().orderBy('created_at').execute();
    let signingQ = db.selectFrom('signing_keys').select(['purpose', 'kid', 'org_id', 'created_at', 'retired_at']);
    if (orgId) signingQ = signingQ.where((eb) => eb.or([eb('org_id', '=', orgId), eb('org_id', 'is', null)]));
    const signing = await signingQ.execute();
    let indexQ = db.selectFrom('recipient_index_keys').select(['org_id', 'version', 'created_at', 'retired_at']);
    if (orgId) indexQ = indexQ.where('org_id', '=', orgId);
    const indexKeys = await indexQ.execute();
    let orgQ = db.selectFrom('organizations').select(['id', 'name', 'message_retention_days']).orderBy('id');
    if (orgId) orgQ = orgQ.where('id', '=', orgId);
    const orgs = await orgQ.execute();
    let humanQ = db.selectFrom('humans').select(['id', 'org_id']).where('is_active', '=', 1);
    if (orgId) humanQ = humanQ.where('org_id', '=', orgId);
    const humans = await humanQ.execute();
    const humanIds = humans.map((h) => h.id);
    const creds =
      humanIds.length === 0
        ? []
        : await db
            .selectFrom('human_credentials')
            .select(['human_id', 'totp_confirmed_at', 'sso_subject'])
            .where('human_id', 'in', humanIds)
            .execute();
    const passkeys = new Set(
      humanIds.length === 0
        ? []
        : (await db.selectFrom('webauthn_credentials').select('human_id').where('human_id', 'in', humanIds).execute()).map(
            (r) => r.human_id,
          ),
    );
    const credBy = new Map(creds.map((c) => [c.human_id, c]));
    const last = async (action: string) => {
      let q = db.selectFrom('audit_events').select(['seq', 'at', 'at_text', 'outcome', 'details']).where('action', '=', action);
      if (orgId) q = q.where((eb) => eb.or([idIs('org_id', orgId), eb('org_id', 'is', null)]));
      const r = await q.orderBy('seq', 'desc').limit(1).executeTakeFirst();
      return r && { ...r, at: atOfStored(r.at, r.at_text) };
    };
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
      format: 'mailward-compliance-report/1' as const,
      generated_at: now.toISOString(),
      scope: { org_id: orgId ?? null },
      encryption_at_rest: {
        algorithm: 'AES-256-GCM envelope encryption, data keys wrapped under the key ring',
        key_encryption_keys: ring.map((k) => ({
          version: k.version,
          fingerprint: k.fingerprint,
          created_at: k.created_at,
          age_days: ageDays(now, k.created_at),
          retired_at: k.retired_at,
        })),
        sealed_values_by_version: !orgId && sealedByVersion ? await sealedByVersion() : null,
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

  type Report = Awaited<ReturnType<typeof build>>;
  /** The signature: the report's SHA-256 in audit event `ev`, and that event's RFC 6962 inclusion proof under a signed checkpoint. */
  const signed = async (report: Report, reportHash: string, ev: { seq: number; hash: string }) => {
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
  const hashOf = (report: Report) => createHash('sha256').update(JSON.stringify(report)).digest('hex');

  /** Builds, records and signs the store-wide report (the CLI). The audit event and the checkpoint are written; nothing else changes. */
  const generate = async () => {
    const report = await build();
    const reportHash = hashOf(report);
    const ev = await audit.recordSequenced({
      action: 'compliance.reported',
      actor: systemActor(),
      details: { report_sha256: reportHash, format: report.format },
    });
    return signed(report, reportHash, ev);
  };

  /**
   * The caller's organisation's evidence pack (REST `GET /v1/compliance/report`, the console). Privacy officers and
   * admins only: anyone else gets 404, audited as `denied`. Writes a `compliance.reported` audit event in the caller's
   * name (the report's hash, no content) and a checkpoint; nothing else changes.
   */
  const generateFor = async (ctx: RequestContext) => {
    if (!guard) throw new Error('compliance report: no guard wired for organisation reports');
    return guard.read(ctx, 'compliance.reported', null, async () => {
      requireOfficer(ctx);
      const report = await build(ctx.principal.orgId);
      const reportHash = hashOf(report);
      const { id } = await guard.change(ctx, 'compliance.reported', null, (tx) =>
        guard.recordIn(tx, ctx, 'compliance.reported', null, { report_sha256: reportHash, format: report.format, scope: 'organization' }),
      );
      // Its seq and chain hash come with integration (src/audit/integrator.ts).
      return signed(report, reportHash, await audit.sequenced(id));
    });
  };

  return { build, generate, generateFor };
};

export type ComplianceReport = ReturnType<typeof createComplianceReport>;
