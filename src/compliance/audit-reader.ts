import { canonicalJson } from '../audit/canonical.js';
import type { AuditLog } from '../audit/audit-log.js';
import type { AuditService } from '../audit/audit-service.js';
import { leafHash } from '../audit/merkle.js';
import type { Guard } from '../identity/guard.js';
import { actorOf, type RequestContext, requireAnyRole } from '../identity/principal.js';
import { decodeIntCursor, encodeCursor } from '../kernel/cursor.js';
import { sha256Hex } from '../kernel/crypto/hash.js';
import { notFound, unprocessable } from '../kernel/errors.js';

/** Who may read the audit trail (CONTRACT.md roles); verifying the whole log is for admins and auditors. */
const READERS = ['admin', 'auditor', 'privacy_officer'] as const;

export type AuditEventQuery = {
  actor_id?: string;
  action?: string;
  target_id?: string;
  since?: string;
  until?: string;
  cursor?: string;
  limit: number;
};

type Deps = { audit: AuditService; auditLog: AuditLog; guard: Guard };

/**
 * Reading the audit log on behalf of people (STYLE.md: a service above `audit/`, which stays a sink): who
 * may read, how a read is itself audited (45 CFR 164.312(b)), proofs against checkpoints, verification and
 * legal holds. REST calls it; the console and the privacy officer's tools will too.
 */
