import http from 'node:http';
import https from 'node:https';
import { describe, expect, it } from 'vitest';
import { newId } from '../src/kernel/ids.js';
import { checkWebhookUrl } from '../src/webhooks/url-safety.js';
import { createWebhookAgents } from '../src/webhooks/webhook-worker.js';

describe('webhook agents, URL checks and ids (the parts kept between attempts)', () => {
  it("names an attempt's pool exactly as Node does plus the checked address, the same string each time, and a new one per address", () => {
    const agents = createWebhookAgents(4);
    for (const [agent, base] of [
      [agents.http, http.Agent.prototype],
      [agents.https, https.Agent.prototype],
    ] as const) {
      for (const o of [
        { host: 'hooks.example', port: 443, servername: 'hooks.example', mailwardAddress: '203.0.113.5' },
        { host: 'hooks.example', port: 8443, mailwardAddress: '203.0.113.5' },
        { host: '127.0.0.1', port: 80, mailwardAddress: '127.0.0.1' },
        { host: 'hooks.example', port: 443, servername: 'hooks.example', mailwardAddress: '2001:db8::1' },
      ]) {
        const expected = `${base.getName.call(agent, o as never)}|${o.mailwardAddress}`;
        expect(agent.getName(o as never)).toBe(expected);
        expect(agent.getName({ ...o } as never)).toBe(expected);
      }
      const a = agent.getName({ host: 'hooks.example', port: 443, mailwardAddress: '203.0.113.5' } as never);
      const b = agent.getName({ host: 'hooks.example', port: 443, mailwardAddress: '203.0.113.6' } as never);
      expect(a).not.toBe(b);
      // A request without a checked address (none of the worker's) is named as before: Node's name and an empty address.
      expect(agent.getName({ host: 'hooks.example', port: 443 } as never)).toBe(
        `${base.getName.call(agent, { host: 'hooks.example', port: 443 } as never)}|`,
      );
    }
  });

  it('keeps only the parse of a URL: the DNS answer and every address in it are checked again at every call', async () => {
    const url = 'https://hooks.example/mailward?t=1';
    let answer = '93.184.215.14';
    const lookup = async () => [{ address: answer, family: 4 as const }];
    const first = await checkWebhookUrl(url, [], lookup);
    expect(first).toMatchObject({
      isHttps: true,
      host: 'hooks.example',
      port: 443,
      path: '/mailward?t=1',
      address: { address: '93.184.215.14' },
    });
    answer = '10.0.0.1';
    await expect(checkWebhookUrl(url, [], lookup)).rejects.toMatchObject({ code: 'webhook_url_refused', extra: { reason: 'private' } });
    answer = '169.254.169.254';
    await expect(checkWebhookUrl(url, [], lookup)).rejects.toMatchObject({ extra: { reason: 'link_local' } });
    // The allow-list is read at each call too, and a refused text stays refused.
    await expect(checkWebhookUrl('http://127.0.0.1:9/x', [], lookup)).rejects.toMatchObject({ extra: { reason: 'https_required' } });
    expect((await checkWebhookUrl('http://127.0.0.1:9/x', ['127.0.0.1:9'], lookup)).allowListed).toBe(true);
    for (let i = 0; i < 2; i++) {
      await expect(checkWebhookUrl('https://u:p@hooks.example/', [], lookup)).rejects.toMatchObject({
        extra: { reason: 'credentials_in_url' },
      });
      await expect(checkWebhookUrl('not a url', [], lookup)).rejects.toMatchObject({ extra: { reason: 'invalid_url' } });
    }
  });

  it('makes ids of the documented form, distinct and in time order (UUIDv7 from the pooled generator)', () => {
    const ids = Array.from({ length: 5000 }, () => newId('webhookAttempt'));
    for (const id of ids) expect(id).toMatch(/^wha_[0-9a-f]{12}7[0-9a-f]{3}[89ab][0-9a-f]{15}$/);
    expect(new Set(ids).size).toBe(ids.length);
    expect([...ids].sort()).toEqual(ids);
  });
});
