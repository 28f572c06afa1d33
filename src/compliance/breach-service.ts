import type { Guard } from '../identity/guard.js';
import type { RequestContext } from '../identity/principal.js';
import type { Clock } from '../kernel/clock.js';
import { open, seal } from '../kernel/crypto/envelope.js';
import type { KeyRing } from '../kernel/crypto/keyring.js';
import { conflict, isAppError, notFound } from '../kernel/errors.js';
import { newId } from '../kernel/ids.js';
import { openContent } from '../mail/message-store.js';
import { breachCandidates, messageState } from '../mail/messages-repo.js';
import { macsFor } from '../mail/recipient-index.js';
import { contactHash, normaliseAddress } from '../phi/consent-service.js';
import type { ConsentService } from '../phi/consent-service.js';
import type { Db, Executor } from '../store/db.js';
import type { StoredPhiFinding } from '../store/records.js';
import type { BreachIncidentsTable } from '../store/schema.js';
import { requireOfficer } from './disclosures.js';

/** 45 CFR 164.404(b): individuals are notified without unreasonable delay and in no case later than 60 days after discovery. */
const NOTICE_DAYS = 60;
/** Reminders to privacy officers before the deadline (days). */
export const REMINDER_DAYS = [30, 14, 7, 1] as const;
/** 164.408(b): 500 or more affected individuals are reported to HHS at once (with the individual notices). */
const HHS_IMMEDIATE = 500;
const DAY_MS = 86_400_000;

export const individualAad = (incidentId: string, hash: string) => `mailward/breach-individual/v1|${incidentId}|${hash}`;

export type BreachScope = {
  since?: string;
  until?: string;
  mailbox_ids?: string[];
  agent_ids?: string[];
  recipients?: string[];
  message_ids?: string[];
  tags?: string[];
};

/** 164.402(2): the four factors of the risk assessment and its conclusion. */
export type RiskAssessment = {
  nature_and_extent: string;
  unauthorized_person: string;
  acquired_or_viewed: string;
  mitigation: string;
  low_probability_of_compromise: boolean;
};

/** 164.404(c)(1): what a notice must say; the types of PHI are filled in per individual. */
export type NoticeInput = {
  what_happened: string;
  breach_date: string;
  steps_individuals_should_take: string;
  what_we_are_doing: string;
  contact_procedures: string;
  subject?: string;
};

export type SendNotice = (orgId: string, officer: RequestContext, to: string, subject: string, text: string) => Promise<{ id: string }>;
export type RemindOfficer = (n: { orgId: string; to: string; subject: string; text: string }) => Promise<void>;

type Deps = {
  db: Db;
  guard: Guard;
  ring: KeyRing;
  clock: Clock;
  consent: Pick<ConsentService, 'consentFor'>;
  sendNotice: SendNotice;
  remind: RemindOfficer;
};

const parse = <T>(s: string | null, fallback: T): T => (s ? (JSON.parse(s) as T) : fallback);

const incidentOut = (r: BreachIncidentsTable, counts?: { individuals: number; email: number; notified: number }) => ({
  id: r.id,
  title: r.title,
  description: r.description,
  discovered_at: r.discovered_at,
  deadline_at: r.deadline_at,
  state: r.state,
  status: r.status,
  scope: parse<BreachScope | null>(r.scope, null),
  risk_assessment: parse<RiskAssessment | null>(r.risk_assessment, null),
  notice: parse<Record<string, unknown> | null>(r.notice, null),
  created_by: r.created_by,
  created_at: r.created_at,
  ...(counts ? { individuals: counts.individuals, email_allowed: counts.email, notified: counts.notified } : {}),
});

const phiTypesOf = (findings: readonly StoredPhiFinding[]): string[] => [...new Set(findings.map((f) => f.type).filter(Boolean))];

/**
 * The breach workbench (45 CFR 164.400-414) for privacy officers and admins (everyone else: 404). Every change and
 * every read of affected individuals is audited in its transaction; events carry counts and hashes, never addresses.
 */
