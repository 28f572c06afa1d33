import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { SessionState } from '../accounts/accounts-service.js';
import type { BreachService } from '../compliance/breach-service.js';
import { type Disclosures, requireOfficer } from '../compliance/disclosures.js';
import type { RequestContext } from '../identity/principal.js';
import { isAppError } from '../kernel/errors.js';
import { esc, layout } from './console-views.js';
import type { ConsoleKit } from './review-routes.js';

export type PrivacyDeps = { disclosures: Disclosures; breaches: BreachService };

const disclosureQuery = z.object({
  contact: z.email().max(320).optional().catch(undefined),
  since: z.iso.datetime({ offset: true }).optional().catch(undefined),
  until: z.iso.datetime({ offset: true }).optional().catch(undefined),
});
const breachParams = z.object({ id: z.string().regex(/^brc_[0-9a-f]{32}$/) });

/**
 * The privacy officer's pages: a printable accounting of disclosures (45 CFR 164.528) and a read-only view of
 * breach incidents with their individuals and delivery proof. Thin pages over the same services as the REST
 * routes (so reads are audited the same way); anyone but a privacy officer or admin gets 404 (the services decide).
 */
export const privacyRoutes = async (app: FastifyInstance, kit: ConsoleKit, d: PrivacyDeps) => {
  const { session, home, viewer, html, ctxOf } = kit;
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
  const failed = (reply: FastifyReply, s: SessionState, e: unknown) => {
    if (isAppError(e) && e.status === 404) return html(reply, notFoundPage(s), 404);
    if (isAppError(e) && e.status < 500)
      return html(reply, layout('Not done', `<section><p class="error" role="alert">${esc(e.detail)}</p></section>`, viewer(s)), e.status);
    throw e;
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
      return html(
        reply,
        layout(
          'Breach incidents',
          `<section><p>Open, scope and notify through the API (/v1/breaches); this page shows where each stands.</p><table id="breaches"><thead><tr><th>Incident</th><th>Discovered</th><th>Notify by</th><th>Status</th><th>Individuals</th></tr></thead><tbody>${rows}</tbody></table></section>`,
          viewer(a.s),
        ),
      );
    } catch (e) {
      return failed(reply, a.s, e);
    }
  });

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
      const body = `<section><p>${esc(b.description)}</p><p>Discovered ${esc(b.discovered_at)}; individuals must be notified by <strong>${esc(b.deadline_at)}</strong> (45 CFR 164.404(b)). Status: ${esc(b.status)}.</p>
<table id="individuals"><thead><tr><th>Individual</th><th>PHI</th><th>Notice by</th><th>Notified</th><th>Delivery proof</th></tr></thead><tbody>${rows}</tbody></table></section>`;
      return html(reply, layout(b.title, body, viewer(a.s)));
    } catch (e) {
      return failed(reply, a.s, e);
    }
  });
};
