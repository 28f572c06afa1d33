/**
 * The settings inbound mail reads, declared by the module itself (STYLE.md "Learned from the first wave":
 * each module declares its own config type; only `app/` builds them from the environment).
 * `app/config.ts`'s `Config` satisfies this shape structurally.
 */
export type InboundConfig = {
  approvalTtlSeconds: number;
  dnsOverridesFile: string | undefined;
  inbound: {
    /** Name in the greeting, EHLO answer and Authentication-Results; default the machine's host name. */
    hostname: string | undefined;
    /** Worker threads for authentication, parsing and the PHI scan of received mail (default 1); 0 runs them on the event loop. */
    analysisThreads: number;
    /** Longest wait, in ms, for messages still being analysed to share a commit (commit-batcher.ts); default 5, 0 never waits. */
    gatherMs?: number;
  };
};
