import { execFileSync } from 'node:child_process';
import type { FastifyInstance } from 'fastify';

/**
 * A browser-like client of the console over fastify's inject: keeps cookies, sends forms, reads the
 * CSRF token of the last page. `ip` sets the client address the server sees.
 */
export const consoleClient = (app: FastifyInstance, opts: { ip?: string } = {}) => {
  const jar = new Map<string, string>();
  let lastHtml = '';
  const cookieHeader = () => [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
  const request = async (
    method: string,
    url: string,
    o: { form?: Record<string, string>; json?: unknown; headers?: Record<string, string> } = {},
  ) => {
    const headers: Record<string, string> = { ...(jar.size ? { cookie: cookieHeader() } : {}), ...o.headers };
    let payload: string | undefined;
    if (o.form) {
      headers['content-type'] = 'application/x-www-form-urlencoded';
      payload = new URLSearchParams(o.form).toString();
    } else if (o.json !== undefined) {
      headers['content-type'] = 'application/json';
      payload = JSON.stringify(o.json);
    }
    const res = await app.inject({ method: method as 'GET', url, headers, payload, remoteAddress: opts.ip ?? '127.0.0.1' });
    const set = res.headers['set-cookie'];
    for (const c of Array.isArray(set) ? set : set ? [set] : []) {
      const [pair, ...attrs] = c.split(';');
      const i = pair!.indexOf('=');
      const name = pair!.slice(0, i).trim();
      const value = pair!.slice(i + 1).trim();
      if (attrs.some((a) => /max-age=0/i.test(a.trim())) || value === '') jar.delete(name);
      else jar.set(name, value);
    }
    if (String(res.headers['content-type'] ?? '').startsWith('text/html')) lastHtml = res.body;
    let json: any;
    try {
      json = JSON.parse(res.body);
    } catch {
      json = undefined;
    }
    return { status: res.statusCode, body: res.body, json, headers: res.headers, location: res.headers.location as string | undefined };
  };
  /** The CSRF token of the last HTML page (hidden field or meta tag). */
  const csrf = () => /name="csrf" value="([^"]+)"/.exec(lastHtml)?.[1] ?? /name="csrf-token" content="([^"]+)"/.exec(lastHtml)?.[1] ?? '';
  return { request, csrf, jar, html: () => lastHtml, cookie: cookieHeader };
};

/** TOTP code of `secret` at `at`, from oathtool: an implementation independent of Mailward's. */
export const oathtoolCode = (secret: string, at: Date) =>
  execFileSync(
    'oathtool',
    [
      '--totp',
      '-b',
      secret,
      '--now',
      at
        .toISOString()
        .replace('T', ' ')
        .replace(/\.\d+Z$/, ' UTC'),
    ],
    {
      encoding: 'utf8',
    },
  ).trim();

/** The same client over real HTTP to a server process (`origin` like http://127.0.0.1:PORT); one cookie jar for every origin given. */
export const httpConsoleClient = () => {
  const jar = new Map<string, string>();
  let lastHtml = '';
  const request = async (
    origin: string,
    method: string,
    url: string,
    o: { form?: Record<string, string>; headers?: Record<string, string> } = {},
  ) => {
    const headers: Record<string, string> = {
      ...(jar.size ? { cookie: [...jar].map(([k, v]) => `${k}=${v}`).join('; ') } : {}),
      ...o.headers,
    };
    let body: string | undefined;
    if (o.form) {
      headers['content-type'] = 'application/x-www-form-urlencoded';
      body = new URLSearchParams(o.form).toString();
    }
    const res = await fetch(`${origin}${url}`, { method, headers, body, redirect: 'manual' });
    for (const c of res.headers.getSetCookie()) {
      const [pair, ...attrs] = c.split(';');
      const i = pair!.indexOf('=');
      const name = pair!.slice(0, i).trim();
      const value = pair!.slice(i + 1).trim();
      if (attrs.some((a) => /max-age=0/i.test(a.trim())) || value === '') jar.delete(name);
      else jar.set(name, value);
    }
    const text = await res.text();
    if ((res.headers.get('content-type') ?? '').startsWith('text/html')) lastHtml = text;
    return { status: res.status, body: text, location: res.headers.get('location') ?? undefined };
  };
  const csrf = () => /name="csrf" value="([^"]+)"/.exec(lastHtml)?.[1] ?? '';
  return { request, csrf, jar, html: () => lastHtml };
};
