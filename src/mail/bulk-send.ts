import type { Guard } from '../identity/guard.js';
import { hasScope, type RequestContext } from '../identity/principal.js';
import { forbidden, isAppError } from '../kernel/errors.js';
import type { TemplatesService } from '../templates/templates-service.js';
import type { Db } from '../store/db.js';
import type { BulkInput, BulkResult } from './bulk-schemas.js';
import { visibleMailbox } from './mailbox-service.js';
import type { SendService } from './send-service.js';

type Deps = { db: Db; guard: Guard; mail: Pick<SendService, 'send'>; templates: Pick<TemplatesService, 'approvedVersionOf'> };

/** Rows between two yields of the event loop (and two progress reports): other requests keep being served. */
export const BULK_CHUNK = 200;

/** Rows of a chunk sent at once. */
const BULK_IN_FLIGHT = 4;

/**
 * Bulk sends of one template (README "Templates and bulk sends"): each row is one send of the send path
 * (`template_id` + its slots, its own Idempotency-Key, consent check, PHI screen, audit), so repeating a request
 * answers the same email ids and sends nothing twice, and a row's failure is that row's outcome, not the request's.
 */
export const createBulkSend = ({ db, guard, mail, templates }: Deps) => {
  /**
   * Sends `body.template_id` to every row, in chunks of BULK_CHUNK rows with BULK_IN_FLIGHT at once (each row its own short
   * transaction: the store's writer is never held for a whole request). Throws, for the whole request, 403
   * agent_required / scope_required, 404 mailbox or template, 409 template_not_approved; a row's own 4xx
   * (invalid_slot, no_consent, idempotency_key_reused, ...) is its outcome `refused` with the code. A 5xx or a
   * busy store stops the request: rows done so far are committed, and repeating the request (same keys)
   * completes it. Writes, besides each row's own events, one `email.bulk_submitted` audit event with counts.
   */
  const sendBulk = async (
    ctx: RequestContext,
    mailboxId: string,
    body: BulkInput,
    onProgress?: (done: number, total: number) => void,
  ): Promise<{ template_id: string; counts: { queued: number; pending_approval: number; refused: number }; results: BulkResult[] }> => {
    const target = { type: 'mailbox', id: mailboxId };
    const tpl = await guard.read(ctx, 'email.bulk_submitted', target, async () => {
      const p = ctx.principal;
      if (p.type !== 'agent') throw forbidden('agent_required', 'Only an agent key with mail:send can send; humans review.');
      if (!hasScope(p, 'mail:send')) throw forbidden('scope_required', 'This key lacks the mail:send scope.');
      await visibleMailbox(db, ctx, mailboxId);
      return templates.approvedVersionOf(db, ctx, body.template_id);
    });
    const results: BulkResult[] = new Array(body.rows.length);
    const counts = { queued: 0, pending_approval: 0, refused: 0 };
    const sendRow = async (i: number) => {
      const row = body.rows[i]!;
      try {
        const r = await mail.send(
          ctx,
          mailboxId,
          {
            to: row.to,
            ...(row.cc ? { cc: row.cc } : {}),
            template_id: body.template_id,
            slots: row.slots,
            ...(row.category ? { category: row.category } : {}),
            ...(body.tags ? { tags: body.tags } : {}),
          },
          row.idempotency_key,
        );
        results[i] = { row: i, idempotency_key: row.idempotency_key, status: r.status, email_id: r.id };
        if (r.status === 'pending_approval') counts.pending_approval++;
        else counts.queued++;
      } catch (e) {
        if (!isAppError(e) || e.status >= 500 || e.status === 429) throw e;
        results[i] = { row: i, idempotency_key: row.idempotency_key, status: 'refused', code: e.code, detail: e.detail };
        counts.refused++;
      }
    };
    // A key repeated within the request is sent after its first row, one at a time, so the first row always
    // wins (the send path's idempotency then answers the repeat with its message, or idempotency_key_reused).
    const seen = new Set<string>();
    const first: number[] = [];
    const repeats: number[] = [];
    for (const [i, row] of body.rows.entries()) {
      if (seen.has(row.idempotency_key)) repeats.push(i);
      else {
        seen.add(row.idempotency_key);
        first.push(i);
      }
    }
    // Chunk by chunk; inside a chunk a few rows are in flight at once (their round trips overlap on PostgreSQL;
    // SQLite's one writer takes them in turn).
    let done = 0;
    for (let start = 0; start < first.length; start += BULK_CHUNK) {
      const chunk = first.slice(start, start + BULK_CHUNK);
      let next = 0;
      let failure: unknown = null;
      const lane = async () => {
        while (next < chunk.length && failure === null) {
          const i = chunk[next++]!;
          try {
            await sendRow(i);
          } catch (e) {
            failure = e;
          }
        }
      };
      await Promise.all(Array.from({ length: BULK_IN_FLIGHT }, lane));
      if (failure !== null) throw failure;
      done += chunk.length;
      onProgress?.(done, body.rows.length);
      await new Promise((r) => setImmediate(r));
    }
    for (const i of repeats) await sendRow(i);
    if (repeats.length > 0) onProgress?.(body.rows.length, body.rows.length);
    await guard.change(ctx, 'email.bulk_submitted', target, (tx) =>
      guard.recordIn(tx, ctx, 'email.bulk_submitted', target, {
        template_id: body.template_id,
        template_version: tpl.version,
        rows: body.rows.length,
        ...counts,
        refused_codes: [...new Set(results.filter((r) => r.code).map((r) => r.code))].sort(),
      }),
    );
    return { template_id: body.template_id, counts, results };
  };

  return { sendBulk };
};

export type BulkSend = ReturnType<typeof createBulkSend>;
