import type { AuditService } from '../audit/audit-service.js';
import type { Guard } from '../identity/guard.js';
import { type RequestContext, requireAnyRole, systemActor } from '../identity/principal.js';
import type { Clock } from '../kernel/clock.js';
import type { Db } from '../store/db.js';
import { pendingCount, unescalatedExpiring } from './approvals-repo.js';
import { markDigest, markEscalated, prefsOf, putPrefs } from './review-notifications-repo.js';

/** The notice a reviewer gets: counts, ages and a link only (45 CFR 164.502(b): no PHI in a notification). */
export type ReviewNotice = { orgId: string; to: string; subject: string; text: string };

type Deps = {
  db: Db;
  guard: Guard;
  audit: Pick<AuditService, 'record'>;
  clock: Clock;
  /** Sends through Mailward's own outbound path from the organisation's system mailbox (wired by app/). */
  send: (n: ReviewNotice) => Promise<void>;
  /** The console's address for the link; null: the notice says where without a link. */
  consoleUrl: string | null;
  defaultBatchMinutes?: number;
  /** An approval this close to its expiry is escalated once (MAILWARD_APPROVAL_ESCALATE_SECONDS). */
  escalateSeconds: number;
};

export type NotificationPreference = { enabled: boolean; batch_minutes: number };

const minutes = (ms: number) => {
  const m = Math.max(0, Math.round(ms / 60_000));
  return m >= 120 ? `${Math.floor(m / 60)} h ${m % 60} min` : `${m} min`;
};

/**
 * Tells reviewers that something waits: a digest per reviewer at most every `batch_minutes` (default 15)
 * when approvals opened since the last one, the first of them waiting a whole batch window (so a burst
 * is one email), and an escalation when approvals come within `escalateSeconds` of expiring. Reviewers
 * may turn it off. The notices carry counts, the oldest age and a link: never a subject, address or id.
 */
