/**
 * The settings outbound mail reads, declared by the module itself (STYLE.md "Learned from the first wave":
 * each module declares its own config type; only `app/` builds them from the environment).
 * `app/config.ts`'s `Config` satisfies this shape structurally.
 */
export type MailConfig = {
  smtp: { maxMessageBytes: number; relay: string | undefined };
  bootstrap: { domain: string };
  approvalTtlSeconds: number;
  /** 21 CFR 11.200: how recent a session's second factor must be to sign a decision (MAILWARD_STEPUP_SECONDS). */
  accounts?: { stepUpSeconds: number };
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
};
