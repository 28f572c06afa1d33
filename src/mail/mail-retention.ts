import type { AuditService } from '../audit/audit-service.js';
import type { Guard } from '../identity/guard.js';
import { type RequestContext, requireAnyRole, systemActor } from '../identity/principal.js';
import type { Clock } from '../kernel/clock.js';
import type { KeyRing } from '../kernel/crypto/keyring.js';
import { conflict, isAppError, notFound, unprocessable } from '../kernel/errors.js';
import { newId } from '../kernel/ids.js';
import { startPeriodic } from '../kernel/schedule.js';
import type { Logger } from '../kernel/log.js';
import { contactHash } from '../phi/consent-service.js';
import type { Db } from '../store/db.js';
import type { MessageRecord } from '../store/records.js';
import type { MailLegalHoldsTable } from '../store/schema.js';
import { openContent, sealContent } from './message-store.js';
import { addMessageEvent, purgeCandidates, purgeContent, threadExists } from './messages-repo.js';
import type { MessageContent } from './mime.js';

/** 45 CFR 164.316(b)(2)(i) and 164.530(j)(2): six years from the last change is the floor. */
export const MIN_MESSAGE_RETENTION_DAYS = 2190;

/** Statuses a message no longer leaves on its own: only these are purged (never one waiting, queued or sending). */
const SETTLED = ['delivered', 'bounced', 'failed', 'cancelled', 'rejected', 'received', 'quarantined'];

/** What a purged message's sealed content becomes: nothing of the original survives. */
const TOMBSTONE: MessageContent = {
  from: { name: '', address: '' },
  to: [],
  cc: [],
  bcc: [],
  subject: '',
  text: null,
  html: null,
  attachments: [],
};

export type HoldScope = MailLegalHoldsTable['scope'];
export type NewMailHold =
  | { scope: 'mailbox'; mailbox_id: string; matter: string }
  | { scope: 'thread'; thread_id: string; matter: string }
  | { scope: 'contact'; address: string; matter: string };

export type MailPurgeResult = {
  dry_run: boolean;
  /** Messages whose content was (or would be) destroyed. */
  purged: number;
  /** Messages past retention kept because a legal hold covers them. */
  held: number;
  organizations: { org_id: string; cutoff: string; purged: number; held: number }[];
};

type Deps = { db: Db; ring: KeyRing; clock: Clock; guard: Guard; audit: Pick<AuditService, 'record'> };

const holdView = (h: MailLegalHoldsTable) => ({
  id: h.id,
  scope: h.scope,
  // A contact hold shows the contact's hash, never the address (it was given once, when the hold was placed).
  ...(h.scope === 'mailbox'
    ? { mailbox_id: h.scope_value }
    : h.scope === 'thread'
      ? { thread_id: h.scope_value }
      : { contact_hash: h.scope_value }),
  matter: h.matter,
  created_by: h.created_by,
  created_at: h.created_at,
  released_by: h.released_by,
  released_at: h.released_at,
});

/**
 * Message retention: a policy per organisation (days after a message's last status change, at least six years),
 * legal holds on a mailbox, a thread or a contact address (and the organisation-wide audit legal holds), and an
 * audited purge that destroys sealed content past retention while keeping the row's metadata and hashes, so the
 * audit log, whose events hold only hashes, still verifies.
 */
