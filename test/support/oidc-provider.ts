import http from 'node:http';
import type { AddressInfo } from 'node:net';
import Provider from 'oidc-provider';

export type TestProvider = {
  issuer: string;
  /** Next token response from the provider has its id_token replaced by this one (a real token, issued to another client). */
  swapNextIdToken: (idToken: string) => void;
  close: () => Promise<void>;
};

const listen = (server: http.Server) =>
  new Promise<number>((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));

/**
 * A real OpenID provider (the `oidc-provider` package) on loopback, with its development login pages
 * (any login name; `accounts` gives each name its claims). It is reached through a pass-through proxy,
 * which is the issuer: the proxy changes nothing unless a test asks it to swap the next ID token.
 */
export const startOidcProvider = async (opts: {
  clients: { client_id: string; client_secret: string; redirect_uris: string[] }[];
  accounts: Record<string, Record<string, unknown>>;
}): Promise<TestProvider> => {
  const proxy = http.createServer();
  const proxyPort = await listen(proxy);
  const issuer = `http://127.0.0.1:${proxyPort}`;
  const provider = new Provider(issuer, {
    clients: opts.clients.map((c) => ({ ...c, grant_types: ['authorization_code'], response_types: ['code'] })),
    findAccount: async (_ctx, sub) => ({
      accountId: sub,
      claims: async () => ({ sub, ...(opts.accounts[sub] ?? {}) }),
    }),
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name', 'groups'] },
    pkce: { required: () => true },
    features: { devInteractions: { enabled: true } },
    cookies: { keys: ['test-only-cookie-key-0123456789abcdef'] },
  });
  provider.on('server_error', () => {});
  const inner = http.createServer(provider.callback());
  const innerPort = await listen(inner);
  let swap: string | null = null;
  proxy.on('request', (req, res) => {
    const up = http.request({ host: '127.0.0.1', port: innerPort, method: req.method, path: req.url, headers: req.headers }, (r) => {
      const isToken = req.url?.startsWith('/token') && swap;
      if (!isToken) {
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
        return;
      }
      const chunks: Buffer[] = [];
      r.on('data', (c) => chunks.push(c));
      r.on('end', () => {
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        if (body.id_token) body.id_token = swap;
        swap = null;
        const out = JSON.stringify(body);
        const headers = { ...r.headers, 'content-length': String(Buffer.byteLength(out)) };
        res.writeHead(r.statusCode ?? 502, headers);
        res.end(out);
      });
    });
    up.on('error', () => res.destroy());
    req.on('error', () => up.destroy());
    req.pipe(up);
  });
  return {
    issuer,
    swapNextIdToken: (t) => {
      swap = t;
    },
    close: async () => {
      proxy.closeAllConnections();
      inner.closeAllConnections();
      await Promise.all([new Promise((r) => proxy.close(r)), new Promise((r) => inner.close(r))]);
    },
  };
};
