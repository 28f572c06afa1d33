import { sql } from 'kysely';
import type { EventFeed } from '../events/event-feed.js';
import type { Logger } from '../kernel/log.js';
import type { ReviewNotice } from '../oversight/review-notifications.js';
import type { Db } from '../store/db.js';

type Deps = {
  db: Db;
  feed: Pick<EventFeed, 'subscribe' | 'head' | 'read'>;
  /** The notices' outbound path (notifications@, see review-notices.ts). */
  send: (n: ReviewNotice) => Promise<unknown>;
  logger: Logger;
  consoleUrl: string | null;
};

/**
 * Tells an organisation's admins by email when an endpoint was disabled after sustained failure (the
 * `webhook.disabled` domain event). Woken by the event feed; each event is mailed once across processes: the
 * process that records `webhook-disabled-notice:<event id>` in settings first sends it. The mail names the
 * endpoint id and the failure count, never its URL (it may hold a token) or anything of a message.
 */
export const startWebhookDisabledNotices = ({ db, feed, send, logger, consoleUrl }: Deps) => {
  const cursors = new Map<string, number>();
  let stopped = false;
  const ready = (async () => {
    for (const o of await db.selectFrom('organizations').select('id').execute()) cursors.set(o.id, await feed.head(o.id));
  })();

  const claim = async (eventId: string) => {
    const r = await sql`insert into settings (key, value) values (${`webhook-disabled-notice:${eventId}`}, ${new Date().toISOString()})
                         on conflict (key) do nothing`.execute(db);
    return Number(r.numAffectedRows ?? 0) === 1;
  };

  const notify = async (orgId: string) => {
    await ready;
    const after = cursors.get(orgId) ?? 0;
    const events = await feed.read({ orgId, after, limit: 100, types: ['webhook.disabled'] });
    const head = await feed.head(orgId);
    cursors.set(orgId, Math.max(head, after));
    if (events.length === 0) return;
    const admins = (
      await db.selectFrom('humans').select(['email', 'roles']).where('org_id', '=', orgId).where('is_active', '=', 1).execute()
    ).filter((h) => (JSON.parse(h.roles) as string[]).includes('admin'));
    for (const e of events) {
      if (!(await claim(e.id))) continue;
      const id = String(e.data.webhook_id ?? '');
      const text = [
        `The webhook endpoint ${id} was disabled after sustained delivery failures (${String(e.data.failures ?? '?')} in a row).`,
        'Its waiting deliveries were cancelled; events after it are kept and are sent again once it is enabled.',
        `Fix the receiver, then enable it: PATCH /v1/webhooks/${id} {"status":"active"}, and replay what it missed: POST /v1/webhooks/${id}/replay.`,
        ...(consoleUrl ? [`Console: ${consoleUrl}/console`] : []),
      ].join('\n');
      for (const a of admins) {
        await send({ orgId, to: a.email, subject: `Mailward: webhook ${id} disabled`, text }).catch((err) =>
          logger.error({ err: { type: (err as Error)?.name }, event: e.id }, 'webhook-disabled notice failed'),
        );
      }
    }
  };

  const unsubscribe = feed.subscribe((w) => {
    if (stopped) return;
    const orgs = w === '*' ? [...cursors.keys()] : w.type === 'webhook.disabled' ? [w.orgId] : [];
    for (const o of orgs)
      notify(o).catch((err) => logger.error({ err: { type: (err as Error)?.name } }, 'webhook-disabled notices failed'));
  });
  return () => {
    stopped = true;
    unsubscribe();
  };
};
