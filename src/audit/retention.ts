import type { AuditLegalHoldsTable } from '../store/schema.js';
import type { Clock } from '../kernel/clock.js';
import { AppError, conflict, notFound } from '../kernel/errors.js';
import { newId } from '../kernel/ids.js';
import type { Db } from '../store/db.js';
import type { AuditActor, AuditService } from './audit-service.js';
import { hexOfStored, STORED_EVENT_TABLE } from './audit-columns.js';
import { seqAtBound } from './event-rows.js';
import type { Boundary } from './audit-verify.js';
import type { VerifyReport } from './audit-verify.js';
import type { CheckpointService } from './checkpoint-service.js';
import { BLOCK, type TreeStore } from './tree-store.js';

/** 45 CFR 164.316(b)(2)(i): documentation, audit trails included, is kept six years. */
export const MIN_RETENTION_DAYS = 2190;

export type LegalHold = AuditLegalHoldsTable;

export type PurgeResult = {
  purged: boolean;
  dry_run: boolean;
  cutoff: string;
  through_seq: number;
  deleted: number;
  checkpoint_size: number | null;
  reason?: string;
};

type Deps = {
  db: Db;
  clock: Clock;
  audit: Pick<AuditService, 'record' | 'recordAlone'>;
  tree: TreeStore;
  checkpoints: CheckpointService;
  verify: () => Promise<VerifyReport>;
  retentionDays: number;
};

