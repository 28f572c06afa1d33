import { LATEST_PROTOCOL_VERSION, SUPPORTED_PROTOCOL_VERSIONS } from '@modelcontextprotocol/sdk/types.js';
import { INSTRUCTIONS, MCP_SERVER_VERSION } from './mcp-server.js';

/**
 * The stateless MCP revision 2026-07-28, served next to SDK 1.x (which speaks up to 2025-11-25 and knows nothing of it).
 *
 * In that revision there is no initialize handshake: every request names its protocol version in
 * `params._meta["io.modelcontextprotocol/protocolVersion"]` (with the client's capabilities), a server MUST answer
 * `server/discover`, and results carry `resultType`. Mailward's HTTP endpoint is already stateless (one server per
 * POST, no session), so a modern tools/list or tools/call is the same call the SDK already answers; this module only
 * answers discovery itself, checks the version, and adds `resultType` (and, to lists, `ttlMs` and `cacheScope`) to what
 * the SDK returns. Checked against a real client of the revision: the MCP Inspector 2.x CLI (`--protocol-era modern`,
 * on the MCP SDK 2.x client), test/mcp-inspector.test.ts.
 */
export const MODERN_PROTOCOL_VERSION = '2026-07-28';
export const META_PROTOCOL_VERSION = 'io.modelcontextprotocol/protocolVersion';
/** JSON-RPC code of UnsupportedProtocolVersionError in the 2026-07-28 schema; its data names the versions in `supported`. */
export const UNSUPPORTED_PROTOCOL_VERSION = -32004;

type RpcRequest = { jsonrpc?: unknown; id?: unknown; method?: unknown; params?: { _meta?: Record<string, unknown> } };

/** The protocol version a modern-era request names in its `_meta`; undefined for 2025-era messages (and batches). */
export const modernVersionOf = (body: unknown): string | undefined => {
  if (!body || typeof body !== 'object' || Array.isArray(body)) return undefined;
  const v = (body as RpcRequest).params?._meta?.[META_PROTOCOL_VERSION];
  return typeof v === 'string' ? v : undefined;
};

export type ModernAnswer =
  /** Answer this JSON-RPC body with this HTTP status, without the SDK. */
  | { kind: 'answer'; status: number; body: Record<string, unknown> }
  /** Hand the request to the SDK under this 2025-era version header, then pass its response through `finish`. */
  | { kind: 'delegate'; sdkVersion: string; finish: (sdkBody: string) => string };

const idOf = (body: unknown) => {
  const id = (body as RpcRequest).id;
  return typeof id === 'string' || typeof id === 'number' ? id : null;
};

/**
 * Results a 2026-07-28 client may cache (SEP-2549 CacheableResult): they carry `ttlMs` and `cacheScope`, which the
 * revision's schema requires (the MCP SDK 2.x client refuses a tools/list without them). Decision: nothing is cached
 * (`ttlMs: 0`) and what is shared is private to the caller, because the tools an agent sees follow its scopes and
 * grants, which a revocation or deactivation changes at once.
 */
const CACHEABLE = new Set([
  'tools/list',
  'prompts/list',
  'resources/list',
  'resources/templates/list',
  'resources/read',
  'server/discover',
]);
export const NO_CACHE = { ttlMs: 0, cacheScope: 'private' } as const;

/** What the server/discover of this endpoint says: every version it speaks, the modern one first. */
export const discoverResult = () => ({
  resultType: 'complete',
  ...NO_CACHE,
  supportedVersions: [MODERN_PROTOCOL_VERSION, ...SUPPORTED_PROTOCOL_VERSIONS],
  capabilities: { tools: {} },
  serverInfo: { name: 'mailward', title: 'Mailward', version: MCP_SERVER_VERSION },
  instructions: INSTRUCTIONS,
});

/** How to answer a request that names a protocol version in its `_meta` (a 2026-07-28 client). */
export const modernAnswer = (body: unknown, version: string): ModernAnswer => {
  const id = idOf(body);
  if (version !== MODERN_PROTOCOL_VERSION) {
    // 2026-07-28 "Versioning": an unsupported version is refused with the versions that are (HTTP 400 over streamable HTTP).
    return {
      kind: 'answer',
      status: 400,
      body: {
        jsonrpc: '2.0',
        id,
        error: {
          code: UNSUPPORTED_PROTOCOL_VERSION,
          message: `Unsupported protocol version ${JSON.stringify(version).slice(0, 40)}; use initialize for 2025-era versions.`,
          data: { supported: [MODERN_PROTOCOL_VERSION], requested: version.slice(0, 40) },
        },
      },
    };
  }
  if ((body as RpcRequest).method === 'server/discover') {
    return { kind: 'answer', status: 200, body: { jsonrpc: '2.0', id, result: discoverResult() } };
  }
  const cacheable = CACHEABLE.has(String((body as RpcRequest).method));
  return {
    kind: 'delegate',
    // The SDK's transport refuses a MCP-Protocol-Version header it does not know; the request is the same under its latest.
    sdkVersion: LATEST_PROTOCOL_VERSION,
    finish: (text) => {
      if (!text) return text;
      const msg = JSON.parse(text) as { result?: Record<string, unknown> };
      if (msg.result && typeof msg.result === 'object') {
        msg.result = { resultType: 'complete', ...(cacheable ? NO_CACHE : {}), ...msg.result };
      }
      return JSON.stringify(msg);
    },
  };
};
