import type { Clock } from '../kernel/clock.js';
import type { OpsSnapshot } from '../http/metrics.js';
import { pendingReasonCodes } from '../oversight/approvals-repo.js';
import { outboxBacklog } from '../queue/outbox-repo.js';
import type { Db } from '../store/db.js';

const ageSeconds = (now: number, iso: string | null | undefined) => (iso ? Math.max(0, (now - Date.parse(iso)) / 1000) : null);

/**
 * The store-side gauges of /metrics: a handful of indexed aggregate queries
 * (outbox by status, pending approvals, the audit head and the last
 * checkpoint), cached for `cacheMs` so any number of scrapers costs the store
 * at most one read per interval.
 */
export const createOpsSnapshot = (d: {
  db: Db;
  clock: Clock;
  signingQueue: () => number;
  analysisQueue: () => number;
  cacheMs?: number;
}): (() => Promise<OpsSnapshot>) => {
  const cacheMs = d.cacheMs ?? 5000;
  let cached: { at: number; value: Promise<Omit<OpsSnapshot, 'signingQueue' | 'analysisQueue'>> } | null = null;

  const read = async () => {
    const now = d.clock.now().getTime();
    // Outbox states: a pending job with no attempt yet is queued, one that has been tried is deferred (outbox_due_idx).
    const rows = await outboxBacklog(d.db);
    const outbox: OpsSnapshot['outbox'] = [];
    for (const r of rows) {
      const state = r.status === 'sending' ? 'sending' : (r.phase as 'queued' | 'deferred');
      const prev = outbox.find((o) => o.state === state);
      const age = ageSeconds(now, r.oldest as string);
      if (prev) {
        prev.count += Number(r.n);
        prev.oldestAgeSeconds = Math.max(prev.oldestAgeSeconds ?? 0, age ?? 0);
      } else outbox.push({ state, count: Number(r.n), oldestAgeSeconds: age });
    }
    // Reasons are a JSON array per approval: counted here, over the pending ones only (approvals_expiry_idx).
    const pending = await pendingReasonCodes(d.db);
    const byReason = new Map<string, { count: number; oldest: string }>();
    for (const { codes, ...a } of pending) {
      for (const code of new Set(codes.length > 0 ? codes : ['none'])) {
        const label = /^[a-z0-9_]{1,40}$/.test(code) ? code : 'other';
        const e = byReason.get(label);
        if (!e) byReason.set(label, { count: 1, oldest: a.created_at });
        else {
          e.count++;
          if (a.created_at < e.oldest) e.oldest = a.created_at;
        }
      }
    }
    const head = await d.db.selectFrom('audit_head').select('seq').executeTakeFirst();
    const cp = await d.db.selectFrom('audit_checkpoints').select('at').orderBy('tree_size', 'desc').limit(1).executeTakeFirst();
    return {
      outbox,
      approvals: [...byReason].map(([reason, e]) => ({ reason, count: e.count, oldestAgeSeconds: ageSeconds(now, e.oldest) })),
      auditEvents: Number(head?.seq ?? 0),
      lastCheckpointAgeSeconds: ageSeconds(now, cp?.at),
    };
  };

  return async () => {
    if (!cached || Date.now() - cached.at > cacheMs) {
      const value = read();
      cached = { at: Date.now(), value };
      // A failed read is not cached: the next scrape asks again.
      value.catch(() => {
        if (cached?.value === value) cached = null;
      });
    }
    return { ...(await cached.value), signingQueue: d.signingQueue(), analysisQueue: d.analysisQueue() };
  };
};
