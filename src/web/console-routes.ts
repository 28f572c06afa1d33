import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import formbody from '@fastify/formbody';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { AccountsModule } from '../accounts/accounts-module.js';
import type { IssuedSession, SessionState, SignInMeta } from '../accounts/accounts-service.js';
import { consoleOrigin, originAllowed, SESSION_COOKIE } from '../accounts/origin.js';
import type { RelyingParty } from '../accounts/webauthn-service.js';
import { constantTimeEqual } from '../kernel/crypto/hash.js';
import { AppError, isAppError } from '../kernel/errors.js';
import { packageRoot } from '../kernel/package-root.js';
import { type AdminDeps, adminRoutes } from './admin-routes.js';
import { type OauthConsentDeps, oauthConsentRoutes, RETURN_COOKIE } from './oauth-consent-routes.js';
import { type PrivacyDeps, privacyRoutes } from './privacy-routes.js';
import { type ConsoleKit, type ReviewDeps, reviewRoutes } from './review-routes.js';
import {
  continuePage,
  enrolPage,
  invitationGonePage,
  invitationPage,
  landingPage,
  messagePage,
  recoveryCodesPage,
  secondFactorPage,
  signInPage,
  stepUpPage,
  type Viewer,
} from './console-views.js';

/** Double-submit token of the forms shown before a session exists (sign-in, invitation): login CSRF. */
const PRE_CSRF_COOKIE = '__Host-mw_csrf';

/**
 * Strict CSP: scripts and styles from this origin only, no inline script, no framing (clickjacking),
 * forms post only here.
 */
const CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const ASSETS: Record<string, { file: string; type: string }> = {
  'console.js': { file: path.join(packageRoot(), 'assets', 'console', 'console.js'), type: 'text/javascript; charset=utf-8' },
  'console.css': { file: path.join(packageRoot(), 'assets', 'console', 'console.css'), type: 'text/css; charset=utf-8' },
  'review.js': { file: path.join(packageRoot(), 'assets', 'console', 'review.js'), type: 'text/javascript; charset=utf-8' },
  'audit-verify.js': { file: path.join(packageRoot(), 'assets', 'console', 'audit-verify.js'), type: 'text/javascript; charset=utf-8' },
  'favicon.svg': { file: path.join(packageRoot(), 'assets', 'console', 'favicon.svg'), type: 'image/svg+xml' },
  'simplewebauthn-browser.js': {
    file: path.join(packageRoot(), 'node_modules', '@simplewebauthn', 'browser', 'dist', 'bundle', 'index.umd.min.js'),
    type: 'text/javascript; charset=utf-8',
  },
};

const cookieOf = (req: FastifyRequest, name: string): string | undefined => {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const i = part.indexOf('=');
    if (i > 0 && part.slice(0, i).trim() === name) return part.slice(i + 1).trim();
  }
  return undefined;
};

// __Host- prefix: Secure, Path=/, no Domain (RFC 6265bis 4.1.3.2). Browsers accept Secure on http://localhost.
const cookie = (name: string, value: string, maxAge?: number) =>
  `${name}=${value}; Path=/; Secure; HttpOnly; SameSite=Strict${maxAge === undefined ? '' : `; Max-Age=${maxAge}`}`;

const formOf = <T extends z.ZodType>(schema: T, body: unknown): z.infer<T> | null => {
  const r = schema.safeParse(body ?? {});
  return r.success ? r.data : null;
};

const signInForm = z.object({ csrf: z.string().max(200), email: z.string().trim().max(254), password: z.string().max(1024) });
const codeForm = z.object({ csrf: z.string().max(200), code: z.string().trim().max(40), return_to: z.string().max(200).optional() });
const csrfForm = z.object({ csrf: z.string().max(200) });
const inviteForm = z.object({ csrf: z.string().max(200), password: z.string().max(1024), password_confirm: z.string().max(1024) });
const tokenParams = z.object({ token: z.string().regex(/^[A-Za-z0-9_-]{20,100}$/) });
const sessionParams = z.object({ id: z.string().regex(/^ses_[0-9a-f]{32}$/) });

type Deps = {
  accounts: AccountsModule;
  review?: ReviewDeps;
  admin?: Omit<AdminDeps, 'invite' | 'originOf'>;
  privacy?: PrivacyDeps;
  /** The consent page of the OAuth authorization server of /mcp. */
  oauth?: OauthConsentDeps;
};

