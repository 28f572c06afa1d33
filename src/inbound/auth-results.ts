/**
 * Sender-authentication results of one inbound message, as stored in `messages.auth_results` (JSON; the
 * messages repo maps it) and shown to agents and reviewers. The type lives with the message records.
 */
export type { InboundAuthResults } from '../store/records.js';