export const createReviewNotifications = ({
  db,
  guard,
  audit,
  clock,
  send,
  consoleUrl,
  defaultBatchMinutes = 15,
  escalateSeconds,
}: Deps) => {
  const now = () => clock.now();
  const link = consoleUrl ? `${consoleUrl.replace(/\/$/, '')}/console/queue` : 'the reviewer console (/console/queue)';

  /** The caller's own preference (defaults when never set). Reviewers only; 404 otherwise. */
  const preference = async (ctx: RequestContext): Promise<NotificationPreference> => {
    requireAnyRole(ctx, ['reviewer'], 'notification preference');
    const p = await prefsOf(db, ctx.principal.id);
    return { enabled: p ? p.enabled === 1 : true, batch_minutes: p?.batch_minutes ?? defaultBatchMinutes };
  };

  /** Sets the caller's preference. Audits notification.preference.set. */
  const setPreference = (ctx: RequestContext, p: NotificationPreference) =>
    guard.change(ctx, 'notification.preference.set', { type: 'human', id: ctx.principal.id }, async (tx) => {
      requireAnyRole(ctx, ['reviewer'], 'notification preference');
      await putPrefs(tx, {
        human_id: ctx.principal.id,
        org_id: ctx.principal.orgId,
        enabled: p.enabled ? 1 : 0,
        batch_minutes: p.batch_minutes,
        last_digest_at: null,
        updated_at: now().toISOString(),
      });
      await guard.recordIn(tx, ctx, 'notification.preference.set', { type: 'human', id: ctx.principal.id }, { ...p });
      return p;
    });

  /** Reviewers of every organisation with their preference (defaults: on, every `defaultBatchMinutes`). */
  const reviewers = async () => {
    const rows = await db
      .selectFrom('humans as h')
      .leftJoin('reviewer_notification_prefs as p', 'p.human_id', 'h.id')
      .select(['h.id', 'h.org_id', 'h.email', 'h.roles', 'p.enabled', 'p.batch_minutes', 'p.last_digest_at'])
      .where('h.is_active', '=', 1)
      .execute();
    return rows
      .filter((r) => (JSON.parse(r.roles) as string[]).includes('reviewer') && r.enabled !== 0)
      .map((r) => ({ ...r, batch: r.batch_minutes ?? defaultBatchMinutes }));
  };

  const pendingSince = (orgId: string, since: string | null) => pendingCount(db, orgId, since);

  const record = (orgId: string, action: string, humanId: string, details: Record<string, unknown>) =>
    db
      .transaction()
      .execute((tx) => audit.record(tx, { action, actor: systemActor(orgId), target: { type: 'human', id: humanId }, details }));

  /**
   * One pass: digests that are due, then escalations. Returns how many notices were sent. A notice is
   * sent before its mark is written (at least once: a crash between the two repeats a count, never
   * loses one). Audits notification.digest_sent / notification.escalation_sent with the counts.
   */
  const runOnce = async (): Promise<number> => {
    const at = now();
    let sent = 0;
    const people = await reviewers();
    const orgs = new Set(people.map((p) => p.org_id));
    for (const p of people) {
      const fresh = await pendingSince(p.org_id, p.last_digest_at);
      if (fresh.n === 0 || !fresh.oldest) continue;
      // The window opens with the first new hold; the digest goes when it closes, with everything that came in it.
      if (at.getTime() - Date.parse(fresh.oldest) < p.batch * 60_000) continue;
      const all = await pendingSince(p.org_id, null);
      const text = `${fresh.n} new message${fresh.n === 1 ? '' : 's'} wait${fresh.n === 1 ? 's' : ''} for review; ${all.n} in all. The oldest has waited ${minutes(at.getTime() - Date.parse(all.oldest ?? fresh.oldest))}.\n\nOpen the queue: ${link}\n\nYou get this notice at most every ${p.batch} minutes; turn it off or change it on the console's home page.\n`;
      await send({ orgId: p.org_id, to: p.email, subject: `Mailward: ${fresh.n} new message${fresh.n === 1 ? '' : 's'} to review`, text });
      await db.transaction().execute(async (tx) => {
        await markDigest(tx, p.id, p.org_id, at.toISOString(), { batchMinutes: defaultBatchMinutes });
        await audit.record(tx, {
          action: 'notification.digest_sent',
          actor: systemActor(p.org_id),
          target: { type: 'human', id: p.id },
          details: { new_pending: fresh.n, pending: all.n },
        });
      });
      sent++;
    }
    for (const orgId of orgs) {
      const soon = await unescalatedExpiring(db, orgId, new Date(at.getTime() + escalateSeconds * 1000).toISOString(), 1000);
      if (soon.length === 0) continue;
      const mine = await db.transaction().execute((tx) =>
        markEscalated(
          tx,
          orgId,
          soon.map((s) => s.id),
          at.toISOString(),
        ),
      );
      if (mine.length === 0) continue;
      const first = soon.find((s) => mine.includes(s.id))!;
      for (const p of people.filter((x) => x.org_id === orgId)) {
        await send({
          orgId,
          to: p.email,
          subject: `Mailward: ${mine.length} message${mine.length === 1 ? '' : 's'} expire${mine.length === 1 ? 's' : ''} soon unreviewed`,
          text: `${mine.length} held message${mine.length === 1 ? '' : 's'} will expire unreviewed within ${minutes(escalateSeconds * 1000)}; the first in ${minutes(Date.parse(first.expires_at) - at.getTime())}. Expired mail is not sent.\n\nOpen the queue: ${link}?sort=expiring\n`,
        });
        await record(orgId, 'notification.escalation_sent', p.id, { expiring: mine.length });
        sent++;
      }
    }
    return sent;
  };

  /** Runs `runOnce` every `everyMs` (default a minute) in `serve`; returns the stop function. */
  const startScheduler = (opts: { logger?: { error: (o: object, msg: string) => void }; everyMs?: number } = {}) => {
    let running = false;
    const timer = setInterval(async () => {
      if (running) return;
      running = true;
      try {
        await runOnce();
      } catch (e) {
        opts.logger?.error({ code: (e as { code?: string }).code ?? 'unexpected' }, 'reviewer notifications failed');
      } finally {
        running = false;
      }
    }, opts.everyMs ?? 60_000);
    timer.unref();
    return () => clearInterval(timer);
  };

  return { preference, setPreference, runOnce, startScheduler };
};

export type ReviewNotifications = ReturnType<typeof createReviewNotifications>;