/**
 * The reviewer console (CONTRACT.md: GET /console; signed-out visitors go to /console/sign-in).
 * Thin over src/accounts: pages call one service function each. Every POST made with a session
 * carries its synchronizer CSRF token (form field `csrf` or header `x-csrf-token`) and, when the
 * browser names one, this origin in `Origin`.
 */
export const consoleRoutes = (deps: Deps) => async (app: FastifyInstance) => {
  const { accounts, webauthn, sso, config } = deps.accounts;
  await app.register(formbody, { bodyLimit: 16_384 });
  // The console's pages and calls are not the REST API: they stay out of /openapi.json.
  app.addHook('onRoute', (r) => {
    r.schema = { ...(r.schema ?? {}), hide: true } as typeof r.schema;
  });

  app.addHook('onSend', async (req, reply) => {
    if (!req.url.startsWith('/console')) return;
    reply.header('content-security-policy', CSP);
    reply.header('x-frame-options', 'DENY');
    // same-origin, not no-referrer: with no-referrer Chromium sends `Origin: null` on form posts, which the origin check refuses.
    reply.header('referrer-policy', 'same-origin');
    reply.header('cross-origin-opener-policy', 'same-origin');
  });

  const meta = (req: FastifyRequest): SignInMeta => ({
    requestId: req.id,
    clientIp: req.ip ?? null,
    userAgent: req.headers['user-agent'] ?? null,
  });
  const originOf = (req: FastifyRequest) => consoleOrigin(config.publicUrl, req.headers.host);
  const rpOf = (req: FastifyRequest): RelyingParty => {
    const origin = originOf(req);
    return { id: new URL(origin).hostname, origin, name: 'Mailward' };
  };
  const html = (reply: FastifyReply, body: string, status = 200) => reply.code(status).type('text/html; charset=utf-8').send(body);
  const session = (req: FastifyRequest) => accounts.resolve(cookieOf(req, SESSION_COOKIE), meta(req));
  const setSession = (reply: FastifyReply, issued: IssuedSession) => reply.header('set-cookie', cookie(SESSION_COOKIE, issued.token));
  const clearSession = (reply: FastifyReply) => reply.header('set-cookie', cookie(SESSION_COOKIE, '', 0));
  const viewer = (s: SessionState): NonNullable<Viewer> => ({ name: s.human.name, org: s.org.name, csrf: s.session.csrf_token });
  const home = (s: SessionState | null) =>
    !s
      ? '/console/sign-in'
      : s.session.stage === 'enrol'
        ? '/console/enrol'
        : s.session.stage === 'second_factor'
          ? '/console/second-factor'
          : '/console';

  /** The pre-session CSRF token: the cookie's value, set now when missing. */
  const preCsrf = (req: FastifyRequest, reply: FastifyReply) => {
    const have = cookieOf(req, PRE_CSRF_COOKIE);
    if (have && /^[A-Za-z0-9_-]{43}$/.test(have)) return have;
    const t = randomBytes(32).toString('base64url');
    reply.header('set-cookie', cookie(PRE_CSRF_COOKIE, t));
    return t;
  };
  const same = (a: string | undefined, b: string | undefined) => !!a && !!b && constantTimeEqual(Buffer.from(a), Buffer.from(b));
  const csrfFailed = () => new AppError('csrf_failed', 403, 'The form expired or came from another site; reload the page and try again.');
  /** Origin and token of a state-changing request (OWASP CSRF Prevention: synchronizer token + origin check). */
  const checkCsrf = (req: FastifyRequest, s: SessionState | null, presented: string | undefined) => {
    if (!originAllowed(originOf(req), req.headers.origin)) throw csrfFailed();
    const expected = s ? s.session.csrf_token : cookieOf(req, PRE_CSRF_COOKIE);
    if (!same(presented, expected)) throw csrfFailed();
  };
  const headerCsrf = (req: FastifyRequest) => {
    const h = req.headers['x-csrf-token'];
    return typeof h === 'string' ? h : undefined;
  };
  const message = (e: unknown) => (isAppError(e) && e.status < 500 ? e.detail : 'Something went wrong; try again.');
  const statusOf = (e: unknown) => (isAppError(e) ? e.status : 500);

  const kit: ConsoleKit = {
    session,
    home,
    viewer,
    checkCsrf,
    html,
    ctxOf: (req, s) => ({ principal: accounts.principalOf(s), requestId: req.id, clientIp: req.ip ?? null }),
  };
  if (deps.review) await reviewRoutes(app, kit, deps.review);
  if (deps.admin) await adminRoutes(app, kit, { ...deps.admin, invite: accounts.invite, originOf });
  if (deps.privacy) await privacyRoutes(app, kit, deps.privacy);
  if (deps.oauth) await oauthConsentRoutes(app, kit, deps.oauth);

  app.get('/console/assets/:file', async (req, reply) => {
    const a = ASSETS[(req.params as { file: string }).file];
    if (!a) throw new AppError('route_not_found', 404, 'No such asset.');
    reply.header('cache-control', 'no-cache');
    return reply.type(a.type).send(await fs.promises.readFile(a.file));
  });

  app.get('/console', async (req, reply) => {
    const s = await session(req);
    if (s?.session.stage !== 'full') return reply.redirect(home(s), 303);
    // Signed in on the way to an OAuth consent page: back there, once.
    const back = cookieOf(req, RETURN_COOKIE);
    if (back && /^[A-Za-z0-9_-]{1,100}$/.test(back)) {
      reply.header('set-cookie', `${RETURN_COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0`);
      return reply.redirect(`/console/oauth/${back}`, 303);
    }
    const [list, factors] = await Promise.all([
      accounts.listSessions({ principal: accounts.principalOf(s), requestId: req.id, clientIp: req.ip ?? null }),
      accounts.factorSummary(s.human.id),
    ]);
    return html(
      reply,
      landingPage(viewer(s), {
        human: { id: s.human.id, name: s.human.name, email: s.human.email, roles: accounts.principalOf(s).roles },
        sessions: list.sessions,
        factors,
      }),
    );
  });
  app.get('/console/', async (_req, reply) => reply.redirect('/console', 303));

  // ---- password + second factor ----
  app.get('/console/sign-in', async (req, reply) => {
    const s = await session(req);
    if (s) return reply.redirect(home(s), 303);
    return html(reply, signInPage(preCsrf(req, reply), await sso.providers()));
  });

  app.post('/console/sign-in', async (req, reply) => {
    const f = formOf(signInForm, req.body);
    const csrf = preCsrf(req, reply);
    try {
      if (!f) throw new AppError('validation_failed', 400, 'Enter your email and password.');
      checkCsrf(req, null, f.csrf);
      const issued = await accounts.passwordSignIn(f.email, f.password, meta(req));
      setSession(reply, issued);
      return reply.redirect(home(issued.state), 303);
    } catch (e) {
      if (isAppError(e) && e.status === 429) reply.header('retry-after', String(e.extra?.retry_after ?? 60));
      return html(reply, signInPage(csrf, await sso.providers(), message(e)), statusOf(e));
    }
  });

  app.get('/console/second-factor', async (req, reply) => {
    const s = await session(req);
    if (s?.session.stage !== 'second_factor') return reply.redirect(home(s), 303);
    return html(reply, secondFactorPage(s.session.csrf_token));
  });

  app.post('/console/second-factor', async (req, reply) => {
    const s = await session(req);
    if (s?.session.stage !== 'second_factor') return reply.redirect(home(s), 303);
    const f = formOf(codeForm, req.body);
    try {
      checkCsrf(req, s, f?.csrf);
      const issued = await accounts.completeSecondFactor(s, f?.code ?? '', meta(req));
      setSession(reply, issued);
      return reply.redirect('/console', 303);
    } catch (e) {
      return html(reply, secondFactorPage(s.session.csrf_token, message(e)), statusOf(e));
    }
  });

  app.post('/console/sign-out', async (req, reply) => {
    const s = await session(req);
    if (s) {
      checkCsrf(req, s, formOf(csrfForm, req.body)?.csrf);
      await accounts.signOut(s, meta(req));
    }
    clearSession(reply);
    return html(reply, messagePage('Signed out', 'You are signed out.', null, { href: '/console/sign-in', label: 'Sign in again' }));
  });

  // ---- invitation and enrolment ----
  app.get('/console/invite/:token', async (req, reply) => {
    const p = tokenParams.safeParse(req.params);
    if (!p.success) return html(reply, invitationGonePage(), 404);
    try {
      const who = await accounts.invitation(p.data.token);
      return html(reply, invitationPage(p.data.token, preCsrf(req, reply), who));
    } catch {
      return html(reply, invitationGonePage(), 404);
    }
  });

  app.post('/console/invite/:token', async (req, reply) => {
    const p = tokenParams.safeParse(req.params);
    if (!p.success) return html(reply, invitationGonePage(), 404);
    const csrf = preCsrf(req, reply);
    const f = formOf(inviteForm, req.body);
    let who: { name: string; email: string };
    try {
      who = await accounts.invitation(p.data.token);
    } catch {
      return html(reply, invitationGonePage(), 404);
    }
    try {
      if (!f) throw new AppError('validation_failed', 400, 'Enter the new password twice.');
      checkCsrf(req, null, f.csrf);
      if (f.password !== f.password_confirm) throw new AppError('password_mismatch', 422, 'The two passwords differ.');
      const issued = await accounts.acceptInvitation(p.data.token, f.password, meta(req));
      setSession(reply, issued);
      return reply.redirect(home(issued.state), 303);
    } catch (e) {
      return html(reply, invitationPage(p.data.token, csrf, who, message(e)), statusOf(e));
    }
  });

  app.get('/console/enrol', async (req, reply) => {
    const s = await session(req);
    if (!s || s.session.stage === 'second_factor') return reply.redirect(home(s), 303);
    const f = await accounts.factorSummary(s.human.id);
    const totp = f.totp ? null : await accounts.beginTotp(s, meta(req));
    return html(reply, enrolPage(s.session.csrf_token, totp));
  });

  app.post('/console/enrol/totp', async (req, reply) => {
    const s = await session(req);
    if (!s || s.session.stage === 'second_factor') return reply.redirect(home(s), 303);
    const f = formOf(codeForm, req.body);
    try {
      checkCsrf(req, s, f?.csrf);
      const out = await accounts.confirmTotp(s, f?.code ?? '', meta(req));
      const now = out.issued?.state ?? s;
      if (out.issued) setSession(reply, out.issued);
      if (out.recoveryCodes) return html(reply, recoveryCodesPage(viewer(now), out.recoveryCodes));
      return reply.redirect('/console', 303);
    } catch (e) {
      const totp = await accounts.beginTotp(s, meta(req)).catch(() => null);
      return html(reply, enrolPage(s.session.csrf_token, totp, message(e)), statusOf(e));
    }
  });

  app.post('/console/recovery-codes', async (req, reply) => {
    const s = await session(req);
    if (s?.session.stage !== 'full') return reply.redirect(home(s), 303);
    checkCsrf(req, s, formOf(csrfForm, req.body)?.csrf);
    try {
      return html(reply, recoveryCodesPage(viewer(s), await accounts.regenerateRecoveryCodes(s, meta(req))));
    } catch (e) {
      if (isAppError(e) && e.code === 'step_up_required') return reply.redirect('/console/step-up', 303);
      throw e;
    }
  });

  app.post('/console/sessions/:id/revoke', async (req, reply) => {
    const s = await session(req);
    if (s?.session.stage !== 'full') return reply.redirect(home(s), 303);
    checkCsrf(req, s, formOf(csrfForm, req.body)?.csrf);
    const p = sessionParams.safeParse(req.params);
    if (!p.success) throw new AppError('not_found', 404, 'No such session.');
    await accounts.revokeSession({ principal: accounts.principalOf(s), requestId: req.id, clientIp: req.ip ?? null }, p.data.id);
    return reply.redirect('/console#sessions', 303);
  });

  // ---- step-up ----
  const stepUpOptions = async (s: SessionState, returnTo: string) => {
    const f = await accounts.factorSummary(s.human.id);
    return { totp: f.totp, passkey: f.passkeys.length > 0, sso: s.session.auth_method === 'sso', returnTo };
  };
  const safeReturn = (v: string | undefined) => (v && /^\/console(\/[A-Za-z0-9_/-]*)?(#[a-z-]+)?$/.test(v) ? v : '/console');

  app.get('/console/step-up', async (req, reply) => {
    const s = await session(req);
    if (s?.session.stage !== 'full') return reply.redirect(home(s), 303);
    const q = req.query as { return_to?: string };
    return html(reply, stepUpPage(viewer(s), await stepUpOptions(s, safeReturn(q.return_to))));
  });

  app.post('/console/step-up', async (req, reply) => {
    const s = await session(req);
    if (s?.session.stage !== 'full') return reply.redirect(home(s), 303);
    const f = formOf(codeForm, req.body);
    try {
      checkCsrf(req, s, f?.csrf);
      const issued = await accounts.stepUpTotp(s, f?.code ?? '', meta(req));
      setSession(reply, issued);
      return reply.redirect(safeReturn(f?.return_to), 303);
    } catch (e) {
      return html(reply, stepUpPage(viewer(s), await stepUpOptions(s, safeReturn(f?.return_to)), message(e)), statusOf(e));
    }
  });

  // ---- passkeys (JSON, called by assets/console/console.js) ----
  app.post('/console/webauthn/registration-options', async (req) => {
    const s = await session(req);
    if (!s || s.session.stage === 'second_factor') throw new AppError('unauthorized', 401, 'Sign in first.');
    checkCsrf(req, s, headerCsrf(req));
    return webauthn.registrationOptions(s, rpOf(req));
  });

  app.post('/console/webauthn/register', async (req, reply) => {
    const s = await session(req);
    if (!s || s.session.stage === 'second_factor') throw new AppError('unauthorized', 401, 'Sign in first.');
    checkCsrf(req, s, headerCsrf(req));
    const out = await webauthn.register(s, req.body as never, rpOf(req), meta(req));
    if (out.issued) setSession(reply, out.issued);
    // Recovery codes of a first enrolment travel in this answer only (shown once by the script, never kept in any process).
    return { redirect: '/console', ...(out.recoveryCodes ? { recovery_codes: out.recoveryCodes } : {}) };
  });

  const modeBody = z.object({ mode: z.enum(['sign_in', 'step_up']), response: z.unknown().optional() });

  app.post('/console/webauthn/authentication-options', async (req) => {
    const b = formOf(modeBody, req.body);
    if (!b) throw new AppError('validation_failed', 400, 'mode is sign_in or step_up.');
    if (b.mode === 'step_up') {
      const s = await session(req);
      if (s?.session.stage !== 'full') throw new AppError('unauthorized', 401, 'Sign in first.');
      checkCsrf(req, s, headerCsrf(req));
      return webauthn.authenticationOptions(rpOf(req), s);
    }
    checkCsrf(req, null, headerCsrf(req));
    return webauthn.authenticationOptions(rpOf(req));
  });

  app.post('/console/webauthn/authenticate', async (req, reply) => {
    const b = formOf(modeBody, req.body);
    if (!b?.response || typeof b.response !== 'object') throw new AppError('validation_failed', 400, 'A passkey response is required.');
    let current: SessionState | undefined;
    if (b.mode === 'step_up') {
      const s = await session(req);
      if (s?.session.stage !== 'full') throw new AppError('unauthorized', 401, 'Sign in first.');
      checkCsrf(req, s, headerCsrf(req));
      current = s;
    } else checkCsrf(req, null, headerCsrf(req));
    const issued = await webauthn.authenticate(b.response as never, rpOf(req), meta(req), current);
    setSession(reply, issued);
    return { redirect: '/console' };
  });

  // ---- single sign-on ----
  const redirectUri = (req: FastifyRequest) => `${originOf(req)}/console/sso/callback`;

  app.get('/console/sso/start', async (req, reply) => {
    const org = (req.query as { org?: string }).org;
    if (!org || !/^org_[0-9a-f]{32}$/.test(org))
      return html(reply, messagePage('Single sign-on', 'Choose an organisation on the sign-in page.'), 400);
    try {
      return reply.redirect(await sso.start(org, redirectUri(req)), 302);
    } catch (e) {
      return html(reply, messagePage('Single sign-on', message(e), null, { href: '/console/sign-in', label: 'Back' }), statusOf(e));
    }
  });

  app.get('/console/sso/step-up', async (req, reply) => {
    const s = await session(req);
    if (s?.session.stage !== 'full') return reply.redirect(home(s), 303);
    return reply.redirect(await sso.start(s.human.org_id, redirectUri(req), s), 302);
  });

  app.get('/console/sso/callback', async (req, reply) => {
    try {
      const url = new URL(req.url, originOf(req));
      const { issued } = await sso.callback(url, meta(req));
      setSession(reply, issued);
      // The provider's redirect is cross-site: a same-site navigation follows so the Strict cookie is sent.
      return html(reply, continuePage('/console'));
    } catch (e) {
      return html(
        reply,
        messagePage('Single sign-on failed', message(e), null, { href: '/console/sign-in', label: 'Back to sign-in' }),
        statusOf(e),
      );
    }
  });
};
