import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { isAppError } from '../kernel/errors.js';
import type { ConsentResult, InteractionView } from '../oauth/oauth-server.js';
import type { Tx } from '../store/db.js';
import { interactionGone, type OauthConsent } from '../oauth/oauth-consent.js';
import { continuePage, esc, layout, messagePage } from './console-views.js';
import type { ConsoleKit } from './review-routes.js';

/** What the console needs of the authorization server (src/oauth/oauth-server.ts), on the raw node objects. */
export type OauthConsentDeps = {
  consent: OauthConsent;
  interaction: (req: IncomingMessage, res: ServerResponse) => Promise<InteractionView>;
  /** Both run in the consent's transaction (`tx`), so the library's grant commits with the consent's audit event. */
  finish: (tx: Tx, req: IncomingMessage, res: ServerResponse, choice: ConsentResult) => Promise<string>;
  refuse: (tx: Tx, req: IncomingMessage, res: ServerResponse) => Promise<string>;
};

/** The interaction a signed-out visitor of the consent page returns to after signing in (read once by GET /console). */
export const RETURN_COOKIE = '__Host-mw_return';

const uidParams = z.object({ uid: z.string().regex(/^[A-Za-z0-9_-]{1,100}$/) });
const consentForm = z.object({
  csrf: z.string().max(200),
  decision: z.enum(['allow', 'deny']),
  agent_id: z.string().max(100).optional(),
  scope: z.union([z.string().max(50), z.array(z.string().max(50)).max(20)]).optional(),
});

const SCOPE_TEXT: Record<string, string> = {
  'mail:read': 'read the agent’s mailboxes',
  'mail:send': 'send and reply as the agent (mail leaves the hospital)',
  'vault:read': 'list the agent’s stored secrets (names only)',
  'vault:write': 'store secrets for the agent',
  'vault:reveal': 'reveal the agent’s secrets',
  'vault:totp': 'produce one-time codes from the agent’s stored seeds',
};

const consentPage = (
  viewer: NonNullable<Parameters<typeof layout>[2]>,
  v: InteractionView,
  opts: { agents: { id: string; name: string; address: string }[]; scopes: string[] },
  error?: string,
) => {
  const who = v.clientName ? `${esc(v.clientName)} (<code>${esc(v.clientId)}</code>)` : `<code>${esc(v.clientId)}</code>`;
  const back = v.redirectUri ? `<p>It will return to <code>${esc(new URL(v.redirectUri).origin)}</code>.</p>` : '';
  const agents = opts.agents
    .map(
      (a, i) =>
        `<p><input type="radio" name="agent_id" id="agent-${i}" value="${esc(a.id)}"${i === 0 ? ' checked' : ''}><label for="agent-${i}">${esc(a.name)} &lt;${esc(a.address)}&gt;</label></p>`,
    )
    .join('');
  const scopes = opts.scopes
    .map(
      (s, i) =>
        `<p><input type="checkbox" name="scope" id="scope-${i}" value="${esc(s)}" checked><label for="scope-${i}"><code>${esc(s)}</code>: ${esc(SCOPE_TEXT[s] ?? s)}</label></p>`,
    )
    .join('');
  const body =
    opts.agents.length === 0
      ? `<section><p>${who} asks to act as one of your agents, but you answer for no active agent. Ask an admin.</p>
<form method="post" action="/console/oauth/${esc(v.uid)}"><input type="hidden" name="csrf" value="${esc(viewer.csrf)}"><button type="submit" name="decision" value="deny" id="deny">Deny</button></form></section>`
      : `${error ? `<p class="error" role="alert" id="error">${esc(error)}</p>` : ''}<section><p>${who} asks to act through Mailward’s MCP server.</p>${back}
<form method="post" action="/console/oauth/${esc(v.uid)}"><input type="hidden" name="csrf" value="${esc(viewer.csrf)}">
<fieldset><legend>Act as</legend>${agents}</fieldset>
<fieldset><legend>Allow it to</legend>${scopes || '<p>The client asked for no scope you may grant.</p>'}</fieldset>
<p>You join the delegation chain of everything it does: the audit log and the identity header of mail it sends name you.</p>
<button type="submit" name="decision" value="allow" id="allow">Allow</button> <button type="submit" name="decision" value="deny" id="deny">Deny</button></form></section>`;
  return layout('Allow access', body, viewer);
};

