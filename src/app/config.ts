import { parseWitnesses, type Witness } from '../audit/witness-client.js';
import path from 'node:path';
import { z } from 'zod';
import type { AdmissionConfig } from '../http/admission.js';
import type { WebhooksConfig } from '../webhooks/webhooks-config.js';

const port = z.coerce.number().int().min(0).max(65535);
const bool = z.enum(['true', 'false', '1', '0', 'yes', 'no']).transform((v) => v === 'true' || v === '1' || v === 'yes');

/**
 * Every setting Mailward reads from the environment, parsed once at start.
 * A bad value stops start-up with every problem listed (see loadConfig).
 */
export const envSchema = z.object({
  MAILWARD_HTTP_PORT: port.default(8025),
  MAILWARD_HTTP_HOST: z.string().min(1).default('127.0.0.1'),
  MAILWARD_SMTP_PORT: port.default(2525),
  MAILWARD_SMTP_HOST: z.string().min(1).default('127.0.0.1'),
  MAILWARD_DATA_DIR: z.string().min(1).default('./data'),
  DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, 'must be a postgres:// or postgresql:// URL')
    .optional(),
  MAILWARD_DB_POOL_SIZE: z.coerce.number().int().min(1).max(200).default(10),
  MAILWARD_SQLITE_CHECKPOINT_MS: z.coerce.number().int().min(0).max(60_000).default(200),
  // SQLite has one connection per process: callers wait for it in a FIFO queue of at most this many, each at most this long (then 503 store_busy).
  MAILWARD_SQLITE_QUEUE_LIMIT: z.coerce.number().int().min(1).max(100_000).default(512),
  MAILWARD_SQLITE_QUEUE_WAIT_MS: z.coerce.number().int().min(10).max(600_000).default(5000),
  MAILWARD_MASTER_KEY: z
    .string()
    .refine((v) => Buffer.from(v, 'base64').length === 32, 'must be base64 of exactly 32 bytes')
    .optional(),
  // Several key versions as JSON {"active":"2","keys":{"1":"b64","2":"b64"}}: how a key kept outside the data dir is rotated.
  MAILWARD_MASTER_KEYS: z.string().min(2).optional(),
  MAILWARD_LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  MAILWARD_ORG_NAME: z.string().min(1).max(200).default('Mailward'),
  MAILWARD_DOMAIN: z
    .string()
    .regex(/^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]$/i, 'must be a domain name')
    .default('mailward.localhost'),
  MAILWARD_RATE_LIMIT_PER_MINUTE: z.coerce.number().int().min(1).default(3000),
  MAILWARD_RATE_LIMIT_SYNC_MS: z.coerce.number().int().min(0).max(10_000).default(250),
  MAILWARD_AUTH_CACHE_MS: z.coerce.number().int().min(0).max(10_000).default(100),
  MAILWARD_BODY_LIMIT_BYTES: z.coerce.number().int().min(1024).default(1_048_576),
  MAILWARD_TRUST_PROXY: bool.default(false),
  // HTTP admission queue (src/http/admission.ts): requests running at once (0: no limit), waiting beyond them, longest wait (then 503 server_busy).
  MAILWARD_HTTP_MAX_IN_FLIGHT: z.coerce.number().int().min(0).max(100_000).default(64),
  MAILWARD_HTTP_QUEUE_LIMIT: z.coerce.number().int().min(0).max(100_000).default(1024),
  MAILWARD_HTTP_QUEUE_WAIT_MS: z.coerce.number().int().min(10).max(600_000).default(5000),
  MAILWARD_APPROVAL_TTL: z.coerce
    .number()
    .int()
    .min(60)
    .default(72 * 3600),
  // Reviewer notices: an approval this close to expiring is escalated once; digests at most every N minutes by default.
  MAILWARD_APPROVAL_ESCALATE_SECONDS: z.coerce
    .number()
    .int()
    .min(60)
    .default(6 * 3600),
  MAILWARD_NOTIFY_BATCH_MINUTES: z.coerce.number().int().min(1).max(1440).default(15),
  MAILWARD_AUDIT_RETENTION_DAYS: z.coerce.number().int().min(2190, 'must be at least 2190 (six years)').default(2190),
  // How often the audit integrator sequences committed events (ms): the bound on the delay from commit to inclusion.
  MAILWARD_AUDIT_INTEGRATE_MS: z.coerce.number().int().min(5).max(5000).default(100),
  // Where each signed audit checkpoint is published outside the database; `off` publishes nothing.
  MAILWARD_CHECKPOINT_DIR: z.string().min(1).optional(),
  // Transparency-log witnesses (c2sp.org/tlog-witness): "<submission URL> <cosignature/v1 verifier key>", comma-separated.
  MAILWARD_WITNESSES: z
    .string()
    .optional()
    .superRefine((v, ctx) => {
      try {
        parseWitnesses(v);
      } catch (e) {
        ctx.addIssue({ code: 'custom', message: (e as Error).message });
      }
    }),
  MAILWARD_MAX_MESSAGE_BYTES: z.coerce
    .number()
    .int()
    .min(1024)
    .default(25 * 1024 * 1024),
  MAILWARD_SMTP_RELAY: z
    .string()
    .regex(/^smtps?:\/\/[^\s]+$/, 'must look like smtp://host:port')
    .optional(),
  MAILWARD_DNS_OVERRIDES: z.string().min(1).optional(),
  // Outbound delivery. STARTTLS with certificate checks stays on unless turned off explicitly.
  MAILWARD_SMTP_RELAY_REQUIRE_TLS: bool.default(true),
  MAILWARD_SMTP_TLS_CA_FILE: z.string().min(1).optional(),
  MAILWARD_SMTP_MX_PORT: port.default(25),
  MAILWARD_DELIVERY_RETRY_SCHEDULE: z
    .string()
    .regex(/^\d+(,\d+)*$/, 'must be comma-separated seconds, e.g. 60,300,900')
    .optional(),
  MAILWARD_DELIVERY_CONCURRENCY: z.coerce.number().int().min(1).max(256).default(16),
  MAILWARD_DELIVERY_POLL_MS: z.coerce.number().int().min(10).max(60_000).default(500),
  MAILWARD_DELIVERY_LEASE_SECONDS: z.coerce.number().int().min(1).max(86_400).default(300),
  MAILWARD_SIGNING_THREADS: z.coerce.number().int().min(0).max(16).default(1),
  // Inbound SMTP. Without key and cert files, a self-signed development certificate is generated into the data dir.
  MAILWARD_SMTP_TLS_KEY_FILE: z.string().min(1).optional(),
  MAILWARD_SMTP_TLS_CERT_FILE: z.string().min(1).optional(),
  MAILWARD_SMTP_HOSTNAME: z
    .string()
    .regex(/^[a-z0-9.-]{1,253}$/i, 'must be a host name')
    .optional(),
  MAILWARD_SMTP_REQUIRE_TLS: bool.default(false),
  MAILWARD_SMTP_MAX_CLIENTS: z.coerce.number().int().min(1).max(10_000).default(200),
  MAILWARD_SMTP_MAX_CLIENTS_PER_IP: z.coerce.number().int().min(1).max(10_000).default(20),
  MAILWARD_SMTP_RATE_PER_MINUTE: z.coerce.number().int().min(0).default(1200),
  MAILWARD_SMTP_MAX_RECIPIENTS: z.coerce.number().int().min(1).max(1000).default(100),
  MAILWARD_INBOUND_THREADS: z.coerce.number().int().min(0).max(16).default(1),
  // How long /metrics reuses its store snapshot (outbox, approvals, audit head, checkpoint): scrapes never hammer the store.
  MAILWARD_METRICS_CACHE_MS: z.coerce.number().int().min(0).max(300_000).default(5000),
  // An optional local ONNX text classifier (a file, never downloaded) combined with the PHI rules; missing file: start refuses.
  MAILWARD_PHI_MODEL: z.string().min(1).optional(),
  // Human sign-in. The console's public origin (invitation links, WebAuthn origin and RP id, the OpenID redirect URI);
  // unset, it is taken from the request's Host, on loopback only.
  MAILWARD_PUBLIC_URL: z
    .string()
    .regex(/^https?:\/\/[^/\s]+$/, 'must be an origin such as https://mailward.example.org (no path)')
    // The session cookie is Secure: browsers keep it over http only on localhost.
    .refine(
      (v) => v.startsWith('https://') || /^http:\/\/(localhost|127\.0\.0\.1|\[::1\])(:\d+)?$/.test(v),
      'must be https:// (http:// only for localhost)',
    )
    .optional(),
  // The OAuth 2.1 authorization server of /mcp (src/oauth): access tokens are short-lived, refresh tokens rotate.
  // Client ID Metadata Documents come only from public https hosts, except allow-listed host:port pairs (test
  // clients on loopback, internal deployments), which are fetched trusting the CA file too.
  MAILWARD_OAUTH_CIMD_ALLOW_HOSTS: z
    .string()
    .regex(/^\s*[^\s,:]+:\d{1,5}\s*(,\s*[^\s,:]+:\d{1,5}\s*)*$/, 'must be comma-separated host:port entries')
    .optional(),
  MAILWARD_OAUTH_CIMD_CA_FILE: z.string().min(1).optional(),
  MAILWARD_OAUTH_ACCESS_TOKEN_SECONDS: z.coerce.number().int().min(60).max(86_400).default(600),
  MAILWARD_OAUTH_REFRESH_TOKEN_SECONDS: z.coerce
    .number()
    .int()
    .min(300)
    .max(90 * 86_400)
    .default(14 * 86_400),
  MAILWARD_SESSION_IDLE_SECONDS: z.coerce.number().int().min(60).max(86_400).default(900),
  MAILWARD_SESSION_MAX_SECONDS: z.coerce
    .number()
    .int()
    .min(300)
    .max(7 * 86_400)
    .default(12 * 3600),
  MAILWARD_STEPUP_SECONDS: z.coerce.number().int().min(30).max(3600).default(300),
  MAILWARD_INVITATION_TTL_SECONDS: z.coerce
    .number()
    .int()
    .min(600)
    .max(30 * 86_400)
    .default(72 * 3600),
  MAILWARD_SIGNIN_LOCK_SECONDS: z.coerce.number().int().min(60).max(86_400).default(1800),
  // Read by client commands only (`mailward mcp`, provisioning: src/cli/provision-client.ts), never by the server;
  // listed so they are known settings.
  MAILWARD_ADDR: z.string().min(1).optional(),
  MAILWARD_API_KEY: z.string().min(1).optional(),
  // Events out (webhooks, the event stream). Allow-listed host:port pairs skip the SSRF address rules and may use http.
  MAILWARD_WEBHOOK_ALLOW_HOSTS: z
    .string()
    .regex(/^\s*[^\s,:]+:\d{1,5}\s*(,\s*[^\s,:]+:\d{1,5}\s*)*$/, 'must be comma-separated host:port entries')
    .optional(),
  MAILWARD_WEBHOOK_RETRY_SCHEDULE: z
    .string()
    .regex(/^\d+(,\d+)*$/, 'must be comma-separated seconds, e.g. 5,300,1800')
    .optional(),
  MAILWARD_WEBHOOK_CONCURRENCY: z.coerce.number().int().min(1).max(256).default(32),
  MAILWARD_WEBHOOK_TIMEOUT_MS: z.coerce.number().int().min(100).max(120_000).default(10_000),
  MAILWARD_WEBHOOK_LEASE_SECONDS: z.coerce.number().int().min(1).max(3600).default(60),
  MAILWARD_WEBHOOK_POLL_MS: z.coerce.number().int().min(10).max(60_000).default(1000),
  MAILWARD_SSE_HEARTBEAT_MS: z.coerce.number().int().min(10).max(300_000).default(15_000),
  MAILWARD_SSE_MAX_STREAMS_PER_KEY: z.coerce.number().int().min(1).max(1000).default(5),
});

