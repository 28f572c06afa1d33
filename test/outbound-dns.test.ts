import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testDialects } from './support/dialects.js';
import { runCli } from './support/processes.js';
import { createTestApp, seedAgent, type TestApp } from './support/test-app.js';

for (const dialect of testDialects()) {
  describe(`GET /v1/dns-records (${dialect})`, () => {
    let t: TestApp;
    beforeAll(async () => {
      t = await createTestApp(dialect);
    }, 60_000);
    afterAll(async () => {
      await t?.close();
    });

    it('gives an admin the DKIM, SPF and DMARC records that `mailward dns` prints', async () => {
      const r = await t.call('GET', '/v1/dns-records', t.adminKey);
      expect(r.status).toBe(200);
      expect(r.body.domain).toBe(t.domain);
      const records = r.body.dns_records as { type: string; name: string; value: string; zone_value: string; purpose: string }[];
      const dkim = records.filter((x) => x.name.endsWith(`._domainkey.${t.domain}`));
      expect(dkim.map((x) => /k=(\w+)/.exec(x.value)![1]).sort()).toEqual(['ed25519', 'rsa']);
      for (const x of dkim) expect(x.value).toMatch(/^v=DKIM1; k=(ed25519|rsa); p=[A-Za-z0-9+/]+=*$/);
      expect(records.find((x) => x.name === t.domain)!.value).toMatch(/^v=spf1 /);
      expect(records.find((x) => x.name === `_dmarc.${t.domain}`)!.value).toMatch(/^v=DMARC1; p=/);

      const cli = await runCli(['dns', '--json'], t.env);
      expect(cli.code).toBe(0);
      const printed = JSON.parse(cli.stdout) as {
        organizations: { domain: string; dns_records: { type: string; name: string; value: string }[] }[];
      };
      expect(printed.organizations).toEqual([
        { domain: t.domain, dns_records: records.map(({ type, name, value, zone_value }) => ({ type, name, value, zone_value })) },
      ]);
    }, 60_000);

    it('refuses reviewers (403) and hides the route from agents (404)', async () => {
      const s = await seedAgent(t);
      const reviewerKey = await t.call('POST', `/v1/humans/${s.reviewer.id}/api-keys`, t.adminKey, {});
      expect(reviewerKey.status).toBe(201);
      const asReviewer = await t.call('GET', '/v1/dns-records', reviewerKey.body.key);
      expect(asReviewer.status).toBe(403);
      expect(asReviewer.body.code).toBe('role_required');
      const asAgent = await t.call('GET', '/v1/dns-records', s.agentKey);
      expect(asAgent.status).toBe(404);
      expect((await t.call('GET', '/v1/dns-records', null)).status).toBe(401);
    });
  });
}
