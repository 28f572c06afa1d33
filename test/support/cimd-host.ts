import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { type SinkCert, selfSignedCert } from './outbound-sink.js';

/**
 * A client's web host on loopback, over HTTPS with a certificate made at test time (openssl, outbound-sink.ts), that
 * serves Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document): JSON at the paths given. It
 * records every path asked for, so a test can show that a refused client id was never fetched.
 */
export type CimdHost = {
  origin: string;
  /** host:port, as MAILWARD_OAUTH_CIMD_ALLOW_HOSTS names it. */
  hostPort: string;
  cert: SinkCert;
  urlOf: (path: string) => string;
  /** Serves `doc` at `path` (replacing what was there). */
  serve: (path: string, doc: unknown) => void;
  requests: string[];
  close: () => Promise<void>;
};

export const startCimdHost = async (dir: string, cert: SinkCert = selfSignedCert(dir)): Promise<CimdHost> => {
  const docs = new Map<string, string>();
  const requests: string[] = [];
  const server = https.createServer({ key: cert.private, cert: cert.cert }, (req, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    requests.push(path);
    const doc = docs.get(path);
    if (req.method !== 'GET' || doc === undefined) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'max-age=60' }).end(doc);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const origin = `https://127.0.0.1:${port}`;
  return {
    origin,
    hostPort: `127.0.0.1:${port}`,
    cert,
    urlOf: (path) => `${origin}${path}`,
    serve: (path, doc) => void docs.set(path, JSON.stringify(doc)),
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
};
