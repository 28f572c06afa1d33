/** What the webhooks module and the event stream read (built from the environment by src/app/config.ts only). */
export type WebhooksConfig = {
  /** MAILWARD_WEBHOOK_ALLOW_HOSTS: `host:port` entries allowed despite the SSRF rules (and over plain http). */
  allowHosts: string[];
  /** MAILWARD_WEBHOOK_RETRY_SCHEDULE: seconds before each retry; undefined keeps the built-in schedule. */
  retryScheduleSeconds: number[] | undefined;
  concurrency: number;
  /** How long one attempt may take (connect, send, answer) before it counts as failed. */
  timeoutMs: number;
  leaseSeconds: number;
  pollMs: number;
  /** MAILWARD_SSE_HEARTBEAT_MS: a comment line on every open stream this often. */
  sseHeartbeatMs: number;
  /** At most this many open streams per API key (429 beyond). */
  sseMaxPerKey: number;
};
