/**
 * How long to wait before each retry of a deferred delivery, as data (like
 * ZoneMTA's defer schedule). After the last entry the delivery is `failed`.
 * About five days in all, the usual queue lifetime (RFC 5321 4.5.4.1 suggests
 * at least 4-5 days).
 */
export const DEFAULT_RETRY_SCHEDULE_SECONDS = [60, 300, 900, 1800, 3600, 7200, 14_400, 28_800, 43_200, 86_400, 86_400, 86_400, 86_400];

/** Seconds before attempt `attempts + 1`, or null when the schedule is exhausted (the general worker's rule). */
export { retryDelay as nextRetryDelay } from '../queue/job-worker.js';