export const createMailRetention = ({ db, ring, clock, guard, audit }: Deps) => {
  const now = () => clock.now().toISOString();
  const OFFICERS = ['admin', 'privacy_officer'] as const;

  /** The organisation's policy (admin, privacy officer, auditor). */
  const policy = (ctx: RequestContext) =>
    guard.read(ctx, 'mail.retention.read', null, async () => {
      requireAnyRole(ctx, [...OFFICERS, 'auditor']);
      const org = await db
        .selectFrom('organizations')
        .select('message_retention_days')
        .where('id', '=', ctx.principal.orgId)
        .executeTakeFirst();
      if (!org) throw notFound('organization');
      return { message_retention_days: Number(org.message_retention_days), minimum_days: MIN_MESSAGE_RETENTION_DAYS };
    });

  /** Sets the retention period (admin, privacy officer); below six years is 422 retention_too_short. Audited with before and after. */
  const setPolicy = (ctx: RequestContext, days: number) =>
    guard.change(ctx, 'mail.retention.changed', { type: 'organization', id: ctx.principal.orgId }, async (tx) => {
      requireAnyRole(ctx, [...OFFICERS]);
      if (days < MIN_MESSAGE_RETENTION_DAYS)
        throw unprocessable(
          'retention_too_short',
          `Messages are kept at least ${MIN_MESSAGE_RETENTION_DAYS} days (six years, 45 CFR 164.316(b)(2)(i)).`,
        );
      const before = await tx
        .selectFrom('organizations')
        .select('message_retention_days')
        .where('id', '=', ctx.principal.orgId)
        .executeTakeFirst();
      if (!before) throw notFound('organization');
      await tx.updateTable('organizations').set({ message_retention_days: days }).where('id', '=', ctx.principal.orgId).execute();
      await guard.recordIn(
        tx,
        ctx,
        'mail.retention.changed',
        { type: 'organization', id: ctx.principal.orgId },
        {
          before: Number(before.message_retention_days),
          after: days,
        },
      );
      return { message_retention_days: days, minimum_days: MIN_MESSAGE_RETENTION_DAYS };
    });

  /**
   * Places a legal hold on a mailbox, a thread or a contact address (admin, privacy officer). 404 for a mailbox or
   * thread that is not the organisation's. The contact is stored and audited as its hash only.
   */
  const placeHold = (ctx: RequestContext, h: NewMailHold) =>
    guard.change(ctx, 'mail.legal_hold.placed', null, async (tx) => {
      requireAnyRole(ctx, [...OFFICERS]);
      const orgId = ctx.principal.orgId;
      let value: string;
      if (h.scope === 'mailbox') {
        const mb = await tx
          .selectFrom('mailboxes')
          .select('id')
          .where('id', '=', h.mailbox_id)
          .where('org_id', '=', orgId)
          .executeTakeFirst();
        if (!mb) throw notFound('mailbox');
        value = mb.id;
      } else if (h.scope === 'thread') {
        if (!(await threadExists(tx, orgId, h.thread_id))) throw notFound('thread');
        value = h.thread_id;
      } else value = contactHash(h.address);
      const row: MailLegalHoldsTable = {
        id: newId('legalHold'),
        org_id: orgId,
        scope: h.scope,
        scope_value: value,
        matter: h.matter,
        created_by: ctx.principal.id,
        created_at: now(),
        released_by: null,
        released_at: null,
      };
      await tx.insertInto('mail_legal_holds').values(row).execute();
      await guard.recordIn(tx, ctx, 'mail.legal_hold.placed', { type: 'legal_hold', id: row.id }, { scope: row.scope, scope_value: value });
      return holdView(row);
    });

  const listHolds = (ctx: RequestContext) =>
    guard.read(ctx, 'mail.legal_hold.list', null, async () => {
      requireAnyRole(ctx, [...OFFICERS, 'auditor']);
      const rows = await db
        .selectFrom('mail_legal_holds')
        .selectAll()
        .where('org_id', '=', ctx.principal.orgId)
        .orderBy('created_at')
        .orderBy('id')
        .execute();
      return rows.map(holdView);
    });

  /** Releases a hold (admin, privacy officer); 409 legal_hold_released when it was released already. */
  const releaseHold = (ctx: RequestContext, id: string) =>
    guard.change(ctx, 'mail.legal_hold.released', { type: 'legal_hold', id }, async (tx) => {
      requireAnyRole(ctx, [...OFFICERS]);
      const h = await tx
        .selectFrom('mail_legal_holds')
        .selectAll()
        .where('id', '=', id)
        .where('org_id', '=', ctx.principal.orgId)
        .executeTakeFirst();
      if (!h) throw notFound('legal hold');
      const at = now();
      const u = await tx
        .updateTable('mail_legal_holds')
        .set({ released_by: ctx.principal.id, released_at: at })
        .where('id', '=', id)
        .where('released_at', 'is', null)
        .executeTakeFirst();
      if (Number(u.numUpdatedRows) !== 1) throw conflict('legal_hold_released', 'This legal hold was released already.');
      await guard.recordIn(tx, ctx, 'mail.legal_hold.released', { type: 'legal_hold', id }, { scope: h.scope });
      return holdView({ ...h, released_by: ctx.principal.id, released_at: at });
    });

  /** Whether an active hold covers the message: mailbox, thread, or any address it names (opened to check). */
  const coveredBy = (holds: MailLegalHoldsTable[], m: MessageRecord): boolean => {
    if (
      holds.some(
        (h) => (h.scope === 'mailbox' && h.scope_value === m.mailbox_id) || (h.scope === 'thread' && h.scope_value === m.thread_id),
      )
    )
      return true;
    const contacts = new Set(holds.filter((h) => h.scope === 'contact').map((h) => h.scope_value));
    if (contacts.size === 0) return false;
    // Addresses are sealed with the content: a candidate past retention is opened to see whom it involves.
    const c = openContent(ring, m, m.content_sealed);
    return [c.from.address, ...c.to, ...c.cc, ...c.bcc].some((a) => a && contacts.has(contactHash(a)));
  };

  const BATCH = 100;

  /**
   * Destroys the sealed content of settled messages whose last status change is older than their organisation's
   * retention, except under a legal hold (a mailbox, thread or contact hold, or any active audit legal hold of
   * the organisation). Per message, in one transaction: the tombstone, a `content_purged` message event and an
   * `email.content_purged` audit event with the hashes that stay. `dryRun` only counts.
   */
  const purge = async (opts: { dryRun?: boolean } = {}): Promise<MailPurgeResult> => {
    const dryRun = !!opts.dryRun;
    const result: MailPurgeResult = { dry_run: dryRun, purged: 0, held: 0, organizations: [] };
    const orgs = await db.selectFrom('organizations').select(['id', 'message_retention_days']).orderBy('id').execute();
    for (const org of orgs) {
      const days = Math.max(MIN_MESSAGE_RETENTION_DAYS, Number(org.message_retention_days));
      const cutoff = new Date(clock.now().getTime() - days * 86_400_000).toISOString();
      const entry = { org_id: org.id, cutoff, purged: 0, held: 0 };
      const auditHold = await db
        .selectFrom('audit_legal_holds')
        .select('id')
        .where('org_id', '=', org.id)
        .where('released_at', 'is', null)
        .executeTakeFirst();
      const holds = await db
        .selectFrom('mail_legal_holds')
        .selectAll()
        .where('org_id', '=', org.id)
        .where('released_at', 'is', null)
        .execute();
      let after = '';
      for (;;) {
        const batch = await purgeCandidates(db, { orgId: org.id, cutoff, statuses: SETTLED, after, limit: BATCH });
        if (batch.length === 0) break;
        after = batch.at(-1)!.id;
        for (const m of batch) {
          if (auditHold || coveredBy(holds, m)) {
            entry.held++;
            continue;
          }
          if (dryRun) {
            entry.purged++;
            continue;
          }
          const at = now();
          const done = await db.transaction().execute(async (tx) => {
            if (!(await purgeContent(tx, m, sealContent(ring, m, TOMBSTONE).sealed, at))) return false;
            await addMessageEvent(tx, m.id, at, 'content_purged', { retention_days: days });
            await audit.record(tx, {
              action: 'email.content_purged',
              actor: systemActor(org.id),
              target: { type: 'email', id: m.id },
              contentHash: m.content_hash,
              details: { retention_days: days, last_change_at: m.updated_at, raw_hash: m.raw_hash, status: m.status },
            });
            return true;
          });
          if (done) entry.purged++;
        }
      }
      result.purged += entry.purged;
      result.held += entry.held;
      result.organizations.push(entry);
    }
    return result;
  };

  /** `mailward serve`: a first purge a minute after start, then daily. Returns a stop function. */
  const startPurgeScheduler = (opts: { logger?: Logger; firstAfterMs?: number; everyMs?: number } = {}) =>
    startPeriodic(
      async () => {
        const r = await purge();
        if (r.purged > 0 || r.held > 0) opts.logger?.info({ purged: r.purged, held: r.held }, 'message content past retention purged');
      },
      {
        firstAfterMs: opts.firstAfterMs ?? 60_000,
        everyMs: opts.everyMs ?? 86_400_000,
        onError: (e) => opts.logger?.error({ code: isAppError(e) ? e.code : 'unexpected' }, 'message retention purge failed'),
      },
    );

  return { policy, setPolicy, placeHold, listHolds, releaseHold, purge, startPurgeScheduler };
};

export type MailRetention = ReturnType<typeof createMailRetention>;
