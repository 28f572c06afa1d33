import { createHmac, randomBytes } from 'node:crypto';

/** A new signing secret: `whsec_` + base64 of 32 random bytes (Standard Webhooks, "Signature scheme"). */
export const newWebhookSecret = () => `whsec_${randomBytes(32).toString('base64')}`;

const keyCache = new Map<string, Buffer>();
/** The HMAC key of a `whsec_` secret: the base64 after the prefix (Standard Webhooks, "Symmetric"). */
const keyOf = (secret: string) => {
  let k = keyCache.get(secret);
  if (!k) {
    k = Buffer.from(secret.startsWith('whsec_') ? secret.slice(6) : secret, 'base64');
    if (keyCache.size > 10_000) keyCache.clear();
    keyCache.set(secret, k);
  }
  return k;
};

/** One `v1,<base64 HMAC-SHA256 of "id.timestamp.body">` signature (Standard Webhooks, "Signature scheme"). */
export const signV1 = (secret: string, msgId: string, timestampSeconds: number, body: string) =>
  `v1,${createHmac('sha256', keyOf(secret)).update(`${msgId}.${timestampSeconds}.${body}`).digest('base64')}`;

/**
 * The Standard Webhooks headers of one delivery: `webhook-id` (the event id, so receivers deduplicate
 * across retries and replays), `webhook-timestamp` (seconds) and `webhook-signature`, one `v1,` signature
 * per live secret, space-separated (several during a rotation's overlap, newest first). HMAC through
 * node:crypto; test/webhook-signing.test.ts checks it byte for byte against the `standardwebhooks`
 * package's own `sign` and `verify`.
 */
export const signDelivery = (secrets: readonly string[], msgId: string, at: Date, body: string) => {
  const ts = Math.floor(at.getTime() / 1000);
  return {
    'webhook-id': msgId,
    'webhook-timestamp': String(ts),
    'webhook-signature': secrets.map((s) => signV1(s, msgId, ts, body)).join(' '),
  };
};