export const createRetentionService = ({ db, clock, audit, tree, checkpoints, verify, retentionDays }: Deps) => {
  if (retentionDays < MIN_RETENTION_DAYS) throw new Error(`audit retention below ${MIN_RETENTION_DAYS} days`);

  const activeHolds = () => db.selectFrom('audit_legal_holds').selectAll().where('released_at', 'is', null).execute();

  const listHolds = (orgId: string): Promise<LegalHold[]> =>
    db.selectFrom('audit_legal_holds').selectAll().where('org_id', '=', orgId).orderBy('created_at').execute();

  /**
   * Places a legal hold: while any hold is active no event is purged, whatever
   * its age. Writes the hold and an `audit.legal_hold.placed` event together.
   */
  const placeHold = (
    actor: AuditActor & { id: string; orgId: string },
    matter: string,
    ctx: { requestId: string | null; clientIp: string | null },
  ): Promise<LegalHold> =>
    db.transaction().execute(async (tx) => {
      const hold: LegalHold = {
        id: newId('legalHold'),
        org_id: actor.orgId,
        matter,
        created_by: actor.id,
        created_at: clock.now().toISOString(),
        released_by: null,
        released_at: null,
      };
      await tx.insertInto('audit_legal_holds').values(hold).execute();
      await audit.record(tx, {
        action: 'audit.legal_hold.placed',
        actor,
        target: { type: 'legal_hold', id: hold.id },
        requestId: ctx.requestId,
        clientIp: ctx.clientIp,
      });
      return hold;
    });

  /** Releases a hold of the actor's organisation. Throws 404 not_found, 409 hold_released. Audited. */
  const releaseHold = (
    actor: AuditActor & { id: string; orgId: string },
    id: string,
    ctx: { requestId: string | null; clientIp: string | null },
  ): Promise<LegalHold> =>
    db.transaction().execute(async (tx) => {
      const hold = await tx
        .selectFrom('audit_legal_holds')
        .selectAll()
        .where('id', '=', id)
        .where('org_id', '=', actor.orgId)
        .executeTakeFirst();
      if (!hold) throw notFound('legal hold');
      if (hold.released_at) throw conflict('hold_released', 'This legal hold was already released.');
      const now = clock.now().toISOString();
      await tx.updateTable('audit_legal_holds').set({ released_at: now, released_by: actor.id }).where('id', '=', id).execute();
      await audit.record(tx, {
        action: 'audit.legal_hold.released',
        actor,
        target: { type: 'legal_hold', id },
        requestId: ctx.requestId,
        clientIp: ctx.clientIp,
      });
      return { ...hold, released_at: now, released_by: actor.id };
    });

  /**
   * The one path that deletes audit events: those older than the retention
   * period, rounded down to a whole Merkle block so every later proof stays
   * computable. Refused (and the refusal audited) while a legal hold is
   * active or if the log does not verify. Before deleting it signs a
   * checkpoint at the boundary and records the boundary (compact range and
   * anchor proof) so the rest verifies against that checkpoint. The delete,
   * the purge record and the `audit.purged` event commit together.
   * Throws 409 legal_hold_active, 409 audit_tampered.
   */
  const purge = async (actor: AuditActor, opts: { dryRun?: boolean } = {}): Promise<PurgeResult> => {
    const cutoff = new Date(clock.now().getTime() - retentionDays * 86_400_000).toISOString();
    const holds = await activeHolds();
    if (holds.length > 0) {
      if (!opts.dryRun) {
        await audit.recordAlone({
          action: 'audit.purge',
          actor,
          orgId: null,
          outcome: 'denied',
          details: { code: 'legal_hold_active', holds: holds.length, cutoff },
        });
      }
      throw conflict('legal_hold_active', `${holds.length} legal hold(s) active: nothing may be purged.`);
    }
    const floor = await tree.purgedThrough();
    const old = await seqAtBound(db, 'max', '<', cutoff);
    const through = Math.floor((old ?? 0) / BLOCK) * BLOCK;
    const nothing: PurgeResult = {
      purged: false,
      dry_run: !!opts.dryRun,
      cutoff,
      through_seq: floor,
      deleted: 0,
      checkpoint_size: null,
      reason: 'nothing past retention',
    };
    if (through <= floor) return nothing;
    if (opts.dryRun) return { ...nothing, through_seq: through, deleted: through - floor, reason: 'dry run' };

    const report = await verify();
    if (!report.ok) {
      await audit.recordAlone({
        action: 'audit.purge',
        actor,
        orgId: null,
        outcome: 'error',
        details: { code: 'audit_tampered', first_bad_seq: report.first_bad_seq },
      });
      throw new AppError(
        'audit_tampered',
        409,
        `The audit log does not verify (first bad seq ${report.first_bad_seq}); nothing was purged.`,
      );
    }
    const cp = await checkpoints.createAt(through);
    const anchor = await db.selectFrom('audit_events').select('hash').where('seq', '=', through).executeTakeFirstOrThrow();
    const boundary: Boundary = {
      size: through,
      compact_range: (await tree.compactRangeAt(through)).map((b) => b.toString('hex')),
      anchor_hash: hexOfStored(anchor.hash),
      anchor_proof: (await tree.inclusionProof(through - 1, through)).map((b) => b.toString('hex')),
    };
    const deleted = await db.transaction().execute(async (tx) => {
      await tx
        .insertInto('audit_purges')
        .values({
          id: newId('auditPurge'),
          through_seq: through,
          at: clock.now().toISOString(),
          cutoff,
          boundary: JSON.stringify(boundary),
        })
        .execute();
      // The append-only triggers let this DELETE through only up to the purge record just written. The stored rows
      // (migration 0048: `audit_events` is a view of them); their kinds and chains stay, like the chains always did.
      const r = await tx.deleteFrom(STORED_EVENT_TABLE).where('seq', '<=', through).executeTakeFirst();
      const n = Number(r.numDeletedRows);
      await audit.record(tx, {
        action: 'audit.purged',
        actor,
        orgId: null,
        details: {
          through_seq: through,
          deleted: n,
          cutoff,
          retention_days: retentionDays,
          checkpoint_size: cp.tree_size,
          checkpoint_root: cp.root_hash,
        },
      });
      return n;
    });
    return { purged: true, dry_run: false, cutoff, through_seq: through, deleted, checkpoint_size: cp.tree_size };
  };

  return { purge, placeHold, releaseHold, listHolds, activeHolds };
};

export type RetentionService = ReturnType<typeof createRetentionService>;
