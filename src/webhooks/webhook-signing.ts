import { randomBytes } from 'node:crypto';
import { Webhook } from 'standardwebhooks';

/** A new signing secret: `whsec_` + base64 of 32 random bytes (Standard Webhooks, "Signature scheme"). */
export const newWebhookSecret = () => `whsec_${randomBytes(32).toString('base64')}`;

/**
 * The Standard Webhooks headers of one delivery: `webhook-id` (the event id, so receivers deduplicate
 * across retries and replays), `webhook-timestamp` (seconds) and `webhook-signature`, one `v1,<base64
 * HMAC-SHA256 of "id.timestamp.body">` per live secret, space-separated (several during a rotation's
 * overlap, newest first). Signed by the `standardwebhooks` package itself.
 */
export const signDelivery = (secrets: readonly string[], msgId: string, at: Date, body: string) => {
  const ts = new Date(Math.floor(at.getTime() / 1000) * 1000);
  return {
    'webhook-id': msgId,
    'webhook-timestamp': String(Math.floor(ts.getTime() / 1000)),
    'webhook-signature': secrets.map((s) => new Webhook(s).sign(msgId, ts, body)).join(' '),
  };
};
