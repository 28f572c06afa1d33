import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { AccountsService } from '../accounts/accounts-service.js';
import type { SessionState } from '../accounts/accounts-service.js';
import type { createApiKeysService } from '../identity/api-keys-service.js';
import type { createIdentityService } from '../identity/identity-service.js';
import { hasRole, type RequestContext } from '../identity/principal.js';
import { isAppError } from '../kernel/errors.js';
import type { createMailboxService } from '../mail/mailbox-service.js';
import { isLoosening, OVERSIGHT_MODES } from '../oversight/oversight-modes.js';
import type { createConsentService } from '../phi/consent-service.js';
import type { OversightMode } from '../store/schema.js';
import { esc, layout } from './console-views.js';
import type { ConsoleKit } from './review-routes.js';

/** What the admin pages call: the REST services themselves (every rule and audit event stays theirs). */
export type AdminDeps = {
  identity: ReturnType<typeof createIdentityService>;
  apiKeys: ReturnType<typeof createApiKeysService>;
  mailboxes: ReturnType<typeof createMailboxService>;
  consent: ReturnType<typeof createConsentService>;
  invite: AccountsService['invite'];
  originOf: (req: FastifyRequest) => string;
};

const hidden = (csrf: string) => `<input type="hidden" name="csrf" value="${esc(csrf)}">`;
const idParam = z.object({ id: z.string().regex(/^[a-z]{3}_[0-9a-f]{32}$/) });
const modeForm = z.object({ csrf: z.string().max(200), mode: z.enum(OVERSIGHT_MODES), confirm: z.literal('1').optional() });
const humanForm = z.object({
  csrf: z.string().max(200),
  name: z.string().trim().min(1).max(200),
  email: z.string().trim().max(254),
  role: z.enum(['reviewer', 'admin', 'auditor', 'privacy_officer']),
});
const csrfForm = z.object({ csrf: z.string().max(200) });

/**
 * Admin basics in the console: agents, mailboxes (oversight mode, with a warning before loosening),
 * humans and invitations, API keys (shown once, revoked) and a consent lookup. Thin pages over the
 * REST services; a caller without the admin role gets 404 on every one of them.
 */