export const createAuditReader = ({ audit, auditLog, guard }: Deps) => {
  const humanActor = (ctx: RequestContext) => ({ ...actorOf(ctx), id: ctx.principal.id, orgId: ctx.principal.orgId });
  const reqInfo = (ctx: RequestContext) => ({ requestId: ctx.requestId, clientIp: ctx.clientIp });

  /**
   * One page of the organisation's events, oldest first. Throws 403 (role), 400 invalid_cursor. Writes
   * `audit.events.read` (which filters, as names and a hash; counts) in the transaction that reads the page.
   */
  const listEvents = async (ctx: RequestContext, q: AuditEventQuery) => {
    // The page shows every event committed before the request: wait for their sequence numbers (integrator.ts).
    await audit.sync();
    const events = await guard.change(
      ctx,
      'audit.events.read',
      null,
      async (tx) => {
        requireAnyRole(ctx, [...READERS]);
        const afterSeq = decodeIntCursor(q.cursor);
        const filters = {
          actor_id: q.actor_id ?? null,
          action: q.action ?? null,
          target_id: q.target_id ?? null,
          since: q.since ? new Date(q.since).toISOString() : null,
          until: q.until ? new Date(q.until).toISOString() : null,
        };
        // One row beyond the page tells whether another exists: a page that reached the end has no
        // next_cursor, although this read's own event now follows it (else paging would never end).
        const found = await audit.list(
          {
            orgId: ctx.principal.orgId,
            actorId: q.actor_id,
            action: q.action,
            targetId: q.target_id,
            since: filters.since ?? undefined,
            until: filters.until ?? undefined,
            afterSeq,
            limit: q.limit + 1,
          },
          tx,
        );
        const page = found.slice(0, q.limit);
        // Which filters, as a hash and their names: a target or actor id is no PHI, but a filter is what the reader looked for.
        await guard.recordIn(tx, ctx, 'audit.events.read', null, {
          filters: Object.entries(filters)
            .filter(([, v]) => v !== null)
            .map(([k]) => k),
          filter_hash: sha256Hex(canonicalJson({ ...filters, cursor: q.cursor ?? null, limit: q.limit })),
          count: page.length,
          first_seq: page[0]?.seq ?? null,
          last_seq: page.at(-1)?.seq ?? null,
        });
        return { page, more: found.length > q.limit };
      },
      { groupCommit: true },
    );
    const last = events.page.at(-1);
    return {
      events: events.page.map(({ org_id: _org, ...e }) => e),
      next_cursor: events.more && last ? encodeCursor(last.seq) : null,
    };
  };

  /** The latest signed checkpoint (signed now if events were appended since). */
  const checkpoint = (ctx: RequestContext) =>
    guard.read(ctx, 'audit.checkpoint.read', null, async () => {
      requireAnyRole(ctx, [...READERS]);
      return auditLog.checkpoints.current();
    });

  /**
   * RFC 6962 inclusion proof of one of the organisation's events (default: in the latest checkpoint). Throws
   * 404 (another organisation's or no such event), 422 tree_size_too_small. Writes `audit.proof.read` before
   * answering (fail closed).
   */
  const proof = async (ctx: RequestContext, seq: number, treeSize?: number) => {
    const proofTarget = { type: 'audit_event', id: String(seq) };
    const out = await guard.read(ctx, 'audit.proof.read', proofTarget, async () => {
      requireAnyRole(ctx, [...READERS]);
      const event = await audit.get(seq, ctx.principal.orgId);
      if (!event) throw notFound('audit event');
      // Default: the latest checkpoint (signed now if needed); an explicit size carries its checkpoint if one was signed.
      const cp = treeSize === undefined ? await auditLog.checkpoints.current() : await auditLog.checkpoints.get(treeSize);
      const size = treeSize ?? cp!.tree_size;
      if (size < seq) throw unprocessable('tree_size_too_small', 'tree_size must be at least the event seq.');
      const path = await auditLog.tree.inclusionProof(seq - 1, size);
      return {
        seq,
        leaf_index: seq - 1,
        tree_size: size,
        event_hash: event.hash,
        leaf_hash: leafHash(Buffer.from(event.hash, 'hex')).toString('hex'),
        audit_path: path.map((b) => b.toString('hex')),
        root_hash: cp ? cp.root_hash : (await auditLog.tree.rootAt(size)).toString('hex'),
        checkpoint: cp ?? null,
        // The event as stored, so a verifier recomputes event_hash from its fields instead of trusting it.
        event,
      };
    });
    // A transaction of its own: signing the default checkpoint above writes, so it cannot run inside one on SQLite.
    await guard.change(
      ctx,
      'audit.proof.read',
      proofTarget,
      (tx) => guard.recordIn(tx, ctx, 'audit.proof.read', proofTarget, { seq: out.seq, tree_size: out.tree_size }),
      { groupCommit: true },
    );
    return out;
  };

  /** RFC 6962 consistency proof between two tree sizes (second: the latest checkpoint). Throws 422 tree_size_order. */
  const consistency = (ctx: RequestContext, first: number, secondSize?: number) =>
    guard.read(ctx, 'audit.consistency.read', null, async () => {
      requireAnyRole(ctx, [...READERS]);
      const second = secondSize ?? (await auditLog.checkpoints.current()).tree_size;
      if (first > second) throw unprocessable('tree_size_order', 'first must not exceed second.');
      const p = await auditLog.tree.consistencyProof(first, second);
      return {
        first,
        second,
        first_root: (await auditLog.tree.rootAt(first)).toString('hex'),
        second_root: (await auditLog.tree.rootAt(second)).toString('hex'),
        proof: p.map((b) => b.toString('hex')),
      };
    });

  /** Recomputes the chain and tree and checks every checkpoint (admin, auditor); the check is itself audited (21 CFR 11.10(e)). */
  const verify = (ctx: RequestContext) =>
    guard.read(ctx, 'audit.verify', null, async () => {
      requireAnyRole(ctx, ['admin', 'auditor']);
      const r = await auditLog.verify();
      await audit.recordAlone({
        action: 'audit.verified',
        actor: actorOf(ctx),
        outcome: r.ok ? 'success' : 'error',
        ...reqInfo(ctx),
        details: { ok: r.ok, first_bad_seq: r.first_bad_seq, tree_size: r.tree_size },
      });
      return r;
    });

  const listHolds = (ctx: RequestContext) =>
    guard.read(ctx, 'audit.legal_hold.list', null, async () => {
      requireAnyRole(ctx, [...READERS]);
      const holds = await auditLog.retention.listHolds(ctx.principal.orgId);
      return holds.map(({ org_id: _o, ...h }) => h);
    });

  /** Places a legal hold (admin, privacy_officer): nothing is purged while one is active. */
  const placeHold = async (ctx: RequestContext, matter: string) => {
    const hold = await guard.read(ctx, 'audit.legal_hold.placed', null, async () => {
      requireAnyRole(ctx, ['admin', 'privacy_officer']);
      return auditLog.retention.placeHold(humanActor(ctx), matter, reqInfo(ctx));
    });
    const { org_id: _o, ...out } = hold;
    return out;
  };

  const releaseHold = async (ctx: RequestContext, id: string) => {
    const hold = await guard.read(ctx, 'audit.legal_hold.released', { type: 'legal_hold', id }, async () => {
      requireAnyRole(ctx, ['admin', 'privacy_officer']);
      return auditLog.retention.releaseHold(humanActor(ctx), id, reqInfo(ctx));
    });
    const { org_id: _o, ...out } = hold;
    return out;
  };

  return { listEvents, checkpoint, proof, consistency, verify, listHolds, placeHold, releaseHold };
};

export type AuditReader = ReturnType<typeof createAuditReader>;