export type Env = z.infer<typeof envSchema>;

export type Config = {
  http: { host: string; port: number; bodyLimit: number; trustProxy: boolean; admission: AdmissionConfig };
  smtp: { host: string; port: number; maxMessageBytes: number; relay: string | undefined };
  dataDir: string;
  database:
    | { kind: 'sqlite'; file: string; checkpointEveryMs: number; queueLimit: number; queueWaitMs: number }
    | { kind: 'postgres'; url: string; poolSize: number };
  masterKey: string | undefined;
  /** MAILWARD_MASTER_KEYS: a versioned key ring given in the environment (see master-key.ts). */
  masterKeys?: string | undefined;
  logLevel: string;
  /** How long /metrics reuses its store snapshot (ms). */
  metricsCacheMs?: number;
  bootstrap: { orgName: string; domain: string };
  rateLimitPerMinute: number;
  rateLimitSyncMs: number;
  authCachePollMs: number;
  approvalTtlSeconds: number;
  approvalEscalateSeconds: number;
  notifyBatchMinutes: number;
  auditRetentionDays: number;
  /** Milliseconds between the audit integrator's passes (MAILWARD_AUDIT_INTEGRATE_MS, default 100). */
  auditIntegrateMs: number;
  /** Directory each signed audit checkpoint is published to (default <data dir>/checkpoints); null: off. */
  checkpointDir: string | null;
  /** Witnesses each new audit checkpoint is submitted to (MAILWARD_WITNESSES). */
  witnesses: Witness[];
  dnsOverridesFile: string | undefined;
  delivery: {
    requireTls: boolean;
    tlsCaFile: string | undefined;
    mxPort: number;
    /** Seconds to wait before each retry; undefined keeps the built-in schedule. */
    retryScheduleSeconds: number[] | undefined;
    concurrency: number;
    pollMs: number;
    /** How long a claimed job stays with its worker before another may take it over (a crashed worker's jobs). */
    leaseSeconds: number;
    /** Worker threads for DKIM/JWS signing (default 1); 0 signs on the event loop. */
    signingThreads: number;
  };
  /** Events out: webhooks and the event stream (src/webhooks/webhooks-config.ts). */
  webhooks: WebhooksConfig;
  /** Inbound SMTP listener. */
  inbound: {
    tlsKeyFile: string | undefined;
    tlsCertFile: string | undefined;
    /** Name in the greeting, EHLO answer and Authentication-Results; default the machine's host name. */
    hostname: string | undefined;
    /** Refuse MAIL FROM before STARTTLS (530 5.7.0); off by default, as public MX must accept opportunistic TLS (RFC 3207). */
    requireTls: boolean;
    maxClients: number;
    maxClientsPerIp: number;
    /** Messages per client address per minute; 0: no limit. */
    ratePerMinute: number;
    maxRecipients: number;
    /** Worker threads for authentication, parsing and the PHI scan of received mail (default 1); 0 runs them on the event loop. */
    analysisThreads: number;
  };
  /** PHI screen (src/phi/phi-model.ts PhiModelConfig): the local model's path, or null for rules only. */
  phi: { modelPath: string | null };
  /** Human sign-in (src/accounts) and the console's origin. */
  accounts: {
    publicUrl: string | undefined;
    sessionIdleSeconds: number;
    sessionMaxSeconds: number;
    stepUpSeconds: number;
    invitationTtlSeconds: number;
    lockSeconds: number;
  };
  /** The OAuth 2.1 authorization server of /mcp (src/oauth/oauth-server.ts). */
  oauth: {
    accessTokenSeconds: number;
    refreshTokenSeconds: number;
    /** MAILWARD_OAUTH_CIMD_ALLOW_HOSTS: `host:port` (lower case) whose client metadata documents skip the SSRF rules. */
    cimdAllowHosts: string[];
    /** MAILWARD_OAUTH_CIMD_CA_FILE: PEM CA certificates trusted (besides the system's) for fetches to those hosts. */
    cimdCaFile: string | undefined;
  };
};