export const adminRoutes = async (app: FastifyInstance, kit: ConsoleKit, d: AdminDeps) => {
  const { session, home, viewer, checkCsrf, html, ctxOf } = kit;
  const notFoundPage = (s: SessionState) =>
    layout('Not found', '<section><p>There is no such page, or it is not yours to see.</p></section>', viewer(s));

  /** The admin's session and context, or a reply already sent (redirect to sign-in, or 404). */
  const admin = async (req: FastifyRequest, reply: FastifyReply): Promise<{ s: SessionState; ctx: RequestContext } | null> => {
    const s = await session(req);
    if (s?.session.stage !== 'full') {
      await reply.redirect(home(s), 303);
      return null;
    }
    const ctx = ctxOf(req, s);
    if (!hasRole(ctx.principal, 'admin')) {
      await html(reply, notFoundPage(s), 404);
      return null;
    }
    return { s, ctx };
  };
  const failed = (reply: FastifyReply, s: SessionState, e: unknown) => {
    if (isAppError(e) && e.status < 500)
      return html(
        reply,
        layout(
          'Not done',
          `<section><p class="error" role="alert">${esc(e.detail)}</p><p><a href="/console/admin">Back</a></p></section>`,
          viewer(s),
        ),
        e.status === 403 ? 404 : e.status,
      );
    throw e;
  };

  app.get('/console/admin', async (req, reply) => {
    const a = await admin(req, reply);
    if (!a) return reply;
    const { s, ctx } = a;
    const [agents, mailboxes, humans, keys] = await Promise.all([
      d.identity.listAgents(ctx),
      d.mailboxes.list(ctx),
      d.identity.listHumans(ctx),
      d.apiKeys.list(ctx),
    ]);
    const csrf = viewer(s).csrf;
    const agentList = agents as unknown as { id: string; name: string; address: string; is_active?: boolean; status?: string }[];
    const humanList = humans as unknown as { id: string; name: string; email: string; roles: string[] }[];
    const email = (req.query as { email?: string }).email;
    let consentLine = '';
    if (email) {
      try {
        const c = await d.consent.get(ctx, email);
        consentLine = `<p id="consent-result">Consent of ${esc(email)}: <strong>${esc(c.status)}</strong>${c.categories?.length ? ` (${esc(c.categories.join(', '))})` : ''}</p>`;
      } catch (e) {
        consentLine = `<p class="error" role="alert">${esc(isAppError(e) ? e.detail : 'The lookup failed.')}</p>`;
      }
    }
    const body = `<section id="agents" aria-labelledby="agents-h"><h2 id="agents-h">Agents</h2><table><thead><tr><th scope="col">Name</th><th scope="col">Address</th><th scope="col">API key</th></tr></thead><tbody>${agentList
      .map(
        (g) =>
          `<tr><td>${esc(g.name)}</td><td>${esc(g.address)}</td><td><form class="inline" method="post" action="/console/admin/agents/${esc(g.id)}/keys">${hidden(csrf)}<button type="submit" aria-label="New API key for ${esc(g.name)}">New key</button></form></td></tr>`,
      )
      .join('')}</tbody></table></section>
<section id="mailboxes" aria-labelledby="mailboxes-h"><h2 id="mailboxes-h">Mailboxes</h2><table><thead><tr><th scope="col">Address</th><th scope="col">Oversight mode</th></tr></thead><tbody>${mailboxes
      .map(
        (m) =>
          `<tr><td>${esc(m.address)}</td><td><form class="inline" method="post" action="/console/admin/mailboxes/${esc(m.id)}/mode">${hidden(csrf)}<label class="sr-only" for="mode-${esc(m.id)}">Mode of ${esc(m.address)}</label><select id="mode-${esc(m.id)}" name="mode">${OVERSIGHT_MODES.map((o) => `<option value="${o}"${o === m.oversight_mode ? ' selected' : ''}>${o}</option>`).join('')}</select><button type="submit">Set</button></form></td></tr>`,
      )
      .join('')}</tbody></table></section>
<section id="humans" aria-labelledby="humans-h"><h2 id="humans-h">People</h2><table><thead><tr><th scope="col">Name</th><th scope="col">Email</th><th scope="col">Roles</th><th scope="col">Invitation</th></tr></thead><tbody>${humanList
      .map(
        (h) =>
          `<tr><td>${esc(h.name)}</td><td>${esc(h.email)}</td><td>${esc(h.roles.join(', '))}</td><td><form class="inline" method="post" action="/console/admin/humans/${esc(h.id)}/invite">${hidden(csrf)}<button type="submit" aria-label="Invite ${esc(h.name)}">New invitation link</button></form></td></tr>`,
      )
      .join('')}</tbody></table>
<h3>Add a person</h3><form method="post" action="/console/admin/humans">${hidden(csrf)}<label for="h-name">Name</label><input id="h-name" name="name" required><label for="h-email">Email</label><input id="h-email" name="email" type="email" required><label for="h-role">Role</label><select id="h-role" name="role"><option value="reviewer">reviewer</option><option value="auditor">auditor</option><option value="privacy_officer">privacy_officer</option><option value="admin">admin</option></select><button type="submit" id="add-human">Add</button></form></section>
<section id="keys" aria-labelledby="keys-h"><h2 id="keys-h">API keys</h2><table><thead><tr><th scope="col">Key</th><th scope="col">Of</th><th scope="col">Scopes</th><th scope="col">Created</th><th scope="col"></th></tr></thead><tbody>${keys
      .map(
        (k) =>
          `<tr data-key="${esc(k.id)}"><td>${esc(k.id)}</td><td>${esc(k.principal.type)} ${esc(k.principal.id)}</td><td>${esc(k.scopes.join(', '))}</td><td>${esc(k.created_at)}</td><td>${k.revoked_at ? `revoked ${esc(k.revoked_at)}` : `<form class="inline" method="post" action="/console/admin/keys/${esc(k.id)}/revoke">${hidden(csrf)}<button type="submit" aria-label="Revoke ${esc(k.id)}">Revoke</button></form>`}</td></tr>`,
      )
      .join('')}</tbody></table></section>
<section id="consent" aria-labelledby="consent-h"><h2 id="consent-h">Consent lookup</h2><form method="get" action="/console/admin#consent"><label for="c-email">Contact's email</label><input id="c-email" name="email" type="email" value="${esc(email ?? '')}" required><button type="submit" id="consent-lookup">Look up</button></form>${consentLine}</section>`;
    return html(reply, layout('Administration', body, viewer(s)));
  });

  /**
   * A form post about one resource (`:id`): signed-in admin, CSRF token, a well-formed id (else 404), and a refusal
   * shown as a page. `fn` does the work.
   */
  const onOne =
    (fn: (a: { s: SessionState; ctx: RequestContext }, id: string, req: FastifyRequest, reply: FastifyReply) => Promise<unknown>) =>
    async (req: FastifyRequest, reply: FastifyReply) => {
      const a = await admin(req, reply);
      if (!a) return reply;
      checkCsrf(req, a.s, csrfForm.safeParse(req.body ?? {}).data?.csrf);
      const p = idParam.safeParse(req.params);
      if (!p.success) return html(reply, notFoundPage(a.s), 404);
      try {
        return await fn(a, p.data.id, req, reply);
      } catch (e) {
        return failed(reply, a.s, e);
      }
    };

  app.post('/console/admin/mailboxes/:id/mode', async (req, reply) => {
    const a = await admin(req, reply);
    if (!a) return reply;
    const f = modeForm.safeParse(req.body ?? {});
    checkCsrf(req, a.s, f.success ? f.data.csrf : undefined);
    const p = idParam.safeParse(req.params);
    if (!f.success || !p.success) return html(reply, notFoundPage(a.s), 404);
    try {
      const m = await d.mailboxes.get(a.ctx, p.data.id);
      if (isLoosening(m.oversight_mode as OversightMode, f.data.mode) && !f.data.confirm) {
        return html(
          reply,
          layout(
            'Loosen oversight?',
            `<section><p class="error" role="alert" id="loosen-warning">Moving ${esc(m.address)} from <strong>${esc(m.oversight_mode)}</strong> to <strong>${esc(f.data.mode)}</strong> lets its agent's mail reach people with less human review. The change is audited as loosening, with you as the actor.</p>
<form method="post" action="/console/admin/mailboxes/${esc(m.id)}/mode">${hidden(viewer(a.s).csrf)}<input type="hidden" name="mode" value="${esc(f.data.mode)}"><input type="hidden" name="confirm" value="1"><button type="submit" id="confirm-loosen">Loosen oversight</button></form><p><a href="/console/admin#mailboxes">Cancel</a></p></section>`,
            viewer(a.s),
          ),
        );
      }
      await d.mailboxes.update(a.ctx, p.data.id, { oversight_mode: f.data.mode });
      return reply.redirect('/console/admin#mailboxes', 303);
    } catch (e) {
      return failed(reply, a.s, e);
    }
  });

  app.post('/console/admin/humans', async (req, reply) => {
    const a = await admin(req, reply);
    if (!a) return reply;
    const f = humanForm.safeParse(req.body ?? {});
    checkCsrf(req, a.s, f.success ? f.data.csrf : undefined);
    if (!f.success)
      return html(reply, layout('Not done', '<p class="error" role="alert">Enter a name, an email and a role.</p>', viewer(a.s)), 400);
    try {
      await d.identity.createHuman(a.ctx, { name: f.data.name, email: f.data.email, roles: [f.data.role] } as never);
      return reply.redirect('/console/admin#humans', 303);
    } catch (e) {
      return failed(reply, a.s, e);
    }
  });

  app.post(
    '/console/admin/humans/:id/invite',
    onOne(async (a, id, req, reply) => {
      const inv = await d.invite(a.ctx, id, d.originOf(req));
      return html(
        reply,
        layout(
          'Invitation link',
          `<section><p>Give this link to the person, privately. It is shown only now and works once, until ${esc(inv.expires_at)}.</p><p class="secret" id="invitation-url">${esc(inv.url)}</p><p><a href="/console/admin#humans">Back</a></p></section>`,
          viewer(a.s),
        ),
      );
    }),
  );

  app.post(
    '/console/admin/agents/:id/keys',
    onOne(async (a, id, _req, reply) => {
      const k = (await d.apiKeys.create(a.ctx, 'agent', id)) as { id: string; key: string };
      return html(
        reply,
        layout(
          'New API key',
          `<section><p>Copy the key now: it is shown only once, and Mailward keeps only its hash.</p><p class="secret" id="new-key">${esc(k.key)}</p><p><a href="/console/admin#keys">Back</a></p></section>`,
          viewer(a.s),
        ),
      );
    }),
  );

  app.post(
    '/console/admin/keys/:id/revoke',
    onOne(async (a, id, _req, reply) => {
      await d.apiKeys.revoke(a.ctx, id);
      return reply.redirect('/console/admin#keys', 303);
    }),
  );
};
