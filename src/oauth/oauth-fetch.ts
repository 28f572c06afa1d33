import fs from 'node:fs';
import { isIP } from 'node:net';
import { rootCertificates } from 'node:tls';
import { Agent, fetch as undiciFetch } from 'undici';
import { AppError } from '../kernel/errors.js';

/**
 * How the authorization server fetches what clients point it to (Client ID Metadata Documents; oidc-provider's
 * `fetch` and `clientIdMetadataDocument.allowFetch` settings).
 *
 * By default only https URLs on a host name (no IP address, no `localhost`) are fetched, through the library's own
 * fetch, whose connection is dropped when the name resolves to a loopback, private, link-local or other special-use
 * address (its SSRF guard), with the system's CAs. An operator may allow-list `host:port` pairs
 * (MAILWARD_OAUTH_CIMD_ALLOW_HOSTS: test clients on loopback, an internal client registry): those are fetched without
 * the address rules, still over https only (the library refuses any other client id), trusting the CA certificates of
 * MAILWARD_OAUTH_CIMD_CA_FILE besides the system's. The fetch for allow-listed hosts is undici's (the same library as
 * Node's fetch, which has no per-request CA setting), with redirects still not followed (the library asks `manual`).
 */

export type OauthFetchConfig = { cimdAllowHosts: string[]; cimdCaFile: string | undefined };

type FetchOptions = Record<string, unknown> & { dispatcher?: unknown };

const hostPort = (u: URL) => `${u.hostname.toLowerCase()}:${u.port || (u.protocol === 'https:' ? '443' : '80')}`;

export const createOauthFetch = (config: OauthFetchConfig) => {
  const allowed = new Set(config.cimdAllowHosts);
  let ca: string[] = [...rootCertificates];
  if (config.cimdCaFile) {
    try {
      ca = [...ca, fs.readFileSync(config.cimdCaFile, 'utf8')];
    } catch (e) {
      throw new AppError('oauth_config_invalid', 500, 'MAILWARD_OAUTH_CIMD_CA_FILE cannot be read.', { cause: e });
    }
  }
  // One pool for the allow-listed hosts, created only when there are some.
  const agent = allowed.size > 0 ? new Agent({ connect: { ca } }) : undefined;

  const isAllowListed = (url: string | URL) => {
    const u = URL.parse(String(url));
    return u !== null && allowed.has(hostPort(u));
  };

  /** `clientIdMetadataDocument.allowFetch`: an allow-listed host:port, or a host name that is not this machine. */
  const allowFetch = async (clientId: string) => {
    if (isAllowListed(clientId)) return true;
    const host = new URL(clientId).hostname.replace(/^\[|\]$/g, '').toLowerCase();
    return isIP(host) === 0 && host !== 'localhost' && !host.endsWith('.localhost');
  };

  /** oidc-provider's `fetch` setting: the library's SSRF-guarded fetch, except for allow-listed hosts. */
  const fetch = (url: string | URL, options: FetchOptions) => {
    if (agent && isAllowListed(url)) {
      const { dispatcher: _libraryGuard, ...rest } = options;
      return undiciFetch(url, { ...(rest as object), dispatcher: agent }) as unknown as Promise<Response>;
    }
    return globalThis.fetch(url, options as RequestInit);
  };

  return { allowFetch, fetch, close: () => agent?.close() };
};