/**
 * The consent page of the OAuth authorization server (oidc-provider sends the browser here, `consentPath`): the
 * human signs in with their console session (a signed-out visitor goes to the sign-in page and comes back), chooses
 * the agent and the scopes, and the form posts with the session's CSRF token.
 */
export const oauthConsentRoutes = async (app: FastifyInstance, kit: ConsoleKit, deps: OauthConsentDeps) => {
  const gone = (reply: FastifyReply, e: unknown) => {
    if (isAppError(e) && e.status < 500 && e.code !== 'oauth_interaction_expired') throw e;
    const g = interactionGone();
    return kit.html(reply, messagePage('Authorization request', g.detail), 400);
  };
  const view = async (req: FastifyRequest, reply: FastifyReply, uid: string) => {
    const v = await deps.interaction(req.raw, reply.raw);
    if (v.uid !== uid) throw interactionGone();
    return v;
  };

  app.get('/console/oauth/:uid', async (req, reply) => {
    const p = uidParams.safeParse(req.params);
    if (!p.success) return gone(reply, interactionGone());
    const s = await kit.session(req);
    if (s?.session.stage !== 'full') {
      reply.header('set-cookie', `${RETURN_COOKIE}=${p.data.uid}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=600`);
      return reply.redirect(kit.home(s), 303);
    }
    let v: InteractionView;
    try {
      v = await view(req, reply, p.data.uid);
    } catch (e) {
      return gone(reply, e);
    }
    const ctx = kit.ctxOf(req, s);
    const o = await deps.consent.options(ctx);
    return kit.html(
      reply,
      consentPage(kit.viewer(s), v, { agents: o.agents, scopes: o.scopes.filter((x) => v.requestedScopes.includes(x)) }),
    );
  });

  app.post('/console/oauth/:uid', async (req, reply) => {
    const p = uidParams.safeParse(req.params);
    if (!p.success) return gone(reply, interactionGone());
    const s = await kit.session(req);
    if (s?.session.stage !== 'full') return reply.redirect(kit.home(s), 303);
    const r = consentForm.safeParse(req.body ?? {});
    kit.checkCsrf(req, s, r.success ? r.data.csrf : undefined);
    if (!r.success)
      return kit.html(reply, messagePage('Authorization request', 'The form was incomplete; reload the page.', kit.viewer(s)), 400);
    let v: InteractionView;
    try {
      v = await view(req, reply, p.data.uid);
    } catch (e) {
      return gone(reply, e);
    }
    const ctx = kit.ctxOf(req, s);
    const f = r.data;
    let to: string;
    if (f.decision === 'deny') {
      to = await deps.consent.deny(ctx, v.clientId, (tx) => deps.refuse(tx, req.raw, reply.raw));
    } else {
      const chosen = f.scope === undefined ? [] : Array.isArray(f.scope) ? f.scope : [f.scope];
      try {
        to = await deps.consent.grant(
          ctx,
          { clientId: v.clientId, agentId: f.agent_id ?? '', scopes: chosen, requested: v.requestedScopes },
          (tx, scopes) => deps.finish(tx, req.raw, reply.raw, { agentId: f.agent_id ?? '', humanId: s.human.id, scopes }),
        );
      } catch (e) {
        if (!isAppError(e) || e.status >= 500) throw e;
        const o = await deps.consent.options(ctx);
        return kit.html(
          reply,
          consentPage(kit.viewer(s), v, { agents: o.agents, scopes: o.scopes.filter((x) => v.requestedScopes.includes(x)) }, e.detail),
          e.status,
        );
      }
    }
    // A page that moves on by itself, not a redirect: the console's CSP (`form-action 'self'`) would stop a form
    // submission's redirect chain at the client's redirect URI, which is another origin.
    return reply.type('text/html; charset=utf-8').send(continuePage(to));
  });
};
