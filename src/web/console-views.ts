/**
 * Server-rendered pages of the reviewer console. Every value is escaped; no inline script or style
 * (the CSP allows only this origin's /console/assets). `layout` and `NAV` are the extension points:
 * a new page (the approval queue) adds a nav entry and renders its body inside `layout`.
 */

export const esc = (v: unknown): string =>
  String(v ?? '')
    .replaceAll('&', '&amp;')
    .replaceAll('<', '&lt;')
    .replaceAll('>', '&gt;')
    .replaceAll('"', '&quot;')
    .replaceAll("'", '&#39;');

/** The console's navigation; pages of later features add themselves here. */
export const NAV: { href: string; label: string }[] = [
  { href: '/console', label: 'Home' },
  { href: '/console/queue', label: 'Queue' },
  { href: '/console/audit', label: 'Audit trail' },
  { href: '/console/admin', label: 'Admin' },
  { href: '/console/disclosures', label: 'Disclosures' },
  { href: '/console/breaches', label: 'Breaches' },
  { href: '/console/compliance', label: 'Evidence' },
  { href: '/console#sessions', label: 'Sessions' },
  { href: '/console#security', label: 'Security' },
];

export type Viewer = { name: string; org: string; csrf: string } | null;

export const layout = (title: string, body: string, viewer: Viewer, opts: { csrf?: string; passkeys?: boolean; script?: string } = {}) => {
  const csrf = viewer?.csrf ?? opts.csrf;
  const header = viewer
    ? `<header><strong>Mailward</strong><nav>${NAV.map((n) => `<a href="${esc(n.href)}">${esc(n.label)}</a>`).join('')}</nav>
<span id="who">${esc(viewer.name)} · ${esc(viewer.org)}</span>
<form class="inline" method="post" action="/console/sign-out"><input type="hidden" name="csrf" value="${esc(viewer.csrf)}"><button id="sign-out" type="submit">Sign out</button></form></header>`
    : '<header><strong>Mailward</strong></header>';
  const scripts = opts.passkeys
    ? '<script src="/console/assets/simplewebauthn-browser.js"></script><script src="/console/assets/console.js"></script>'
    : opts.script
      ? `<script src="/console/assets/${esc(opts.script)}"></script>`
      : '';
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)} · Mailward</title>${csrf ? `<meta name="csrf-token" content="${esc(csrf)}">` : ''}
<link rel="icon" href="/console/assets/favicon.svg"><link rel="stylesheet" href="/console/assets/console.css"></head>
<body>${header}<main><h1>${esc(title)}</h1>${body}</main>${scripts}</body></html>`;
};

const errorLine = (error?: string) => (error ? `<p class="error" role="alert" id="error">${esc(error)}</p>` : '');
const hidden = (csrf: string) => `<input type="hidden" name="csrf" value="${esc(csrf)}">`;

export const signInPage = (csrf: string, providers: { id: string; name: string }[], error?: string) =>
  layout(
    'Sign in',
    `${errorLine(error)}<section><form method="post" action="/console/sign-in">${hidden(csrf)}
<label for="email">Email</label><input id="email" name="email" type="email" autocomplete="username" required>
<label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit" id="sign-in">Continue</button></form></section>
<section><button type="button" id="passkey-sign-in">Sign in with a passkey</button> <span id="passkey-status"></span></section>
${providers.length > 0 ? `<section>${providers.map((p) => `<p><a class="sso" href="/console/sso/start?org=${esc(p.id)}">Sign in with ${esc(p.name)} single sign-on</a></p>`).join('')}</section>` : ''}`,
    null,
    { csrf, passkeys: true },
  );

export const secondFactorPage = (csrf: string, error?: string) =>
  layout(
    'Second factor',
    `${errorLine(error)}<section><form method="post" action="/console/second-factor">${hidden(csrf)}
<label for="code">Code from your authenticator app, or a recovery code</label><input id="code" name="code" type="text" inputmode="numeric" autocomplete="one-time-code" required>
<button type="submit" id="verify">Verify</button></form>
<form method="post" action="/console/sign-out">${hidden(csrf)}<button type="submit">Cancel</button></form></section>`,
    null,
    { csrf },
  );

export const invitationPage = (token: string, csrf: string, who: { name: string; email: string }, error?: string) =>
  layout(
    'Welcome to Mailward',
    `${errorLine(error)}<section><p>Set a password for <strong>${esc(who.name)}</strong> (${esc(who.email)}). Use at least 12 characters; a phrase of several words works well. Common or breached passwords are refused.</p>
<form method="post" action="/console/invite/${esc(token)}">${hidden(csrf)}
<label for="password">New password</label><input id="password" name="password" type="password" autocomplete="new-password" required minlength="12">
<label for="password_confirm">Repeat it</label><input id="password_confirm" name="password_confirm" type="password" autocomplete="new-password" required>
<button type="submit" id="set-password">Set password</button></form></section>`,
    null,
    { csrf },
  );

export const invitationGonePage = () =>
  layout(
    'Link not valid',
    '<section><p>This link is unknown, already used or expired. Ask an administrator for a new invitation.</p></section>',
    null,
  );

export const enrolPage = (csrf: string, totp: { secret: string; otpauth_uri: string } | null, error?: string) =>
  layout(
    'Set up a second factor',
    `${errorLine(error)}<section><p>Mailward needs a second factor before you can continue.</p>
