import path from 'node:path';
import { z } from 'zod';
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
  MAILWARD_APPROVAL_TTL: z.coerce
    .number()
    .int()
    .min(60)
    .default(72 * 3600),
  MAILWARD_AUDIT_RETENTION_DAYS: z.coerce.number().int().min(2190, 'must be at least 2190 (six years)').default(2190),
  // Where each signed audit checkpoint is published outside the database; `off` publishes nothing.
  MAILWARD_CHECKPOINT_DIR: z.string().min(1).optional(),
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
  http: { host: string; port: number; bodyLimit: number; trustProxy: boolean };
  smtp: { host: string; port: number; maxMessageBytes: number; relay: string | undefined };
  dataDir: string;
  database:
    | { kind: 'sqlite'; file: string; checkpointEveryMs: number; queueLimit: number; queueWaitMs: number }
    | { kind: 'postgres'; url: string; poolSize: number };
  masterKey: string | undefined;
  /** MAILWARD_MASTER_KEYS: a versioned key ring given in the environment (see master-key.ts). */
  masterKeys?: string | undefined;
  logLevel: string;
  bootstrap: { orgName: string; domain: string };
  rateLimitPerMinute: number;
  rateLimitSyncMs: number;
  authCachePollMs: number;
  approvalTtlSeconds: number;
  auditRetentionDays: number;
  /** Directory each signed audit checkpoint is published to (default <data dir>/checkpoints); null: off. */
  checkpointDir: string | null;
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
    bootstrap: { orgName: e.MAILWARD_ORG_NAME, domain: e.MAILWARD_DOMAIN.toLowerCase() },
    rateLimitPerMinute: e.MAILWARD_RATE_LIMIT_PER_MINUTE,
    rateLimitSyncMs: e.MAILWARD_RATE_LIMIT_SYNC_MS,
    authCachePollMs: e.MAILWARD_AUTH_CACHE_MS,
    approvalTtlSeconds: e.MAILWARD_APPROVAL_TTL,
    auditRetentionDays: e.MAILWARD_AUDIT_RETENTION_DAYS,
    checkpointDir: e.MAILWARD_CHECKPOINT_DIR === 'off' ? null : path.resolve(dataDir, e.MAILWARD_CHECKPOINT_DIR ?? 'checkpoints'),
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
  };
};
