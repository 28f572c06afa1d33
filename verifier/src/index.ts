/**
 * @mailward/verifier: checks mail from a Mailward installation without trusting it or its server:
 * DKIM (both signatures), the agent-attribution headers, X-Agent-Identity, and the per-message
 * transparency receipt (c2sp.org/tlog-proof) under a log-signed, witness-cosigned checkpoint.
 * Offline: keys come from a key directory and DNS answers the caller supplies.
 */
export * from './attribution.js';
export * from './directory.js';
export * from './merkle.js';
export * from './message.js';
export * from './note.js';
export * from './tlog-proof.js';
export * from './verify.js';