${
  totp
    ? `<h2>Authenticator app</h2><p>Add this key to your authenticator app (or open the link on your phone), then enter the code it shows.</p>
<p class="secret" id="totp-secret">${esc(totp.secret)}</p><p><a id="totp-uri" href="${esc(totp.otpauth_uri)}">otpauth link</a></p>
<form method="post" action="/console/enrol/totp">${hidden(csrf)}<label for="code">Code</label><input id="code" name="code" type="text" inputmode="numeric" autocomplete="one-time-code" required>
<button type="submit" id="confirm-totp">Confirm</button></form>`
    : ''
}
<h2>Passkey</h2><button type="button" id="add-passkey">Use a passkey</button> <span id="passkey-status"></span></section>`,
    null,
    { csrf, passkeys: true },
  );

export const recoveryCodesPage = (viewer: Viewer, codes: string[]) =>
  layout(
    'Recovery codes',
    `<section><p>Keep these codes somewhere safe. Each signs you in once if you lose your second factor. They are shown only now.</p>
<ul class="codes" id="recovery-codes">${codes.map((c) => `<li>${esc(c)}</li>`).join('')}</ul><p><a id="continue" href="/console">Continue to the console</a></p></section>`,
    viewer,
  );

export type LandingData = {
  human: { id: string; name: string; email: string; roles: string[] };
  sessions: {
    id: string;
    created_at: string;
    last_seen_at: string;
    auth_method: string | null;
    client_ip: string | null;
    current: boolean;
  }[];
  factors: { totp: boolean; passkeys: { id: string; created_at: string }[]; recovery_codes_left: number };
};

export const landingPage = (viewer: NonNullable<Viewer>, d: LandingData) =>
  layout(
    'Console',
    `<section id="whoami"><p>Signed in as <strong id="signed-in-as">${esc(d.human.name)}</strong> (${esc(d.human.email)}), roles: ${esc(d.human.roles.join(', '))}.</p>
<p><a id="queue-link" href="/console/queue">Open the approval queue</a></p></section>
<section id="sessions"><h2>Your sessions</h2><table><thead><tr><th>Started</th><th>Last active</th><th>Method</th><th>Address</th><th></th></tr></thead><tbody>
${d.sessions
  .map(
    (
      s,
    ) => `<tr data-session="${esc(s.id)}"><td>${esc(s.created_at)}</td><td>${esc(s.last_seen_at)}</td><td>${esc(s.auth_method)}</td><td>${esc(s.client_ip)}</td>
<td>${s.current ? 'this session' : `<form class="inline" method="post" action="/console/sessions/${esc(s.id)}/revoke">${hidden(viewer.csrf)}<button type="submit">Revoke</button></form>`}</td></tr>`,
  )
  .join('')}</tbody></table></section>
<section id="security"><h2>Second factors</h2>
<p>Authenticator app: ${d.factors.totp ? 'enrolled' : 'not enrolled (<a href="/console/enrol">add one</a>)'}</p>
<p>Passkeys: ${d.factors.passkeys.length}</p><ul>${d.factors.passkeys.map((p) => `<li>added ${esc(p.created_at)}</li>`).join('')}</ul>
<button type="button" id="add-passkey">Add a passkey</button> <span id="passkey-status"></span>
<p>Recovery codes left: ${d.factors.recovery_codes_left}</p>
<form method="post" action="/console/recovery-codes">${hidden(viewer.csrf)}<button type="submit">New recovery codes</button></form>
<p><a href="/console/step-up">Confirm it's you (step-up)</a></p></section>`,
    viewer,
    { passkeys: true },
  );

export const stepUpPage = (
  viewer: NonNullable<Viewer>,
  opts: { totp: boolean; passkey: boolean; sso: boolean; returnTo: string },
  error?: string,
) =>
  layout(
    "Confirm it's you",
    `${errorLine(error)}<section><p>Signing a decision needs a fresh second-factor check (21 CFR 11.200).</p>
${opts.totp ? `<form method="post" action="/console/step-up">${hidden(viewer.csrf)}<input type="hidden" name="return_to" value="${esc(opts.returnTo)}"><label for="code">Code from your authenticator app</label><input id="code" name="code" type="text" inputmode="numeric" autocomplete="one-time-code" required><button type="submit" id="step-up">Confirm</button></form>` : ''}
${opts.passkey ? '<button type="button" id="passkey-step-up">Confirm with a passkey</button> <span id="passkey-status"></span>' : ''}
${opts.sso ? '<p><a id="sso-step-up" href="/console/sso/step-up">Confirm with single sign-on</a></p>' : ''}</section>`,
    viewer,
    { passkeys: opts.passkey },
  );

export const messagePage = (title: string, text: string, viewer: Viewer = null, link?: { href: string; label: string }) =>
  layout(title, `<section><p>${esc(text)}</p>${link ? `<p><a href="${esc(link.href)}">${esc(link.label)}</a></p>` : ''}</section>`, viewer);

/** After a cross-site redirect (the identity provider's), a same-site navigation so SameSite=Strict cookies are sent. */
export const continuePage = (href: string) =>
  `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="0;url=${esc(href)}"><title>Signed in · Mailward</title></head><body><p><a href="${esc(href)}">Continue</a></p></body></html>`;
