import { createHash } from 'node:crypto';
import fs from 'node:fs';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixedClock } from '../src/kernel/clock.js';
import { axeViolations, signInInBrowser, closeConsoleApp, openConsoleApp } from './support/console-browser.js';
import { testDialects } from './support/dialects.js';
import { drainDeliveries, type Sink, seedMailbox } from './support/outbound-sink.js';
import type { TestApp } from './support/test-app.js';
import { hexOfStored } from '../src/audit/audit-columns.js';
import { textIds, textIdsOf } from './support/audit-rows.js';
import { storedOfId } from '../src/audit/audit-columns.js';

const consentPath = (email: string) => `/v1/contacts/${encodeURIComponent(email)}/consent`;
const P1 = 'ana.patient@clinic.example';
const P2 = 'ben.patient@clinic.example';

for (const dialect of testDialects()) {
  describe(`the privacy officer's console in Chromium: breaches and the evidence pack (${dialect})`, () => {
    let t: TestApp;
    let sink: Sink;
    let browser: Browser;
    let origin = '';
    const start = new Date(Date.now() - 3600_000);
    const clock = fixedClock(start.toISOString());

    beforeAll(async () => {
      const h = await openConsoleApp(dialect, { clock, sinkDir: 'mw-privacy-console-sink' });
      ({ t, origin, browser } = h);
      sink = h.sink!;
    }, 60_000);
    afterAll(() => closeConsoleApp({ t, browser, sink }));

    it('opens, scopes, assesses and notifies a breach through forms, each change audited in the officer name; a reviewer gets 404 and a post without the CSRF token is refused', async () => {
      for (const p of [P1, P2]) {
        const r = await t.call('PUT', consentPath(p), t.adminKey, { electronic: true, categories: ['results'], source: 'paper_form' });
        expect(r.status).toBe(200);
      }
      const a = await seedMailbox(t, 'autonomous');
      for (const [to, text] of [
        [P1, 'MRN: 4820193. Your results are in.'],
        [P2, 'Your diagnosis of type 2 diabetes mellitus was confirmed.'],
      ]) {
        const r = await t.call('POST', `/v1/mailboxes/${a.mailbox.id}/send`, a.agentKey, { to: [to], subject: 'Your results', text });
        expect(r.status).toBe(202);
      }
      await drainDeliveries(t);
      await sink.waitFor(2);
      // Ben withdrew email consent later: his notice goes by post (164.404(d)(1)).
      expect((await t.call('PUT', consentPath(P2), t.adminKey, { electronic: false, categories: [], source: 'paper_form' })).status).toBe(
        200,
      );

      const officer = await signInInBrowser(browser, t, origin, clock, {
        name: 'Pat Privacy',
        email: 'privacy@hospital.example',
        roles: ['privacy_officer'],
      });
      const { page } = officer;
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(e.message));

      // Open the incident.
      await page.goto(`${origin}/console/breaches`);
      await page.fill('#b-title', 'Results sent through a misconfigured relay');
      await page.fill('#b-description', 'The results assistant sent through a relay outside our control.');
      await page.fill('#b-discovered', new Date(start.getTime() + 1800_000).toISOString());
      await page.fill('#b-state', 'MA');
      await page.click('#open-breach');
      await page.waitForURL(/\/console\/breaches\/brc_[0-9a-f]{32}$/);
      const id = page.url().split('/').pop()!;
      expect(await axeViolations(page)).toEqual([]);

      // A form that breaks the REST shape is refused with the field named, and nothing changes.
      await page.fill('#s-since', 'yesterday');
      await page.click('#save-scope');
      expect(await page.textContent('#not-done')).toContain('since');
      expect((await t.call('GET', `/v1/breaches/${id}`, t.adminKey)).body.scope).toBeNull();

      // Scope it to the agent's sends in the window: both patients are found.
      await page.goto(`${origin}/console/breaches/${id}`);
      await page.fill('#s-since', new Date(start.getTime() - 60_000).toISOString());
      await page.fill('#s-until', new Date(start.getTime() + 600_000).toISOString());
      await page.fill('#s-agents', a.agent.id);
      await page.click('#save-scope');
      await page.waitForURL(`${origin}/console/breaches/${id}`);
      const rows = await page.$$eval('#individuals tbody tr', (trs) =>
        trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent)),
      );
      expect(rows.map((r) => r[0]).sort()).toEqual([P1, P2]);
      expect(rows.find((r) => r[0] === P1)?.[1]).toContain('mrn');
      expect(rows.find((r) => r[0] === P2)?.[2]).toBe('postal');
      expect(await page.inputValue('#s-agents')).toBe(a.agent.id);

      // The four-factor risk assessment.
      await page.fill('#r-nature', 'An MRN and a diagnosis');
      await page.fill('#r-person', 'The relay operator');
      await page.fill('#r-acquired', 'Unknown');
      await page.fill('#r-mitigation', 'Relay credentials rotated');
      await page.click('#save-risk');
      await page.waitForURL(`${origin}/console/breaches/${id}`);
      const inc = await t.call('GET', `/v1/breaches/${id}`, t.adminKey);
      expect(inc.body.risk_assessment).toMatchObject({
        nature_and_extent: 'An MRN and a diagnosis',
        mitigation: 'Relay credentials rotated',
        low_probability_of_compromise: false,
      });
      expect(inc.body.scope).toMatchObject({ agent_ids: [a.agent.id] });
      expect(await page.inputValue('#r-nature')).toBe('An MRN and a diagnosis');

      // A post without the session's CSRF token is refused and changes nothing.
      const forged = await page.request.post(`${origin}/console/breaches/${id}/risk-assessment`, {
        form: {
          nature_and_extent: 'x',
          unauthorized_person: 'x',
          acquired_or_viewed: 'x',
          mitigation: 'forged',
          low_probability_of_compromise: '1',
        },
      });
      expect(forged.status()).toBe(403);
      expect((await t.call('GET', `/v1/breaches/${id}`, t.adminKey)).body.risk_assessment.mitigation).toBe('Relay credentials rotated');

      // A reviewer sees none of it, and their post with their own valid token is refused as not found.
      const reviewer = await signInInBrowser(browser, t, origin, clock, {
        name: 'Rae Reviewer',
        email: 'rae@hospital.example',
        roles: ['reviewer'],
      });
      for (const p of ['/console/breaches', `/console/breaches/${id}`, '/console/compliance']) {
        const res = await reviewer.page.goto(`${origin}${p}`);
        expect(res?.status()).toBe(404);
      }
      const csrf = await reviewer.page.getAttribute('meta[name="csrf-token"]', 'content');
      const denied = await reviewer.page.request.post(`${origin}/console/breaches/${id}/scope`, {
        form: { csrf: csrf!, agent_ids: a.agent.id },
        headers: { origin },
      });
      expect(denied.status()).toBe(404);
      await reviewer.context.close();

      // The notices: one by email, one listed for post.
      await page.goto(`${origin}/console/breaches/${id}`);
      await page.fill('#n-what', 'Your results were sent through a relay we do not control.');
      await page.fill('#n-date', 'Sent on 5 January 2026, discovered the same day');
      await page.fill('#n-steps', 'Watch for mail that mentions your results.');
      await page.fill('#n-doing', 'We rotated the relay credentials.');
      await page.fill('#n-contact', 'Call 1-800-555-0100 or write to privacy@hospital.example.');
      await page.click('#send-notices');
      expect(await page.textContent('#emailed')).toBe('1');
      expect(await page.textContent('#postal')).toBe('1');
      await drainDeliveries(t);
      await sink.waitFor(3);
      expect(sink.messages.at(-1)?.to).toEqual([P1]);
      await page.click('#back-to-incident');
      const proof = await page.$$eval('#individuals tbody tr', (trs) =>
        trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent)),
      );
      expect(proof.find((r) => r[0] === P1)?.[4]).toMatch(/^250 at /);
      expect(await page.textContent('#notices-sent')).toContain('1 by email');
      expect(await page.locator('#scope-form').count()).toBe(0);

      // Every change is audited in the officer's name; the reviewer's attempt as denied.
      await t.c.audit.sync(); // sequenced by the integrator
      const events = textIds(
        await t.c.store.db
          .selectFrom('audit_events')
          .select(['action', 'actor_id', 'outcome'])
          .where('target_id', '=', storedOfId(id))
          .orderBy('seq')
          .execute(),
      );
      const mine = events.filter((e) => e.outcome === 'success' && e.actor_id === officer.human.id).map((e) => e.action);
      expect(mine).toEqual(expect.arrayContaining(['breach.created', 'breach.scoped', 'breach.risk_assessed', 'breach.notice.sent']));
      expect(events.filter((e) => e.action === 'breach.scoped').map((e) => e.outcome)).toEqual(['success', 'denied']);
      expect(events.filter((e) => e.action === 'breach.risk_assessed')).toHaveLength(1);
      expect(errors).toEqual([]);
    }, 180_000);

    it('builds the evidence pack, shows it and downloads it signed; the download verifies against its audit event', async () => {
      const officer = await signInInBrowser(browser, t, origin, clock, {
        name: 'Quinn Officer',
        email: 'quinn@hospital.example',
        roles: ['privacy_officer'],
      });
      const { page } = officer;
      await page.goto(`${origin}/console/compliance`);
      await page.click('#build-report');
      await page.waitForURL(`${origin}/console/compliance/report`);
      expect(await page.textContent('#mfa')).toMatch(/of \d+ active people have a second factor/);
      expect(await page.textContent('#signature')).toMatch(/SHA-256 [0-9a-f]{64} is in audit event \d+/);
      expect(await axeViolations(page)).toEqual([]);

      const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download-report')]);
      expect(download.suggestedFilename()).toMatch(/^mailward-evidence-\d{4}-\d{2}-\d{2}-\d+\.json$/);
      const file = await download.path();
      const pack = JSON.parse(fs.readFileSync(file, 'utf8'));
      expect(pack.report.scope).toEqual({ org_id: t.orgId });
      const hash = createHash('sha256').update(JSON.stringify(pack.report)).digest('hex');
      expect(pack.signature.report_sha256).toBe(hash);
      await t.c.audit.sync();
      const ev = textIdsOf(
        await t.c.store.db
          .selectFrom('audit_events')
          .select(['action', 'actor_id', 'details', 'hash'])
          .where('seq', '=', pack.signature.seq)
          .executeTakeFirstOrThrow(),
      );
      expect(ev).toMatchObject({ action: 'compliance.reported', actor_id: officer.human.id });
      expect(hexOfStored(ev.hash)).toBe(pack.signature.event_hash);
      expect(JSON.parse(ev.details).report_sha256).toBe(hash);
      await officer.context.close();
    }, 120_000);
  });
}
