import http from 'node:http';
import type { AddressInfo } from 'node:net';

export type Received = { path: string; headers: Record<string, string>; body: string; status: number; at: number };

/**
 * A webhook receiver on loopback (port 0): records every request it gets and answers with what
 * `answer(req, nth)` says (default 200). `nth` counts requests per webhook-id, from 1.
 */
export const startReceiver = async (
  answer: (r: { path: string; id: string; nth: number }) => {
    status: number;
    headers?: Record<string, string>;
    delayMs?: number;
  } = () => ({
    status: 200,
  }),
) => {
  const got: Received[] = [];
  const perId = new Map<string, number>();
  const server = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c) => {
      body += c;
    });
    req.on('end', () => {
      const id = String(req.headers['webhook-id'] ?? '');
      const nth = (perId.get(id) ?? 0) + 1;
      perId.set(id, nth);
      const a = answer({ path: req.url ?? '/', id, nth });
      const reply = () => {
        got.push({
          path: req.url ?? '/',
          headers: Object.fromEntries(Object.entries(req.headers).map(([k, v]) => [k, String(v)])),
          body,
          status: a.status,
          at: Date.now(),
        });
        res.writeHead(a.status, a.headers ?? {});
        res.end(a.status >= 400 ? 'receiver says no (this body must never be stored)' : 'ok');
      };
      if (a.delayMs) setTimeout(reply, a.delayMs);
      else reply();
    });
  });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    got,
    url: (path = '/hook') => `http://127.0.0.1:${port}${path}`,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
};
export type Receiver = Awaited<ReturnType<typeof startReceiver>>;
