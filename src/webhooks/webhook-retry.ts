/**
 * When a failed webhook delivery is tried again, as data (like ZoneMTA's defer schedule, STYLE.md):
 * 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, then every 10 h until three days after the first attempt, the
 * schedule Svix and the Standard Webhooks guidance describe. After that the delivery has failed.
 */
export type WebhookRetrySchedule = {
  delaysSeconds: readonly number[];
  /** Keep repeating the last delay after the list is used up (until `horizonSeconds`). */
  repeatLast: boolean;
  /** No attempt is scheduled later than this after the first attempt. */
  horizonSeconds: number;
};

export const DEFAULT_WEBHOOK_RETRY_SCHEDULE: WebhookRetrySchedule = {
  delaysSeconds: [5, 300, 1800, 7200, 18_000, 36_000],
  repeatLast: true,
  horizonSeconds: 3 * 86_400,
};

/** MAILWARD_WEBHOOK_RETRY_SCHEDULE (comma-separated seconds): exactly these retries, then the delivery has failed. */
export const retryScheduleFrom = (seconds: number[] | undefined): WebhookRetrySchedule =>
  seconds ? { delaysSeconds: seconds, repeatLast: false, horizonSeconds: Number.MAX_SAFE_INTEGER / 1000 } : DEFAULT_WEBHOOK_RETRY_SCHEDULE;

/**
 * Seconds before attempt `attempts + 1`, or null when the schedule is exhausted (the delivery has failed).
 * `firstAttemptAt` and `now` bound the repeating tail by the horizon.
 */
export const webhookRetryDelay = (s: WebhookRetrySchedule, attempts: number, firstAttemptAt: Date, now: Date): number | null => {
  if (attempts < 1) return null;
  const listed = s.delaysSeconds[attempts - 1];
  const delay = listed ?? (s.repeatLast ? s.delaysSeconds.at(-1) : undefined);
  if (delay === undefined) return null;
  if (now.getTime() + delay * 1000 > firstAttemptAt.getTime() + s.horizonSeconds * 1000) return null;
  return delay;
};
