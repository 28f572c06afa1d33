import { unprocessable } from '../kernel/errors.js';
import type { Db } from '../store/db.js';
import { chainedOfRow, type EventRow } from './audit-chain.js';
import { eventRows, selectChainRows, selectEventRows, seqAtBound } from './event-rows.js';
import type { Boundary, ExportEvent } from './audit-verify.js';
import type { CheckpointService } from './checkpoint-service.js';
import type { TreeStore } from './tree-store.js';

export const EXPORT_FORMAT = 'mailward-audit-export/1';

const exportEvent = (r: EventRow): ExportEvent => ({
  type: 'event',
  ...chainedOfRow(r),
  prev_hash: r.prev_hash,
  hash: r.hash,
});

type Deps = { db: Db; tree: TreeStore; checkpoints: CheckpointService; sync?: () => Promise<void> };

export type ExportOptions = {
  since?: string;
  until?: string;
  write: (line: string) => void | Promise<void>;
  onProgress?: (done: number, total: number) => void;
};

/**
 * Streams the log as JSONL (45 CFR 164.312(b): auditors get the whole trail):
 * a header with the tree prefix before the first exported event, every event
 * in the seq range [first at >= since, last at < until], the stored
 * checkpoints inside that range, and last a checkpoint signed at the final
 * exported seq. `mailward audit verify --file` (or any RFC 6962 + C2SP
 * implementation) checks it with only the public key.
 * Throws 422 export_empty. Signs (and stores) one checkpoint; audits nothing
 * itself: the CLI records `audit.exported`.
 */
export const createAuditExporter = ({ db, tree, checkpoints, sync }: Deps) => {
  const exportLog = async (
    o: ExportOptions,
  ): Promise<{ events: number; first_seq: number; last_seq: number; tree_size: number; root_hash: string }> => {
    // What was committed before the export is in it: wait for its integration.
    await sync?.();
    const floor = await tree.purgedThrough();
    const head = await tree.headSeq();
    let first = floor + 1;
    let last = head;
    if (o.since) {
      const s = await seqAtBound(db, 'min', '>=', o.since);
      first = Math.max(first, s ?? head + 1);
    }
    if (o.until) {
      const s = await seqAtBound(db, 'max', '<', o.until);
      last = Math.min(last, s ?? 0);
    }
    if (last < first) throw unprocessable('export_empty', 'No audit events fall in that time range.');

    // Sign first: this checks the chain up to `last` (fail closed) before any line is written.
    const final = await checkpoints.createAt(last);
    const prefixSize = first - 1;
    const [firstRow] = await eventRows(selectEventRows(db).where('e.seq', '=', first));
    if (!firstRow) throw unprocessable('export_empty', 'No audit events fall in that time range.');
    // Right after a retention purge the purged leaves are gone: the purge recorded this very boundary.
    const purge =
      prefixSize === floor && floor > 0
        ? await db.selectFrom('audit_purges').select('boundary').orderBy('through_seq', 'desc').limit(1).executeTakeFirst()
        : undefined;
    const prefix: Boundary = purge
      ? (JSON.parse(purge.boundary) as Boundary)
      : {
          size: prefixSize,
          compact_range: (await tree.compactRangeAt(prefixSize)).map((b) => b.toString('hex')),
          anchor_hash: firstRow.prev_hash,
          anchor_proof: prefixSize > 0 ? (await tree.inclusionProof(prefixSize - 1, prefixSize)).map((b) => b.toString('hex')) : [],
        };
    await o.write(
      JSON.stringify({
        type: 'header',
        format: EXPORT_FORMAT,
        origin: final.origin,
        verifier_key: final.verifier_key,
        key_id: final.key_id,
        first_seq: first,
        last_seq: last,
        since: o.since ?? null,
        until: o.until ?? null,
        prefix,
        canonicalization:
          'hash = SHA-256(prev_hash bytes || RFC 8785 JCS of the event without prev_hash and hash); leaves = RFC 6962 leaf hashes of the 32 hash bytes in seq order',
      }),
    );
    let after = prefixSize;
    let done = 0;
    const total = last - prefixSize;
    // Each line's prev_hash is the hash of the line before it (not stored: migration 0042), from the first row's on.
    let prev = firstRow.prev_hash;
    while (after < last) {
      const rows = await eventRows(selectChainRows(db).where('e.seq', '>', after).where('e.seq', '<=', last).orderBy('e.seq').limit(2000));
      if (rows.length === 0) break;
      for (const r of rows) {
        r.prev_hash = prev;
        prev = r.hash;
        await o.write(JSON.stringify(exportEvent(r)));
      }
      done += rows.length;
      after = Number(rows.at(-1)!.seq);
      o.onProgress?.(done, total);
    }
    const inRange = await db
      .selectFrom('audit_checkpoints')
      .select('tree_size')
      .where('tree_size', '>', prefixSize)
      .where('tree_size', '<', last)
      .orderBy('tree_size')
      .execute();
    for (const c of inRange) {
      const cp = await checkpoints.get(Number(c.tree_size));
      if (cp) await o.write(JSON.stringify({ type: 'checkpoint', ...cp }));
    }
    await o.write(JSON.stringify({ type: 'checkpoint', ...final }));
    return { events: done, first_seq: first, last_seq: last, tree_size: final.tree_size, root_hash: final.root_hash };
  };
  return { exportLog };
};

export type AuditExporter = ReturnType<typeof createAuditExporter>;
