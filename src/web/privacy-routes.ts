import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { SessionState } from '../accounts/accounts-service.js';
import { breachCreateIn, breachIdSchema, breachNoticeIn, breachRiskIn, breachScopeIn } from '../compliance/breach-schemas.js';
import type { BreachService } from '../compliance/breach-service.js';
import type { ComplianceReport } from '../compliance/compliance-report.js';
import { type Disclosures, requireOfficer } from '../compliance/disclosures.js';
import type { RequestContext } from '../identity/principal.js';
import { isAppError } from '../kernel/errors.js';
import { esc, layout } from './console-views.js';
import type { ConsoleKit } from './review-routes.js';

export type PrivacyDeps = {
  disclosures: Disclosures;
  breaches: BreachService;
  complianceReport: Pick<ComplianceReport, 'generateFor'>;
};

const disclosureQuery = z.object({
  contact: z.email().max(320).optional().catch(undefined),
  since: z.iso.datetime({ offset: true }).optional().catch(undefined),
  until: z.iso.datetime({ offset: true }).optional().catch(undefined),
});
const breachParams = z.object({ id: breachIdSchema });
const csrfField = z.object({ csrf: z.string().max(200).optional() });

const hidden = (csrf: string) => `<input type="hidden" name="csrf" value="${esc(csrf)}">`;
/** A form field's text, trimmed; an empty field is absent (the service's optional members). */
const field = (body: Record<string, unknown>, name: string) => {
  const v = body[name];
  const s = typeof v === 'string' ? v.trim() : '';
  return s === '' ? undefined : s;
};
/** A list typed into a textarea: one item per line or separated by commas or spaces. */
const listField = (body: Record<string, unknown>, name: string) => {
  const s = field(body, name);
  return s ? s.split(/[\s,]+/).filter(Boolean) : undefined;
};
const firstIssue = (e: z.ZodError) => {
  const i = e.issues[0];
  return i ? `${i.path.join('.') || 'form'}: ${i.message}` : 'The form is not complete.';
};

/**
 * The privacy officer's pages: a printable accounting of disclosures (45 CFR 164.528), the breach workbench
 * (open an incident, scope it, record the 164.402(2) risk assessment, send the 164.404(c) notices) and the evidence
 * pack for auditors. Thin pages over the same service calls as the REST routes, with the same zod shapes, so every
 * change and read is audited the same way; form posts carry the session's CSRF token; anyone but a privacy officer
 * or admin gets 404 (the services decide).
 */
