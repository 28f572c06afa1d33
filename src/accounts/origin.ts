import { AppError } from '../kernel/errors.js';

/** The console's session cookie: `__Host-` binds it to this origin, path `/`, Secure (RFC 6265bis 4.1.3.2). */
export const SESSION_COOKIE = '__Host-mw_session';

const LOOPBACK_HOST = /^(localhost|127\.0\.0\.1|\[::1\])(:\d{1,5})?$/;

/**
 * The console's origin: MAILWARD_PUBLIC_URL, or, when unset, `http://<Host>` for a loopback Host only
 * (development and tests): a Host header from anywhere else is not trusted to name the origin that
 * invitation links, WebAuthn and the OpenID redirect URI are bound to. Throws 503 public_url_required.
 */
export const consoleOrigin = (publicUrl: string | undefined, host: string | undefined): string => {
  if (publicUrl) return publicUrl;
  if (host && LOOPBACK_HOST.test(host)) return `http://${host}`;
  throw new AppError(
    'public_url_required',
    503,
    'Set MAILWARD_PUBLIC_URL to the console origin (https://...) to use sign-in from other hosts.',
  );
};

/** A state-changing request made with a cookie must come from the console's own origin when the browser names one (OWASP CSRF: verify origin). */
export const originAllowed = (expected: string, origin: string | undefined): boolean => origin === undefined || origin === expected;