export const createBreachService = ({ db, guard, ring, clock, consent, sendNotice, remind }: Deps) => {
  const load = async (ex: Executor, ctx: RequestContext, id: string) => {
    const r = await ex
      .selectFrom('breach_incidents')
      .selectAll()
      .where('id', '=', id)
      .where('org_id', '=', ctx.principal.orgId)
      .executeTakeFirst();
    if (!r) throw notFound('breach incident');
    return r;
  };
  const counts = async (ex: Executor, id: string) => {
    const rows = await ex.selectFrom('breach_individuals').select(['email_allowed', 'notified_at']).where('incident_id', '=', id).execute();
    return {
      individuals: rows.length,
      email: rows.filter((r) => r.email_allowed === 1).length,
      notified: rows.filter((r) => r.notified_at).length,
    };
  };
  const target = (id: string) => ({ type: 'breach_incident', id });

  const create = (ctx: RequestContext, body: { title: string; description: string; discovered_at: string; state?: string }) =>
    guard.change(ctx, 'breach.created', null, async (tx) => {
      requireOfficer(ctx);
      const at = clock.now().toISOString();
      const discovered = new Date(body.discovered_at);
      const row: BreachIncidentsTable = {
        id: newId('breach'),
        org_id: ctx.principal.orgId,
        title: body.title,
        description: body.description,
        discovered_at: discovered.toISOString(),
        deadline_at: new Date(discovered.getTime() + NOTICE_DAYS * DAY_MS).toISOString(),
        state: body.state ?? null,
        status: 'open',
        scope: null,
        risk_assessment: null,
        notice: null,
        created_by: ctx.principal.id,
        created_at: at,
        updated_at: at,
      };
      await tx.insertInto('breach_incidents').values(row).execute();
      await guard.recordIn(tx, ctx, 'breach.created', target(row.id), { discovered_at: row.discovered_at, deadline_at: row.deadline_at });
      return incidentOut(row, { individuals: 0, email: 0, notified: 0 });
    });

  const get = (ctx: RequestContext, id: string) =>
    guard.read(ctx, 'breach.read', target(id), async () => {
      requireOfficer(ctx);
      const r = await load(db, ctx, id);
      return incidentOut(r, await counts(db, id));
    });

  const list = (ctx: RequestContext) =>
    guard.read(ctx, 'breach.list', null, async () => {
      requireOfficer(ctx);
      const rows = await db
        .selectFrom('breach_incidents')
        .selectAll()
        .where('org_id', '=', ctx.principal.orgId)
        .orderBy('discovered_at', 'desc')
        .execute();
      return Promise.all(rows.map(async (r) => incidentOut(r, await counts(db, r.id))));
    });

  /**
   * Scopes the incident and derives the affected individuals: every outbound message matching all given filters
   * (time window on creation, mailboxes, agents, recipients through the recipient index, message ids, tags); each
   * of its recipients is an individual, with the PHI types stored for those messages. Content is opened only to
   * learn the addresses, which are kept sealed. Replaces an earlier scope (not once notices went out: 409).
   */
  const setScope = (ctx: RequestContext, id: string, scope: BreachScope) =>
    guard.change(ctx, 'breach.scoped', target(id), async (tx) => {
      requireOfficer(ctx);
      const inc = await load(tx, ctx, id);
      if (inc.notice) throw conflict('breach_notified', 'Notices went out already; the scope is fixed.');
      const orgId = ctx.principal.orgId;
      const macs = scope.recipients?.length ? (await Promise.all(scope.recipients.map((a) => macsFor(tx, ring, orgId, a)))).flat() : null;
      const candidates = await breachCandidates(tx, {
        orgId,
        since: scope.since ? new Date(scope.since).toISOString() : undefined,
        until: scope.until ? new Date(scope.until).toISOString() : undefined,
        mailboxIds: scope.mailbox_ids,
        agentIds: scope.agent_ids,
        messageIds: scope.message_ids,
        macs,
      });
      const wanted = scope.recipients?.length ? new Set(scope.recipients.map((a) => contactHash(a))) : null;
      const byContact = new Map<string, { address: string; phi: Set<string>; messages: string[] }>();
      let purged = 0;
      let messages = 0;
      for (const m of candidates) {
        if (scope.tags?.length) {
          const tags = new Set([...m.tags, ...m.system_tags]);
          if (!scope.tags.some((t) => tags.has(t))) continue;
        }
        messages++;
        if (m.content_purged_at) {
          purged++;
          continue;
        }
        const c = openContent(ring, m, m.content_sealed);
        for (const a of [...c.to, ...c.cc, ...(c.bcc ?? [])]) {
          const h = contactHash(a);
          if (wanted && !wanted.has(h)) continue;
          const e = byContact.get(h) ?? { address: normaliseAddress(a), phi: new Set<string>(), messages: [] };
          for (const t of phiTypesOf(m.phi_findings)) e.phi.add(t);
          e.messages.push(m.id);
          byContact.set(h, e);
        }
      }
      await tx.deleteFrom('breach_individuals').where('incident_id', '=', id).execute();
      const types = new Set<string>();
      let email = 0;
      for (const [h, e] of byContact) {
        const state = await consent.consentFor(orgId, e.address, tx);
        const allowed = state.status === 'granted';
        if (allowed) email++;
        for (const t of e.phi) types.add(t);
        await tx
          .insertInto('breach_individuals')
          .values({
            id: newId('breachIndividual'),
            incident_id: id,
            contact_hash: h,
            address_sealed: seal(ring, e.address, individualAad(id, h)),
            phi_types: JSON.stringify([...e.phi].sort()),
            message_ids: JSON.stringify(e.messages),
            email_allowed: allowed ? 1 : 0,
            notice_email_id: null,
            notified_at: null,
          })
          .execute();
      }
      const at = clock.now().toISOString();
      await tx
        .updateTable('breach_incidents')
        .set({ scope: JSON.stringify(scope), updated_at: at })
        .where('id', '=', id)
        .execute();
      await guard.recordIn(tx, ctx, 'breach.scoped', target(id), {
        filters: Object.keys(scope).filter((k) => scope[k as keyof BreachScope] !== undefined),
        messages,
        purged_messages: purged,
        individuals: byContact.size,
        email_allowed: email,
        phi_types: [...types].sort(),
      });
      return { messages, purged_messages: purged, individuals: byContact.size, email_allowed: email, phi_types: [...types].sort() };
    });

  const setRisk = (ctx: RequestContext, id: string, risk: RiskAssessment) =>
    guard.change(ctx, 'breach.risk_assessed', target(id), async (tx) => {
      requireOfficer(ctx);
      await load(tx, ctx, id);
      const at = clock.now().toISOString();
      const record = { ...risk, assessed_by: ctx.principal.id, assessed_at: at };
      await tx
        .updateTable('breach_incidents')
        .set({ risk_assessment: JSON.stringify(record), updated_at: at })
        .where('id', '=', id)
        .execute();
      await guard.recordIn(tx, ctx, 'breach.risk_assessed', target(id), {
        low_probability_of_compromise: risk.low_probability_of_compromise,
      });
      return record;
    });

  /** Delivery proof of a notice: the accepting attempt (relay's or MX's reply, host, time) from the message's own events. */
  const proofOf = async (ex: Executor, emailId: string | null) => {
    if (!emailId) return null;
    const m = await messageState(ex, emailId);
    const attempts = await ex
      .selectFrom('message_events')
      .select(['at', 'details'])
      .where('message_id', '=', emailId)
      .where('type', '=', 'delivery_attempted')
      .orderBy('at')
      .execute();
    const accepted = attempts
      .map((a): Record<string, unknown> => ({ ...parse<Record<string, unknown>>(a.details, {}), at: a.at }))
      .find((a) => a.result === 'accepted' || a.result === 'delivered');
    return {
      status: m?.status ?? null,
      delivered_at: m?.delivered_at ?? null,
      accepted: accepted
        ? {
            at: accepted.at,
            route: accepted.route ?? null,
            host: accepted.host ?? null,
            code: accepted.code ?? null,
            smtp_reply: accepted.smtp_reply ?? null,
          }
        : null,
    };
  };

  /** The affected individuals with their addresses (a read of PHI: audited in its transaction). */
  const individuals = (ctx: RequestContext, id: string) =>
    guard.change(ctx, 'breach.individuals.read', target(id), async (tx) => {
      requireOfficer(ctx);
      await load(tx, ctx, id);
      const rows = await tx.selectFrom('breach_individuals').selectAll().where('incident_id', '=', id).orderBy('contact_hash').execute();
      const out = [];
      for (const r of rows)
        out.push({
          contact_hash: r.contact_hash,
          address: open(ring, r.address_sealed, individualAad(id, r.contact_hash)).toString(),
          phi_types: parse<string[]>(r.phi_types, []),
          message_ids: parse<string[]>(r.message_ids, []),
          notice_by: r.email_allowed === 1 ? ('email' as const) : ('postal' as const),
          notice_email_id: r.notice_email_id,
          notified_at: r.notified_at,
          delivery: await proofOf(tx, r.notice_email_id),
        });
      await guard.recordIn(tx, ctx, 'breach.individuals.read', target(id), { count: out.length });
      return out;
    });

  const noticeText = (n: NoticeInput, orgName: string, phiTypes: string[]) =>
    [
      `Notice of a breach of your health information from ${orgName}`,
      '',
      `What happened: ${n.what_happened}`,
      `Date of the breach: ${n.breach_date}`,
      `Types of information involved: ${phiTypes.length > 0 ? phiTypes.join(', ') : 'see below'}`,
      `What you should do: ${n.steps_individuals_should_take}`,
      `What we are doing: ${n.what_we_are_doing}`,
      `How to contact us: ${n.contact_procedures}`,
    ].join('\n');

  /**
   * Sends the 164.404(c) notice by email to each individual whose consent allows email and who was not notified yet
   * (164.404(d)(1): written notice by email only if the individual agreed); the rest are listed for postal mail.
   * Sent through the breach-notification agent, attributable to the calling privacy officer.
   */
  const sendNotices = async (ctx: RequestContext, id: string, n: NoticeInput) => {
    const inc = await guard.change(ctx, 'breach.notices.sent', target(id), async (tx) => {
      requireOfficer(ctx);
      const r = await load(tx, ctx, id);
      if (!r.scope) throw conflict('breach_not_scoped', 'Scope the incident before sending notices.');
      return r;
    });
    const rows = await db.selectFrom('breach_individuals').selectAll().where('incident_id', '=', id).execute();
    const sent: { contact_hash: string; email_id: string }[] = [];
    const postal: string[] = [];
    const failed: { contact_hash: string; code: string }[] = [];
    for (const r of rows) {
      if (r.email_allowed !== 1) {
        postal.push(r.contact_hash);
        continue;
      }
      if (r.notice_email_id) continue;
      const address = open(ring, r.address_sealed, individualAad(id, r.contact_hash)).toString();
      let m: { id: string };
      try {
        m = await sendNotice(
          inc.org_id,
          ctx,
          address,
          n.subject ?? `Notice of a breach of your health information`,
          noticeText(n, ctx.principal.org.name, parse<string[]>(r.phi_types, [])),
        );
      } catch (e) {
        // A refusal of one notice (e.g. consent withdrawn since scoping) must not stop the others; it is reported.
        if (!isAppError(e) || e.status >= 500) throw e;
        failed.push({ contact_hash: r.contact_hash, code: e.code });
        continue;
      }
      await db.transaction().execute(async (tx) => {
        await tx
          .updateTable('breach_individuals')
          .set({ notice_email_id: m.id, notified_at: clock.now().toISOString() })
          .where('id', '=', r.id)
          .execute();
        await guard.recordIn(tx, ctx, 'breach.notice.sent', target(id), { contact_hash: r.contact_hash, email_id: m.id });
      });
      sent.push({ contact_hash: r.contact_hash, email_id: m.id });
    }
    await guard.change(ctx, 'breach.notices.sent', target(id), async (tx) => {
      const at = clock.now().toISOString();
      await tx
        .updateTable('breach_incidents')
        .set({ notice: JSON.stringify({ ...n, sent_at: at, sent_by: ctx.principal.id }), status: 'notified', updated_at: at })
        .where('id', '=', id)
        .execute();
      await guard.recordIn(tx, ctx, 'breach.notices.sent', target(id), {
        emailed: sent.length,
        postal: postal.length,
        failed: failed.length,
      });
    });
    return { emailed: sent, postal, failed };
  };

  /** The HHS figures of one incident (164.408): count, state, whether 500 or more (report at once) or the yearly log. */
  const hhs = (ctx: RequestContext, id: string) =>
    guard.read(ctx, 'breach.hhs.read', target(id), async () => {
      requireOfficer(ctx);
      const r = await load(db, ctx, id);
      const c = await counts(db, id);
      return hhsFigures(r, c.individuals);
    });

  const hhsFigures = (r: BreachIncidentsTable, count: number) => {
    const discovered = new Date(r.discovered_at);
    const immediate = count >= HHS_IMMEDIATE;
    return {
      incident_id: r.id,
      title: r.title,
      discovered_at: r.discovered_at,
      individuals: count,
      state: r.state,
      over_500: immediate,
      // 164.408(b): with the individual notices; 164.408(c): within 60 days after the end of the calendar year.
      report_to_hhs_by: immediate ? r.deadline_at : new Date(Date.UTC(discovered.getUTCFullYear() + 1, 2, 1)).toISOString(),
    };
  };

  /** The yearly log of breaches under 500 (164.408(c)) of one calendar year of discovery. */
  const hhsLog = (ctx: RequestContext, year: number) =>
    guard.read(ctx, 'breach.hhs_log.read', null, async () => {
      requireOfficer(ctx);
      const rows = await db
        .selectFrom('breach_incidents')
        .selectAll()
        .where('org_id', '=', ctx.principal.orgId)
        .where('discovered_at', '>=', `${year}-01-01T00:00:00.000Z`)
        .where('discovered_at', '<', `${year + 1}-01-01T00:00:00.000Z`)
        .orderBy('discovered_at')
        .execute();
      const out = [];
      for (const r of rows) {
        const f = hhsFigures(r, (await counts(db, r.id)).individuals);
        if (!f.over_500) out.push(f);
      }
      return { year, breaches: out };
    });

  /**
   * Deadline reminders: for each incident not yet notified, each of 30/14/7/1 days before its deadline that has
   * arrived is sent once to every privacy officer of the organisation (the reminder row is the once-only claim).
   * Returns how many reminders were sent. Runs on the given clock (tests pass a fake one).
   */
  const runReminders = async () => {
    const now = clock.now();
    let sent = 0;
    const open_ = await db.selectFrom('breach_incidents').selectAll().where('status', '=', 'open').execute();
    for (const inc of open_) {
      const deadline = new Date(inc.deadline_at).getTime();
      const due = REMINDER_DAYS.filter((d) => now.getTime() >= deadline - d * DAY_MS);
      if (due.length === 0) continue;
      const done = new Set(
        (await db.selectFrom('breach_reminders').select('days_before').where('incident_id', '=', inc.id).execute()).map((r) =>
          Number(r.days_before),
        ),
      );
      // Only the nearest reminder due is sent (a server down for a while does not send four at once); the earlier ones are marked.
      const todo = due.filter((d) => !done.has(d));
      if (todo.length === 0) continue;
      const nearest = Math.min(...todo);
      const claimed = await db
        .transaction()
        .execute(async (tx) => {
          for (const d of todo)
            await tx.insertInto('breach_reminders').values({ incident_id: inc.id, days_before: d, sent_at: now.toISOString() }).execute();
          return true;
        })
        .catch(() => false);
      if (!claimed) continue;
      const officers = (
        await db.selectFrom('humans').select(['email', 'roles']).where('org_id', '=', inc.org_id).where('is_active', '=', 1).execute()
      ).filter((h) => parse<string[]>(h.roles, []).includes('privacy_officer'));
      for (const o of officers) {
        await remind({
          orgId: inc.org_id,
          to: o.email,
          subject: `Breach ${inc.id}: ${nearest} day(s) left to notify individuals`,
          text: `Incident ${inc.id} was discovered at ${inc.discovered_at}. 45 CFR 164.404(b) requires notice to each affected individual by ${inc.deadline_at} (${nearest} day(s) from now or less).`,
        });
        sent++;
      }
    }
    return sent;
  };

  /** `serve`: checks the deadlines hourly. */
  const startReminderScheduler = (opts: { logger?: { error: (o: object, msg: string) => void }; everyMs?: number } = {}) => {
    let running = false;
    const timer = setInterval(async () => {
      if (running) return;
      running = true;
      try {
        await runReminders();
      } catch (e) {
        opts.logger?.error({ code: (e as { code?: string }).code ?? 'unexpected' }, 'breach deadline reminders failed');
      } finally {
        running = false;
      }
    }, opts.everyMs ?? 3_600_000);
    timer.unref();
    return () => clearInterval(timer);
  };

  return { create, get, list, setScope, setRisk, individuals, sendNotices, hhs, hhsLog, runReminders, startReminderScheduler };
};

export type BreachService = ReturnType<typeof createBreachService>;