export class ConfigError extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

/** Parses the environment once. Throws ConfigError listing every problem. */
export const loadConfig = (env: NodeJS.ProcessEnv = process.env): Config => {
  const parsed = envSchema.safeParse(Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== '')));
  if (!parsed.success) {
    throw new ConfigError(parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`));
  }
  const e = parsed.data;
  const dataDir = path.resolve(e.MAILWARD_DATA_DIR);
  return {
    http: {
      host: e.MAILWARD_HTTP_HOST,
      port: e.MAILWARD_HTTP_PORT,
      bodyLimit: e.MAILWARD_BODY_LIMIT_BYTES,
      trustProxy: e.MAILWARD_TRUST_PROXY,
      admission: {
        maxInFlight: e.MAILWARD_HTTP_MAX_IN_FLIGHT,
        queueLimit: e.MAILWARD_HTTP_QUEUE_LIMIT,
        queueWaitMs: e.MAILWARD_HTTP_QUEUE_WAIT_MS,
      },
    },
    smtp: {
      host: e.MAILWARD_SMTP_HOST,
      port: e.MAILWARD_SMTP_PORT,
      maxMessageBytes: e.MAILWARD_MAX_MESSAGE_BYTES,
      relay: e.MAILWARD_SMTP_RELAY,
    },
    dataDir,
    database: e.DATABASE_URL
      ? { kind: 'postgres', url: e.DATABASE_URL, poolSize: e.MAILWARD_DB_POOL_SIZE }
      : {
          kind: 'sqlite',
          file: path.join(dataDir, 'mailward.db'),
          checkpointEveryMs: e.MAILWARD_SQLITE_CHECKPOINT_MS,
          queueLimit: e.MAILWARD_SQLITE_QUEUE_LIMIT,
          queueWaitMs: e.MAILWARD_SQLITE_QUEUE_WAIT_MS,
        },
    masterKey: e.MAILWARD_MASTER_KEY,
    masterKeys: e.MAILWARD_MASTER_KEYS,
    logLevel: e.MAILWARD_LOG_LEVEL,
    metricsCacheMs: e.MAILWARD_METRICS_CACHE_MS,
    bootstrap: { orgName: e.MAILWARD_ORG_NAME, domain: e.MAILWARD_DOMAIN.toLowerCase() },
    rateLimitPerMinute: e.MAILWARD_RATE_LIMIT_PER_MINUTE,
    rateLimitSyncMs: e.MAILWARD_RATE_LIMIT_SYNC_MS,
    authCachePollMs: e.MAILWARD_AUTH_CACHE_MS,
    approvalTtlSeconds: e.MAILWARD_APPROVAL_TTL,
    approvalEscalateSeconds: e.MAILWARD_APPROVAL_ESCALATE_SECONDS,
    notifyBatchMinutes: e.MAILWARD_NOTIFY_BATCH_MINUTES,
    auditRetentionDays: e.MAILWARD_AUDIT_RETENTION_DAYS,
    auditIntegrateMs: e.MAILWARD_AUDIT_INTEGRATE_MS,
    checkpointDir: e.MAILWARD_CHECKPOINT_DIR === 'off' ? null : path.resolve(dataDir, e.MAILWARD_CHECKPOINT_DIR ?? 'checkpoints'),
    witnesses: parseWitnesses(e.MAILWARD_WITNESSES),
    dnsOverridesFile: e.MAILWARD_DNS_OVERRIDES,
    delivery: {
      requireTls: e.MAILWARD_SMTP_RELAY_REQUIRE_TLS,
      tlsCaFile: e.MAILWARD_SMTP_TLS_CA_FILE,
      mxPort: e.MAILWARD_SMTP_MX_PORT,
      retryScheduleSeconds: e.MAILWARD_DELIVERY_RETRY_SCHEDULE?.split(',').map(Number),
      concurrency: e.MAILWARD_DELIVERY_CONCURRENCY,
      pollMs: e.MAILWARD_DELIVERY_POLL_MS,
      leaseSeconds: e.MAILWARD_DELIVERY_LEASE_SECONDS,
      signingThreads: e.MAILWARD_SIGNING_THREADS,
    },
    webhooks: {
      allowHosts: (e.MAILWARD_WEBHOOK_ALLOW_HOSTS ?? '')
        .split(',')
        .map((h) => h.trim().toLowerCase())
        .filter(Boolean),
      retryScheduleSeconds: e.MAILWARD_WEBHOOK_RETRY_SCHEDULE?.split(',').map(Number),
      concurrency: e.MAILWARD_WEBHOOK_CONCURRENCY,
      timeoutMs: e.MAILWARD_WEBHOOK_TIMEOUT_MS,
      leaseSeconds: e.MAILWARD_WEBHOOK_LEASE_SECONDS,
      pollMs: e.MAILWARD_WEBHOOK_POLL_MS,
      sseHeartbeatMs: e.MAILWARD_SSE_HEARTBEAT_MS,
      sseMaxPerKey: e.MAILWARD_SSE_MAX_STREAMS_PER_KEY,
    },
    inbound: {
      tlsKeyFile: e.MAILWARD_SMTP_TLS_KEY_FILE,
      tlsCertFile: e.MAILWARD_SMTP_TLS_CERT_FILE,
      hostname: e.MAILWARD_SMTP_HOSTNAME,
      requireTls: e.MAILWARD_SMTP_REQUIRE_TLS,
      maxClients: e.MAILWARD_SMTP_MAX_CLIENTS,
      maxClientsPerIp: e.MAILWARD_SMTP_MAX_CLIENTS_PER_IP,
      ratePerMinute: e.MAILWARD_SMTP_RATE_PER_MINUTE,
      maxRecipients: e.MAILWARD_SMTP_MAX_RECIPIENTS,
      analysisThreads: e.MAILWARD_INBOUND_THREADS,
    },
    phi: { modelPath: e.MAILWARD_PHI_MODEL ? path.resolve(e.MAILWARD_PHI_MODEL) : null },
    accounts: {
      publicUrl: e.MAILWARD_PUBLIC_URL,
      sessionIdleSeconds: e.MAILWARD_SESSION_IDLE_SECONDS,
      sessionMaxSeconds: e.MAILWARD_SESSION_MAX_SECONDS,
      stepUpSeconds: e.MAILWARD_STEPUP_SECONDS,
      invitationTtlSeconds: e.MAILWARD_INVITATION_TTL_SECONDS,
      lockSeconds: e.MAILWARD_SIGNIN_LOCK_SECONDS,
    },
    oauth: {
      accessTokenSeconds: e.MAILWARD_OAUTH_ACCESS_TOKEN_SECONDS,
      refreshTokenSeconds: e.MAILWARD_OAUTH_REFRESH_TOKEN_SECONDS,
      cimdAllowHosts: (e.MAILWARD_OAUTH_CIMD_ALLOW_HOSTS ?? '')
        .split(',')
        .map((h) => h.trim().toLowerCase())
        .filter(Boolean),
      cimdCaFile: e.MAILWARD_OAUTH_CIMD_CA_FILE,
    },
  };
};

/**
 * MAILWARD_* names Mailward reads outside the server's settings: the MCP stdio
 * key, the provisioning CLI's server address and key, the webhook allow list
 * (CONTRACT.md), and the test and benchmark harnesses' prefixes.
 */
const OTHER_KNOWN = new Set(['MAILWARD_API_KEY', 'MAILWARD_ADDR', 'MAILWARD_TOKEN', 'MAILWARD_WEBHOOK_ALLOW_HOSTS']);
const OTHER_PREFIXES = ['MAILWARD_TEST_', 'MAILWARD_BENCH_', 'MAILWARD_FUZZ_'];

/** Edit distance (Levenshtein), for "did you mean" on a misspelt variable. */
const distance = (a: string, b: string) => {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0] as number;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j] as number;
      row[j] = Math.min((row[j] as number) + 1, (row[j - 1] as number) + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return row[b.length] as number;
};

/**
 * MAILWARD_* variables in `env` that Mailward does not know: a typo
 * (`MAILWARD_SMTP_RELAI`) silently leaves the default in force, so `serve`
 * names each at start with the closest known name.
 */
export const unknownEnvVars = (env: NodeJS.ProcessEnv = process.env): { name: string; suggestion: string | null }[] => {
  const known = [...Object.keys(envSchema.shape), ...OTHER_KNOWN];
  return Object.keys(env)
    .filter((k) => k.startsWith('MAILWARD_') && !known.includes(k) && !OTHER_PREFIXES.some((p) => k.startsWith(p)))
    .sort()
    .map((name) => {
      let best: { k: string; d: number } | null = null;
      for (const k of known) {
        const d = distance(name, k);
        if (!best || d < best.d) best = { k, d };
      }
      return { name, suggestion: best && best.d <= Math.max(2, Math.floor(name.length / 5)) ? best.k : null };
    });
};
