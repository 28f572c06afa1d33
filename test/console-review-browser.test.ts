import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser } from 'playwright-core';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixedClock } from '../src/kernel/clock.js';
import { dnsRecordsFor } from '../src/mail/dns-records.js';
import { axeViolations, signInInBrowser, closeConsoleApp, openConsoleApp } from './support/console-browser.js';
import { testDialects } from './support/dialects.js';
import { seedMessages } from './support/inbound-seed.js';
import { connectHttp } from './support/mcp-client.js';
import { drainDeliveries, type Sink, seedMailbox } from './support/outbound-sink.js';
import type { TestApp } from './support/test-app.js';
import { EVENT_ROWS } from './support/audit-rows.js';

const DKIMPY = path.join(path.dirname(fileURLToPath(import.meta.url)), 'support', 'dkimpy-verify.py');
const LAB_TEXT = 'Dear Ms Lopez,\nYour results are in. MRN: 4820193. Diagnosis: type 2 diabetes mellitus. Please call us.\n';
const CLEAN_TEXT = 'Hello,\nYour results are in. Please call us.\n';

for (const dialect of testDialects()) {
  describe(`the reviewer console in Chromium (${dialect})`, () => {
    let t: TestApp;
    let sink: Sink;
    let browser: Browser;
    let origin = '';
    const clock = fixedClock(new Date().toISOString());

    beforeAll(async () => {
      const h = await openConsoleApp(dialect, { clock, sinkDir: 'mw-console-sink' });
      ({ t, origin, browser } = h);
      sink = h.sink!;
    }, 60_000);
    afterAll(() => closeConsoleApp({ t, browser, sink }));

    it('shows a held lab result with its MRN and diagnosis marked in place; the reviewer edits them out, sees a clean re-scan, signs, and the sink receives the edited message DKIM-valid', async () => {
      const r = await signInInBrowser(browser, t, origin, clock, {
        name: 'Dr. Amara Okafor',
        email: 'okafor@hospital.example',
        roles: ['reviewer'],
      });
      const { page } = r;
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(e.message));
      page.on('console', (m) => (m.type() === 'error' ? errors.push(m.text()) : undefined));

      const seed = await seedMailbox(t, 'gated_send');
      const sent = await t.call('POST', `/v1/mailboxes/${seed.mailbox.id}/send`, seed.agentKey, {
        to: ['maria.lopez@clinic.example'],
        subject: 'Your lab results',
        text: LAB_TEXT,
      });
      expect(sent.status).toBe(202);

      // The queue lists it with its subject, recipient and reasons.
      await page.goto(`${origin}/console/queue`);
      const row = page.locator(`tr:has(a[href="/console/review/${sent.body.id}"])`);
      await expect.poll(() => row.count()).toBe(1);
      expect(await row.textContent()).toContain('maria.lopez@clinic.example');
      expect(await row.textContent()).toMatch(/PHI: .*mrn/);
      expect(await axeViolations(page)).toEqual([]);
      await page.screenshot({ path: 'docs/screenshots/console-queue.png', fullPage: true });

      // The live queue: a new hold appears without a reload (SSE wake-up, then the page's own fetch).
      const second = await t.call('POST', `/v1/mailboxes/${seed.mailbox.id}/send`, seed.agentKey, {
        to: ['someone@clinic.example'],
        subject: 'Appointment moved',
        text: 'Your appointment moved to Friday.',
      });
      await expect.poll(() => page.locator(`a[href="/console/review/${second.body.id}"]`).count(), { timeout: 10_000 }).toBe(1);

      // The review page: the MRN and the diagnosis are marked exactly where they are.
      await page.goto(`${origin}/console/review/${sent.body.id}`);
      const marks = await page.$$eval('#text mark', (ms) => ms.map((m) => [m.getAttribute('data-type'), m.firstChild?.textContent]));
      expect(marks).toEqual(
        expect.arrayContaining([
          ['mrn', '4820193'],
          ['diagnosis', expect.stringContaining('diabetes')],
        ]),
      );
      expect(await axeViolations(page)).toEqual([]);
      await page.screenshot({ path: 'docs/screenshots/console-review.png', fullPage: true });
      // The findings list moves the focus to a mark (keyboard: Enter on the link).
      await page.focus('#findings a[data-finding="mrn"]');
      await page.keyboard.press('Enter');
      expect(await page.evaluate('document.activeElement.getAttribute("data-type")')).toBe('mrn');

      await r.stepUp(`/console/review/${sent.body.id}`);
      await page.click('summary');
      await page.fill('#edit-text', CLEAN_TEXT);
      await page.click('#preview-edits');
      await page.waitForSelector('#edit-preview');
      expect(await page.getAttribute('#edit-findings', 'data-findings')).toBe('0');
      expect(await page.textContent('#edit-diff')).toContain('-Your results are in. MRN: 4820193.');
      await page.click('#approve-edited');
      await page.waitForSelector('#done');
      expect(await page.textContent('#status')).not.toBe('pending_approval');

      await drainDeliveries(t);
      const got = sink.messages.filter((m) => m.to.includes('maria.lopez@clinic.example'));
      expect(got).toHaveLength(1);
      const raw = got[0]!.raw.toString();
      expect(raw).toContain('Please call us.');
      expect(raw).not.toContain('4820193');
      const rows = await t.c.store.db
        .selectFrom('signing_keys')
        .selectAll()
        .where('org_id', '=', t.orgId)
        .where('purpose', 'in', ['dkim-ed25519', 'dkim-rsa'])
        .execute();
      const dkim = Object.fromEntries(
        dnsRecordsFor(t.domain, rows)
          .filter((x) => x.name.includes('._domainkey.'))
          .map((x) => [x.name, x.value]),
      );
      const ok = JSON.parse(execFileSync('/usr/bin/python3', [DKIMPY, JSON.stringify(dkim)], { input: got[0]!.raw, encoding: 'utf8' })) as {
        ok: boolean;
      }[];
      expect(ok.length).toBeGreaterThan(0);
      expect(ok.every((x) => x.ok)).toBe(true);

      // Reject the other one with a comment; the agent reads the comment.
      clock.advance(1000);
      await page.goto(`${origin}/console/review/${second.body.id}`);
      await page.fill('#reject-comment', 'Please confirm the new time with the clinic first.');
      await page.click('#reject');
      await page.waitForSelector('#done');
      const mcp = await connectHttp(Number(new URL(origin).port), seed.agentKey);
      const seen = await mcp.call('read_email', { email_id: second.body.id });
      await mcp.close();
      expect(seen.structuredContent.email.status).toBe('rejected');
      expect(JSON.stringify(seen.structuredContent)).toContain('Please confirm the new time with the clinic first.');
      expect(errors).toEqual([]);
      await r.context.close();
    }, 120_000);

    it('renders hostile HTML without running a script or making a request, and releases the held message to the agent', async () => {
      const r = await signInInBrowser(browser, t, origin, clock, { name: 'Dr. Lee', email: 'lee@hospital.example', roles: ['reviewer'] });
      const { page } = r;
      const seed = await seedMailbox(t, 'gated_all');
      const hostile = `<p>Hello</p><script>window.top.pwned=1</script><img src="https://tracker.example/p.gif" onerror="window.top.pwned=2">
<a href="javascript:window.top.pwned=3">click</a> <a href="https://evil.example/login">portal</a>
<div style="background:url(https://evil.example/bg.png)">styled</div><style>@import url(https://evil.example/x.css); body{background:url(https://evil.example/b.png)}</style>
<iframe src="https://evil.example/f"></iframe><form action="https://evil.example/f"><input name="x"></form><svg onload="window.top.pwned=4"></svg>`;
      const [id] = await seedMessages(t, seed.mailbox, [
        { from: 'lab@outside.example', subject: 'Hostile newsletter', text: 'Hello', html: hostile, status: 'pending_approval' },
      ]);
      const requests: string[] = [];
      page.on('request', (q) => requests.push(q.url()));
      await page.goto(`${origin}/console/review/${id}`);
      await page.waitForSelector('#html-frame');
      const frame = page.frames().find((f) => f !== page.mainFrame());
      await expect.poll(async () => frame && (await frame.evaluate('document.body.innerText'))).toContain('styled');
      const body = (await frame!.evaluate('document.body.innerHTML')) as string;
      expect(body).toContain('[https://evil.example/login]');
      // Links lead nowhere and show their target as text; no handler, script, frame, form or remote URL is left.
      expect(body).toContain('[javascript:window.top.pwned=3]');
      expect(body).not.toMatch(/<script|<iframe|<form|<svg|<style|\bon[a-z]+=|href=|src=|url\(/i);
      expect(await page.evaluate('window.pwned')).toBeUndefined();
      expect(requests.filter((u) => !u.startsWith(origin))).toEqual([]);
      expect(await page.getAttribute('#html-frame', 'sandbox')).toBe('');

      const held = await t.call('GET', `/v1/emails/${id}`, seed.agentKey);
      expect(held.body.content_hidden).toBe(true);
      await r.stepUp(`/console/review/${id}`);
      await page.click('#release');
      await page.waitForSelector('#done');
      const mcp = await connectHttp(Number(new URL(origin).port), seed.agentKey);
      const read = await mcp.call('read_email', { email_id: id });
      await mcp.close();
      expect(read.structuredContent.email.content_hidden).toBe(false);
      expect(read.structuredContent.untrusted_content.subject).toBe('Hostile newsletter');
      await r.context.close();
    }, 120_000);

    it('shows an auditor the audit trail, which verifies in the browser and fails on a changed row; the auditor cannot decide', async () => {
      const r = await signInInBrowser(browser, t, origin, clock, {
        name: 'A. Auditor',
        email: 'auditor@hospital.example',
        roles: ['auditor'],
      });
      const { page } = r;
      await page.goto(`${origin}/console/audit?action=email.approved`);
      const first = page.locator('#audit-table tbody tr').first();
      const seq = Number(await first.getAttribute('data-seq'));
      expect(seq).toBeGreaterThan(0);
      expect(await axeViolations(page)).toEqual([]);
      await page.goto(`${origin}/console/audit/${seq}`);
      await page.click('#verify');
      await expect.poll(() => page.getAttribute('#verify-result', 'data-verdict'), { timeout: 10_000 }).toBe('pass');

      // A row changed in the database (its hash column left alone) by a tamperer past the append-only triggers.
      if (t.dialect === 'sqlite') await sql`drop trigger audit_events_no_update`.execute(t.c.store.db);
      else await sql`alter table audit_event_rows disable trigger audit_events_append_only`.execute(t.c.store.db);
      await t.c.store.db.updateTable(EVENT_ROWS).set({ details: '{"approval_id":"apr_forged"}' }).where('seq', '=', seq).execute();
      await page.reload();
      await page.click('#verify');
      await expect.poll(() => page.getAttribute('#verify-result', 'data-verdict'), { timeout: 10_000 }).toBe('fail');
      expect(await page.textContent('#verify-result')).toContain('do not lead to the signed root');

      // The auditor may not see the queue (404, as REST answers for a role that cannot review).
      const q = await page.goto(`${origin}/console/queue`);
      expect(q?.status()).toBe(404);
      const seed = await seedMailbox(t, 'gated_all');
      const [held] = await seedMessages(t, seed.mailbox, [
        { from: 'lab@outside.example', subject: 'Held', text: 'x', status: 'pending_approval' },
      ]);
      const rv = await page.goto(`${origin}/console/review/${held}`);
      expect(rv?.status()).toBe(404);
      const approval = await t.c.store.db.selectFrom('approvals').select('id').where('message_id', '=', held!).executeTakeFirstOrThrow();
      const decided = (await page.evaluate(`(async () => {
        const csrf = document.querySelector('meta[name="csrf-token"]')?.getAttribute('content') ?? '';
        const r = await fetch('/console/review/${held}/release', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'csrf=' + encodeURIComponent(csrf) + '&approval_id=${approval.id}' });
        return r.status;
      })()`)) as number;
      expect(decided).toBe(404);
      expect((await t.call('GET', `/v1/emails/${held}`, t.adminKey)).body.status).toBe('pending_approval');
      await r.context.close();
    }, 120_000);
  });
}
