import { createHash } from 'node:crypto';
import { AppError } from '../kernel/errors.js';
import type { Db, Executor } from '../store/db.js';
import { canonicalOfRow, chainedOfRow, type EventRow } from './audit-chain.js';
import { hexOfStored, idOfStored } from './audit-columns.js';
import { eventRows, idIs, selectEventRows } from './event-rows.js';
import { canonicalJson } from './canonical.js';
import type { CheckpointService } from './checkpoint-service.js';
import type { TreeStore } from './tree-store.js';
import { type EventHashRef, eventHashRef } from './integrator.js';

/**
 * Per-message transparency receipts: the `email.receipt` audit event written
 * with each delivery (it holds only hashes: of the Message-ID, the relaxed body,
 * the X-Agent-Identity token and the submission, approval and delivery events),
 * proved included under a signed, witness-cosigned checkpoint as a
 * c2sp.org/tlog-proof@v1. The proof's `extra` line carries what the leaf is
 * hashed from (the previous chain hash and the event's RFC 8785 form), so a
 * verifier rebuilds the leaf itself: leaf = SHA-256(prev_hash || event).
 */
export const RECEIPT_ACTION = 'email.receipt';
export const TLOG_PROOF_HEADER = 'c2sp.org/tlog-proof@v1';

const sha256Hex = (s: string | Buffer) => createHash('sha256').update(s).digest('hex');

/** The receipt's public key: hex SHA-256 of the Message-ID field value (with its angle brackets). */
export const messageIdHash = (messageId: string) => sha256Hex(messageId.trim());

/** The chain hashes of a target's successful events with these actions (oldest first): what a receipt refers to. */
export const eventHashesOf = async (ex: Executor, targetId: string, actions: string[]) =>
  (
    await ex
      .selectFrom('audit_events')
      .select(['action', 'seq', 'hash'])
      .where(idIs('target_id', targetId))
      .where('action', 'in', actions)
      .where('outcome', '=', 'success')
      .orderBy('seq')
      .execute()
  ).map((r) => ({ ...r, hash: hexOfStored(r.hash) }));

/**
 * What a receipt refers to: the chain hashes of a target's successful events with these actions, oldest
 * first, the integrated ones as hashes and the pending ones (committed, not yet sequenced) as references
 * the integrator resolves (eventHashRef). Read in the caller's transaction.
 */
export const eventRefsOf = async (ex: Executor, targetId: string, actions: string[]): Promise<{ hash: string | EventHashRef }[]> => {
  // Pending first: an event integrated between the two reads is then seen in both (and counted once),
  // never in neither (the integrator moves a row from one table to the other in one commit).
  const pending = await ex
    .selectFrom('audit_pending')
    .select(['id'])
    .where('target_id', '=', targetId)
    .where('action', 'in', actions)
    .where('outcome', '=', 'success')
    .orderBy('pid')
    .execute();
  const done = await ex
    .selectFrom('audit_events')
    .select(['id', 'hash'])
    .where(idIs('target_id', targetId))
    .where('action', 'in', actions)
    .where('outcome', '=', 'success')
    .orderBy('seq')
    .execute();
  const seen = new Set(done.map((r) => idOfStored(r.id)));
  return [
    ...done.map((r) => ({ hash: hexOfStored(r.hash) })),
    ...pending.filter((r) => !seen.has(r.id)).map((r) => ({ hash: eventHashRef(r.id) })),
  ];
};

/** The exact text the event's chain hash covers (the spliced form, or the generic one for older rows). */
const hashedText = (r: EventRow): string => {
  const fast = canonicalOfRow(r);
  if (sha256Hex(Buffer.concat([Buffer.from(r.prev_hash, 'hex'), Buffer.from(fast, 'utf8')])) === r.hash) return fast;
  return canonicalJson(chainedOfRow(r));
};

type Deps = { db: Db; tree: TreeStore; checkpoints: CheckpointService; sync?: () => Promise<void> };

export const createReceiptService = ({ db, tree, checkpoints, sync }: Deps) => {
  /**
   * The tlog-proof of the message whose Message-ID hashes to `hash`. Throws 404
   * receipt_not_found when there is none, 409 receipt_pending (temporary) until a
   * checkpoint covers it. Reads only hashes; writes nothing.
   */
  const proofFor = async (hash: string): Promise<string> => {
    await sync?.();
    const [row] = await eventRows(
      selectEventRows(db).where(idIs('e.target_id', hash)).where('e.action', '=', RECEIPT_ACTION).orderBy('e.seq', 'desc').limit(1),
    );
    if (!row) throw new AppError('receipt_not_found', 404, 'No receipt for that message.');
    const seq = Number(row.seq);
    const cp = await checkpoints.latest();
    if (!cp || cp.tree_size < seq) {
      throw new AppError('receipt_pending', 409, 'The delivery is not yet under a signed checkpoint; retry after the next one.', {
        temporary: true,
      });
    }
    const proof = await tree.inclusionProof(seq - 1, cp.tree_size);
    const extra = Buffer.from(JSON.stringify({ prev_hash: row.prev_hash, event: hashedText(row) }), 'utf8');
    return [
      TLOG_PROOF_HEADER,
      `extra ${extra.toString('base64')}`,
      `index ${seq - 1}`,
      ...proof.map((h) => h.toString('base64')),
      '',
      cp.cosigned_note ?? cp.note,
    ].join('\n');
  };

  return { proofFor };
};

export type ReceiptService = ReturnType<typeof createReceiptService>;
