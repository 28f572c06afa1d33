import { type DestinationStream, destination as pinoDestination, type Logger, pino, stdTimeFunctions } from 'pino';

/**
 * No PHI, bodies, addresses or secrets in logs (45 CFR 164.312(b) logs must not
 * themselves become a disclosure). Anything under these paths is replaced.
 */
export const REDACT_PATHS = [
  'authorization',
  'headers.authorization',
  'req.headers.authorization',
  'req.headers.cookie',
  'headers.cookie',
  '*.headers.authorization',
  '*.headers.cookie',
  // Node's HTTP parser keeps the raw bytes of a request it could not parse (all its headers, keys included).
  'rawPacket',
  '*.rawPacket',
  // Query strings and full URLs can carry keys and addresses (?api_key=, /v1/contacts/{email}).
  'url',
  '*.url',
  'query',
  '*.query',
  'querystring',
  '*.querystring',
  '*.password',
  '*.secret',
  '*.value',
  '*.key',
  '*.api_key',
  '*.text',
  '*.html',
  '*.body',
  '*.subject',
  '*.email',
  '*.to',
  '*.cc',
  '*.bcc',
  '*.from',
  '*.address',
  '*.otpauth_uri',
];

const SCRUBBERS: [RegExp, string][] = [
  [/\bmw_[A-Za-z0-9_]{8,}/g, '[redacted]'],
  [/\b(Bearer|Basic)\s+[^\s"',;]+/gi, '$1 [redacted]'],
  [/otpauth:\/\/[^\s"']*/gi, 'otpauth://[redacted]'],
  [/\?[^\s"'#]*/g, '?[redacted]'],
  [/[^\s@"'<>(),;:/]+@[^\s@"'<>(),;:/]+\.[A-Za-z]{2,}/g, '[address]'],
];

/**
 * Free text that reaches a log line (a message, an error's message or stack)
 * with keys, Authorization values, otpauth URIs, query strings and addresses
 * taken out, then cut short: redact paths cannot reach inside strings, and
 * dependencies put request details into messages (fastify's "Route GET:/x?y
 * not found", Node's parse errors).
 */
export const scrubText = (text: string, max = 500): string => {
  let t = text.length > max * 4 ? text.slice(0, max * 4) : text;
  for (const [re, to] of SCRUBBERS) t = t.replace(re, to);
  return t.length > max ? `${t.slice(0, max)}...` : t;
};

type ErrorLike = { type?: unknown; name?: unknown; code?: unknown; statusCode?: unknown; message?: unknown; stack?: unknown };

/**
 * Errors keep only what says what went wrong: class, code, status, and
 * scrubbed message and stack. Everything else an error carries is dropped,
 * above all Node's `rawPacket` (the raw request bytes of an HTTP client
 * error, logged by fastify at trace level) and any request or body attached.
 */
export const serializeError = (e: unknown): unknown => {
  if (typeof e === 'string') return scrubText(e);
  if (!e || typeof e !== 'object') return e;
  const x = e as ErrorLike;
  const out: Record<string, unknown> = {
    type: typeof x.type === 'string' ? x.type : typeof x.name === 'string' ? x.name : (e as object).constructor?.name,
  };
  if (typeof x.code === 'string' || typeof x.code === 'number') out.code = x.code;
  if (typeof x.statusCode === 'number') out.statusCode = x.statusCode;
  if (typeof x.message === 'string') out.message = scrubText(x.message);
  if (typeof x.stack === 'string') out.stack = scrubText(x.stack, 2000);
  return out;
};

/** A request is logged by id, method and route pattern only: never its URL, query, headers or body. */
const serializeRequest = (r: { id?: unknown; method?: unknown; routeOptions?: { url?: unknown } } | null | undefined) => ({
  id: r?.id,
  method: r?.method,
  route: typeof r?.routeOptions?.url === 'string' ? r.routeOptions.url : 'unmatched',
});

const serializeResponse = (r: { statusCode?: unknown } | null | undefined) => ({ statusCode: r?.statusCode });

export type LogOptions = { level?: string; destination?: DestinationStream | number };

export const createLogger = ({ level = 'info', destination = 1 }: LogOptions = {}): Logger =>
  pino(
    {
      level,
      base: { service: 'mailward' },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      serializers: {
        err: serializeError,
        error: serializeError,
        req: serializeRequest,
        request: serializeRequest,
        res: serializeResponse,
        reply: serializeResponse,
      },
      hooks: {
        // Applies to every level (trace included): free-text arguments are scrubbed like error messages.
        logMethod(args, method) {
          const clean = args.map((a) => (typeof a === 'string' ? scrubText(a) : a instanceof Error ? serializeError(a) : a)) as Parameters<
            typeof method
          >;
          return method.apply(this, clean);
        },
      },
      timestamp: stdTimeFunctions.isoTime,
    },
    typeof destination === 'number' ? pinoDestination({ fd: destination, sync: false }) : destination,
  );

export type { Logger };
