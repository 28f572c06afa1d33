import { Webhook } from 'standardwebhooks';
import { describe, expect, it } from 'vitest';
import { newWebhookSecret, signDelivery } from '../src/webhooks/webhook-signing.js';
import { nonPublicReason } from '../src/webhooks/url-safety.js';
import { DEFAULT_WEBHOOK_RETRY_SCHEDULE, webhookRetryDelay } from '../src/webhooks/webhook-retry.js';
import { readVectorJson } from './support/vectors.js';

describe('webhook signing, address rules and retry schedule', () => {
  it('signs exactly as the standardwebhooks package does, and its verifier accepts every signature of a rotation', () => {
    const vec = readVectorJson<{ cases: { secret: string; msg_id: string; timestamp: number; payload: string; signature: string }[] }>(
      'standard-webhooks/signature.json',
    );
    expect(vec.cases.length).toBeGreaterThan(0);
    for (const c of vec.cases) {
      const at = new Date(c.timestamp * 1000);
      const mine = signDelivery([c.secret], c.msg_id, at, c.payload);
      expect(mine['webhook-signature']).toBe(c.signature);
      expect(mine['webhook-signature']).toBe(new Webhook(c.secret).sign(c.msg_id, at, c.payload));
      expect(mine['webhook-timestamp']).toBe(String(c.timestamp));
    }

    const a = newWebhookSecret();
    const b = newWebhookSecret();
    expect(a).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    const now = new Date();
    const h = signDelivery([b, a], 'evt_x', now, '{}');
    expect(h['webhook-signature'].split(' ')).toHaveLength(2);
    expect(() => new Webhook(a).verify('{}', h)).not.toThrow();
    expect(() => new Webhook(b).verify('{}', h)).not.toThrow();
    expect(() => new Webhook(newWebhookSecret()).verify('{}', h)).toThrow();
  });

  it('names why an address is not public, including IPv4-mapped IPv6 forms', () => {
    const cases: [string, string | null][] = [
      ['127.0.0.1', 'loopback'],
      ['10.0.0.1', 'private'],
      ['172.31.255.255', 'private'],
      ['192.168.1.1', 'private'],
      ['169.254.169.254', 'link_local'],
      ['100.64.0.1', 'cgnat'],
      ['0.0.0.0', 'unspecified'],
      ['224.0.0.1', 'multicast'],
      ['255.255.255.255', 'broadcast'],
      ['::1', 'loopback'],
      ['::', 'unspecified'],
      ['fd00::1', 'private'],
      ['fe80::1', 'link_local'],
      ['::ffff:127.0.0.1', 'loopback'],
      ['::ffff:a9fe:a9fe', 'link_local'],
      ['93.184.215.14', null],
      ['2606:4700::1111', null],
    ];
    for (const [a, reason] of cases) expect(nonPublicReason(a), a).toBe(reason);
  });

  it('retries after 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, then every 10 h until three days after the first attempt', () => {
    const first = new Date('2026-12-01T00:00:00Z');
    const delays: number[] = [];
    let now = first;
    for (let attempts = 1; ; attempts++) {
      const d = webhookRetryDelay(DEFAULT_WEBHOOK_RETRY_SCHEDULE, attempts, first, now);
      if (d === null) break;
      delays.push(d);
      now = new Date(now.getTime() + d * 1000);
    }
    expect(delays.slice(0, 6)).toEqual([5, 300, 1800, 7200, 18_000, 36_000]);
    expect(delays.slice(6).every((d) => d === 36_000)).toBe(true);
    expect(now.getTime() - first.getTime()).toBeLessThanOrEqual(3 * 86_400_000);
    expect(now.getTime() - first.getTime() + 36_000_000).toBeGreaterThan(3 * 86_400_000);
  });
});
