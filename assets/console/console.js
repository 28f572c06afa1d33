// Mailward console: the only script the pages load (CSP script-src 'self'). Passkey ceremonies use
// @simplewebauthn/browser (served from this origin as simplewebauthn-browser.js).
(() => {
  const csrf = () => document.querySelector('meta[name="csrf-token"]')?.getAttribute('content') ?? '';
  const status = (text) => {
    const el = document.getElementById('passkey-status');
    if (el) el.textContent = text;
  };
  const post = async (url, body) => {
    const r = await fetch(url, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'content-type': 'application/json', 'x-csrf-token': csrf() },
      body: JSON.stringify(body ?? {}),
    });
    const json = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(json.detail || 'The request failed.');
    return json;
  };
  const { startRegistration, startAuthentication } = window.SimpleWebAuthnBrowser;

  /** The recovery codes of a first enrolment, shown once (the same page the server renders after a TOTP enrolment). */
  const showRecoveryCodes = (codes, next) => {
    const main = document.querySelector('main');
    main.replaceChildren();
    const h1 = document.createElement('h1');
    h1.textContent = 'Recovery codes';
    const section = document.createElement('section');
    const p = document.createElement('p');
    p.textContent = 'Keep these codes somewhere safe. Each signs you in once if you lose your second factor. They are shown only now.';
    const ul = document.createElement('ul');
    ul.className = 'codes';
    ul.id = 'recovery-codes';
    for (const c of codes) {
      const li = document.createElement('li');
      li.textContent = c;
      ul.append(li);
    }
    const a = document.createElement('a');
    a.id = 'continue';
    a.href = next;
    a.textContent = 'Continue to the console';
    const pa = document.createElement('p');
    pa.append(a);
    section.append(p, ul, pa);
    main.append(h1, section);
  };

  const add = document.getElementById('add-passkey');
  add?.addEventListener('click', async () => {
    try {
      status('Follow your browser’s prompt…');
      const optionsJSON = await post('/console/webauthn/registration-options');
      const response = await startRegistration({ optionsJSON });
      const out = await post('/console/webauthn/register', response);
      if (out.recovery_codes) showRecoveryCodes(out.recovery_codes, out.redirect);
      else window.location.assign(out.redirect);
    } catch (e) {
      status(e.message);
    }
  });

  const signIn = async (mode) => {
    try {
      status('Follow your browser’s prompt…');
      const optionsJSON = await post('/console/webauthn/authentication-options', { mode });
      const response = await startAuthentication({ optionsJSON });
      const out = await post('/console/webauthn/authenticate', { mode, response });
      window.location.assign(out.redirect);
    } catch (e) {
      status(e.message);
    }
  };
  document.getElementById('passkey-sign-in')?.addEventListener('click', () => signIn('sign_in'));
  document.getElementById('passkey-step-up')?.addEventListener('click', () => signIn('step_up'));
})();