export const privacyRoutes = async (app: FastifyInstance, kit: ConsoleKit, d: PrivacyDeps) => {
  const { session, home, viewer, html, ctxOf, checkCsrf } = kit;
  const notFoundPage = (s: SessionState) =>
    layout('Not found', '<section><p>There is no such page, or it is not yours to see.</p></section>', viewer(s));
  const signedIn = async (req: FastifyRequest, reply: FastifyReply): Promise<{ s: SessionState; ctx: RequestContext } | null> => {
    const s = await session(req);
    if (s?.session.stage !== 'full') {
      await reply.redirect(home(s), 303);
      return null;
    }
    return { s, ctx: ctxOf(req, s) };
  };
  const notDone = (reply: FastifyReply, s: SessionState, detail: string, status: number, back?: string) =>
    html(
      reply,
      layout(
        'Not done',
        `<section><p class="error" role="alert" id="not-done">${esc(detail)}</p>${back ? `<p><a href="${esc(back)}">Back</a></p>` : ''}</section>`,
        viewer(s),
      ),
      status,
    );
  const failed = (reply: FastifyReply, s: SessionState, e: unknown, back?: string) => {
    if (isAppError(e) && e.status === 404) return html(reply, notFoundPage(s), 404);
    if (isAppError(e) && e.status < 500) return notDone(reply, s, e.detail, e.status, back);
    throw e;
  };
  /** A form post: signed in, the CSRF token checked, then `fn`; refusals become pages. */
  const post =
    (
      fn: (
        a: { s: SessionState; ctx: RequestContext },
        body: Record<string, unknown>,
        req: FastifyRequest,
        reply: FastifyReply,
      ) => Promise<unknown>,
    ) =>
    async (req: FastifyRequest, reply: FastifyReply) => {
      const a = await signedIn(req, reply);
      if (!a) return reply;
      const body = (req.body ?? {}) as Record<string, unknown>;
      checkCsrf(req, a.s, csrfField.safeParse(body).data?.csrf);
      return fn(a, body, req, reply);
    };

  app.get('/console/disclosures', async (req, reply) => {
    const a = await signedIn(req, reply);
    if (!a) return reply;
    const q = disclosureQuery.parse(req.query);
    const form = `<form method="get" action="/console/disclosures" class="filters">
<label>Contact <input name="contact" type="email" required value="${esc(q.contact ?? '')}"></label>
<label>Since <input name="since" value="${esc(q.since ?? '')}" placeholder="2026-01-01T00:00:00Z"></label>
<label>Until <input name="until" value="${esc(q.until ?? '')}"></label>
<button type="submit">Report</button></form>`;
    try {
      if (!q.contact) {
        // The empty form is for officers too: a reviewer sees 404 here as well.
        requireOfficer(a.ctx);
        return html(reply, layout('Accounting of disclosures', form, viewer(a.s)));
      }
      const r = await d.disclosures.report(a.ctx, q as { contact: string });
      const rows = r.disclosures
        .map(
          (
            x,
          ) => `<tr><td>${esc(x.at)}</td><td>${esc(x.recipient)}</td><td>${esc(x.phi_types.join(', ') || '-')}</td><td>${esc(x.category ?? '-')}</td>
<td>${esc(x.agent?.name ?? '-')}<br><small>${esc(x.chain.map((c) => c.name).join(' > '))}</small></td><td>${esc(x.approved_by?.name ?? '-')}</td>
<td>${x.proof ? `<a href="/console/audit/${x.proof.seq}">event ${x.proof.seq}</a> in tree ${x.proof.tree_size}` : '-'}</td></tr>`,
        )
        .join('\n');
      const body = `${form}<section id="report"><p>${r.disclosures.length} disclosure(s) to <strong>${esc(q.contact.trim().toLowerCase())}</strong> (45 CFR 164.528(b)). Print this page for the patient.</p>
<table id="disclosures"><thead><tr><th>Date</th><th>Recipient</th><th>PHI</th><th>Purpose</th><th>Agent</th><th>Approved by</th><th>Proof</th></tr></thead><tbody>
${rows}</tbody></table></section>`;
      return html(reply, layout('Accounting of disclosures', body, viewer(a.s)));
    } catch (e) {
      return failed(reply, a.s, e);
    }
  });

  app.get('/console/breaches', async (req, reply) => {
    const a = await signedIn(req, reply);
    if (!a) return reply;
    try {
      const list = await d.breaches.list(a.ctx);
      const rows = list
        .map(
          (b) =>
            `<tr><td><a href="/console/breaches/${esc(b.id)}">${esc(b.title)}</a></td><td>${esc(b.discovered_at)}</td><td>${esc(b.deadline_at)}</td><td>${esc(b.status)}</td><td>${esc(b.individuals ?? 0)}</td></tr>`,
        )
        .join('\n');
      const csrf = viewer(a.s).csrf;
      const open = `<section id="new-breach" aria-labelledby="new-breach-h"><h2 id="new-breach-h">Open an incident</h2>
<p>The 60-day notice clock (45 CFR 164.404(b)) starts at the discovery time.</p>
<form method="post" action="/console/breaches">${hidden(csrf)}
<label for="b-title">Title</label><input id="b-title" name="title" required maxlength="200">
<label for="b-description">What happened</label><textarea id="b-description" name="description" required maxlength="8000"></textarea>
<label for="b-discovered">Discovered at (ISO 8601 with offset)</label><input id="b-discovered" name="discovered_at" required placeholder="2026-01-05T13:00:00Z">
<label for="b-state">State (for HHS and media notice)</label><input id="b-state" name="state" maxlength="100">
<button type="submit" id="open-breach">Open incident</button></form></section>`;
      return html(
        reply,
        layout(
          'Breach incidents',
          `<section><table id="breaches"><thead><tr><th>Incident</th><th>Discovered</th><th>Notify by</th><th>Status</th><th>Individuals</th></tr></thead><tbody>${rows}</tbody></table></section>${open}`,
          viewer(a.s),
        ),
      );
    } catch (e) {
      return failed(reply, a.s, e);
    }
  });

  app.post(
    '/console/breaches',
    post(async (a, body, _req, reply) => {
      const f = breachCreateIn.safeParse({
        title: field(body, 'title'),
        description: field(body, 'description'),
        discovered_at: field(body, 'discovered_at'),
        ...(field(body, 'state') ? { state: field(body, 'state') } : {}),
      });
      try {
        // The service refuses non-officers (404) before the form's content matters.
        if (!f.success) {
          requireOfficer(a.ctx);
          return notDone(reply, a.s, firstIssue(f.error), 400, '/console/breaches');
        }
        const b = await d.breaches.create(a.ctx, f.data);
        return reply.redirect(`/console/breaches/${b.id}`, 303);
      } catch (e) {
        return failed(reply, a.s, e, '/console/breaches');
      }
    }),
  );

  app.get('/console/breaches/:id', async (req, reply) => {
    const a = await signedIn(req, reply);
    if (!a) return reply;
    const p = breachParams.safeParse(req.params);
    if (!p.success) return html(reply, notFoundPage(a.s), 404);
    try {
      const b = await d.breaches.get(a.ctx, p.data.id);
      const people = await d.breaches.individuals(a.ctx, p.data.id);
      const rows = people
        .map(
          (x) =>
            `<tr><td>${esc(x.address)}</td><td>${esc(x.phi_types.join(', '))}</td><td>${esc(x.notice_by)}</td><td>${esc(x.notified_at ?? '-')}</td><td>${esc(x.delivery?.accepted ? `${x.delivery.accepted.code} at ${x.delivery.accepted.at}` : '-')}</td></tr>`,
        )
        .join('\n');
      const csrf = viewer(a.s).csrf;
      const action = (what: string) => `/console/breaches/${esc(b.id)}/${what}`;
      const scope = (b.scope ?? {}) as Record<string, string | string[] | undefined>;
      const sv = (k: string) => {
        const v = scope[k];
        return esc(Array.isArray(v) ? v.join('\n') : (v ?? ''));
      };
      const risk = (b.risk_assessment ?? {}) as Record<string, string | boolean | undefined>;
      const rv = (k: string) => esc(typeof risk[k] === 'string' ? risk[k] : '');
      const notified = b.notice !== null;
      const scopeForm = notified
        ? '<p id="scope-fixed">Notices went out; the scope is fixed.</p>'
        : `<form method="post" action="${action('scope')}" id="scope-form">${hidden(csrf)}
<p>Every filter given must match (a time window on when the message was created, mailboxes, agents, recipients, message ids, tags). Lists: one per line.</p>
<label for="s-since">Since</label><input id="s-since" name="since" value="${sv('since')}" placeholder="2026-01-05T00:00:00Z">
<label for="s-until">Until</label><input id="s-until" name="until" value="${sv('until')}">
<label for="s-agents">Agent ids</label><textarea id="s-agents" name="agent_ids">${sv('agent_ids')}</textarea>
<label for="s-mailboxes">Mailbox ids</label><textarea id="s-mailboxes" name="mailbox_ids">${sv('mailbox_ids')}</textarea>
<label for="s-recipients">Recipients</label><textarea id="s-recipients" name="recipients">${sv('recipients')}</textarea>
<label for="s-messages">Message ids</label><textarea id="s-messages" name="message_ids">${sv('message_ids')}</textarea>
<label for="s-tags">Tags</label><textarea id="s-tags" name="tags">${sv('tags')}</textarea>
<button type="submit" id="save-scope">Save scope and find individuals</button></form>`;
      const riskForm = `<form method="post" action="${action('risk-assessment')}" id="risk-form">${hidden(csrf)}
<label for="r-nature">(i) Nature and extent of the PHI, identifiers, likelihood of re-identification</label><textarea id="r-nature" name="nature_and_extent" required>${rv('nature_and_extent')}</textarea>
<label for="r-person">(ii) The unauthorised person who used or received it</label><textarea id="r-person" name="unauthorized_person" required>${rv('unauthorized_person')}</textarea>
<label for="r-acquired">(iii) Whether it was actually acquired or viewed</label><textarea id="r-acquired" name="acquired_or_viewed" required>${rv('acquired_or_viewed')}</textarea>
<label for="r-mitigation">(iv) The extent to which the risk was mitigated</label><textarea id="r-mitigation" name="mitigation" required>${rv('mitigation')}</textarea>
<label class="check"><input type="checkbox" id="r-low" name="low_probability_of_compromise" value="1"${risk.low_probability_of_compromise === true ? ' checked' : ''}> Low probability that the PHI was compromised (no notice required)</label>
<button type="submit" id="save-risk">Save risk assessment</button></form>`;
      const noticeForm = notified
        ? `<p id="notices-sent">Notices went out: ${esc(b.notified ?? 0)} by email; the rest are listed for postal mail.</p>`
        : `<form method="post" action="${action('notices')}" id="notice-form">${hidden(csrf)}
<p>The notice (45 CFR 164.404(c)) goes by email to individuals whose consent allows it, from the breach-notification agent in your name; the others are listed for first-class mail. Each individual's PHI types are filled in.</p>
<label for="n-subject">Subject (optional)</label><input id="n-subject" name="subject" maxlength="200">
<label for="n-what">What happened</label><textarea id="n-what" name="what_happened" required></textarea>
<label for="n-date">Date of the breach and of its discovery</label><input id="n-date" name="breach_date" required maxlength="200">
<label for="n-steps">Steps individuals should take</label><textarea id="n-steps" name="steps_individuals_should_take" required></textarea>
<label for="n-doing">What we are doing</label><textarea id="n-doing" name="what_we_are_doing" required></textarea>
<label for="n-contact">How to reach us (toll-free number, email, web site or postal address)</label><textarea id="n-contact" name="contact_procedures" required></textarea>
<button type="submit" id="send-notices">Send notices</button></form>`;
      const body = `<section><p>${esc(b.description)}</p><p>Discovered ${esc(b.discovered_at)}; individuals must be notified by <strong>${esc(b.deadline_at)}</strong> (45 CFR 164.404(b)). Status: <span id="breach-status">${esc(b.status)}</span>.</p>
<table id="individuals"><thead><tr><th>Individual</th><th>PHI</th><th>Notice by</th><th>Notified</th><th>Delivery proof</th></tr></thead><tbody>${rows}</tbody></table></section>
<section id="scope" aria-labelledby="scope-h"><h2 id="scope-h">Scope</h2>${scopeForm}</section>
<section id="risk" aria-labelledby="risk-h"><h2 id="risk-h">Risk assessment (45 CFR 164.402(2))</h2>${riskForm}</section>
<section id="notices" aria-labelledby="notices-h"><h2 id="notices-h">Notices</h2>${noticeForm}</section>`;
      return html(reply, layout(b.title, body, viewer(a.s)));
    } catch (e) {
      return failed(reply, a.s, e);
    }
  });

  /** A form post about one incident: its id well-formed (else 404), the form checked by the REST shape, then `fn`. */
  const onIncident = <T>(
    schema: z.ZodType<T>,
    fromForm: (body: Record<string, unknown>) => unknown,
    fn: (ctx: RequestContext, id: string, input: T) => Promise<unknown>,
    done: (a: { s: SessionState }, id: string, out: unknown, reply: FastifyReply) => unknown = (_a, id, _out, reply) =>
      reply.redirect(`/console/breaches/${id}`, 303),
  ) =>
    post(async (a, body, req, reply) => {
      const p = breachParams.safeParse(req.params);
      if (!p.success) return html(reply, notFoundPage(a.s), 404);
      const back = `/console/breaches/${p.data.id}`;
      const f = schema.safeParse(fromForm(body));
      try {
        if (!f.success) {
          // The incident must be the caller's before the form's content is discussed.
          await d.breaches.get(a.ctx, p.data.id);
          return notDone(reply, a.s, firstIssue(f.error), 400, back);
        }
        return done(a, p.data.id, await fn(a.ctx, p.data.id, f.data), reply);
      } catch (e) {
        return failed(reply, a.s, e, back);
      }
    });

  app.post(
    '/console/breaches/:id/scope',
    onIncident(
      breachScopeIn,
      (body) =>
        Object.fromEntries(
          Object.entries({
            since: field(body, 'since'),
            until: field(body, 'until'),
            agent_ids: listField(body, 'agent_ids'),
            mailbox_ids: listField(body, 'mailbox_ids'),
            recipients: listField(body, 'recipients'),
            message_ids: listField(body, 'message_ids'),
            tags: listField(body, 'tags'),
          }).filter(([, v]) => v !== undefined),
        ),
      (ctx, id, scope) => d.breaches.setScope(ctx, id, scope),
    ),
  );

  app.post(
    '/console/breaches/:id/risk-assessment',
    onIncident(
      breachRiskIn,
      (body) => ({
        nature_and_extent: field(body, 'nature_and_extent'),
        unauthorized_person: field(body, 'unauthorized_person'),
        acquired_or_viewed: field(body, 'acquired_or_viewed'),
        mitigation: field(body, 'mitigation'),
        low_probability_of_compromise: body.low_probability_of_compromise === '1',
      }),
      (ctx, id, risk) => d.breaches.setRisk(ctx, id, risk),
    ),
  );

  app.post(
    '/console/breaches/:id/notices',
    onIncident(
      breachNoticeIn,
      (body) => ({
        what_happened: field(body, 'what_happened'),
        breach_date: field(body, 'breach_date'),
        steps_individuals_should_take: field(body, 'steps_individuals_should_take'),
        what_we_are_doing: field(body, 'what_we_are_doing'),
        contact_procedures: field(body, 'contact_procedures'),
        ...(field(body, 'subject') ? { subject: field(body, 'subject') } : {}),
      }),
      (ctx, id, n) => d.breaches.sendNotices(ctx, id, n),
      (a, id, out, reply) => {
        const r = out as Awaited<ReturnType<BreachService['sendNotices']>>;
        return html(
          reply,
          layout(
            'Notices sent',
            `<section><p id="notice-result"><span id="emailed">${r.emailed.length}</span> notice(s) emailed; <span id="postal">${r.postal.length}</span> individual(s) to notify by first-class mail (45 CFR 164.404(d)(1)); <span id="failed">${r.failed.length}</span> refused by the send path.</p>
<p>Delivery proof appears on the incident page as each notice is accepted.</p><p><a href="/console/breaches/${esc(id)}" id="back-to-incident">Back to the incident</a></p></section>`,
            viewer(a.s),
          ),
        );
      },
    ),
  );

  app.get('/console/compliance', async (req, reply) => {
    const a = await signedIn(req, reply);
    if (!a) return reply;
    try {
      requireOfficer(a.ctx);
    } catch (e) {
      return failed(reply, a.s, e);
    }
    const csrf = viewer(a.s).csrf;
    return html(
      reply,
      layout(
        'Evidence pack',
        `<section><p>The evidence pack for auditors (45 CFR 164.308(a)(8), 164.312): encryption at rest and key ages, MFA coverage of your organisation's people, the last audit verification and checkpoint, retention settings and legal holds, and the last backup. Building it writes a <code>compliance.reported</code> audit event holding the report's SHA-256, and the pack carries that event's inclusion proof under a signed checkpoint, so an auditor can check it with the published audit key alone.</p>
<form method="post" action="/console/compliance/report">${hidden(csrf)}<input type="hidden" name="format" value="html"><button type="submit" id="build-report">Build and show</button></form>
<form method="post" action="/console/compliance/report">${hidden(csrf)}<input type="hidden" name="format" value="json"><button type="submit" id="download-report">Build and download (JSON)</button></form></section>`,
        viewer(a.s),
      ),
    );
  });

  app.post(
    '/console/compliance/report',
    post(async (a, body, _req, reply) => {
      try {
        const out = await d.complianceReport.generateFor(a.ctx);
        if (body.format === 'json') {
          const day = out.report.generated_at.slice(0, 10);
          return reply
            .header('content-disposition', `attachment; filename="mailward-evidence-${day}-${out.signature.seq}.json"`)
            .type('application/json; charset=utf-8')
            .send(`${JSON.stringify(out, null, 2)}\n`);
        }
        const r = out.report;
        const org = r.organizations[0];
        const keks = r.encryption_at_rest.key_encryption_keys
          .map(
            (k) =>
              `<tr><td>key-encryption key ${esc(k.version)}</td><td>${esc(k.age_days)}</td><td>${esc(k.retired_at ?? 'in use')}</td></tr>`,
          )
          .join('');
        const signing = r.encryption_at_rest.signing_keys
          .filter((k) => !k.retired)
          .map((k) => `<tr><td>${esc(k.purpose)} <small>${esc(k.kid)}</small></td><td>${esc(k.age_days)}</td><td>in use</td></tr>`)
          .join('');
        const v = r.audit.last_verification;
        const cp = r.audit.last_checkpoint;
        const bodyHtml = `<section id="evidence"><p>Generated ${esc(r.generated_at)}.</p>
<h2>Encryption at rest</h2><p>${esc(r.encryption_at_rest.algorithm)}.</p>
<table id="keys"><thead><tr><th>Key</th><th>Age (days)</th><th>State</th></tr></thead><tbody>${keks}${signing}</tbody></table>
<h2>People and second factors</h2><p id="mfa">${org ? `${esc(org.mfa.with_second_factor)} of ${esc(org.mfa.active_humans)} active people have a second factor (TOTP ${esc(org.mfa.totp)}, passkey ${esc(org.mfa.passkey)}; SSO-linked ${esc(org.mfa.sso_linked)}).` : '-'}</p>
<h2>Retention and legal holds</h2><p id="retention">${org ? `Messages are kept ${esc(org.retention.message_retention_days)} days. Legal holds: audit ${esc(org.legal_holds.audit)}, mail ${esc(org.legal_holds.mail)}.` : '-'}</p>
<h2>Audit log</h2><p id="verification">Last verification: ${v ? `${esc(v.at)} (${esc(v.outcome)})` : 'never'}.</p><p>Last checkpoint: ${cp ? `size ${esc(cp.tree_size)} at ${esc(cp.at)}` : 'none'}.</p>
<h2>Backups</h2><p id="backup">${r.backup ? `Last backup ${esc(r.backup.last_at)} (${esc(r.backup.age_days)} day(s) ago, ${esc(r.backup.outcome)}).` : 'No backup is recorded.'}</p>
<h2>Signature</h2><p id="signature">SHA-256 <code>${esc(out.signature.report_sha256)}</code> is in audit event <a href="/console/audit/${esc(out.signature.seq)}">${esc(out.signature.seq)}</a>, proven into checkpoint size ${esc(out.signature.checkpoint.tree_size)}. Download the pack to keep the proof with it.</p></section>
<form method="post" action="/console/compliance/report">${hidden(viewer(a.s).csrf)}<input type="hidden" name="format" value="json"><button type="submit" id="download-report">Build again and download (JSON)</button></form>`;
        return html(reply, layout('Evidence pack', bodyHtml, viewer(a.s)));
      } catch (e) {
        return failed(reply, a.s, e, '/console/compliance');
      }
    }),
  );
};
