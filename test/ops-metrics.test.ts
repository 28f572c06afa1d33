import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir, testDialects } from './support/dialects.js';
import { type Inbound, outsideSenders, rawMessage, smtpCode, startInbound } from './support/inbound-mail.js';
import { drainDeliveries, relayEnv, type Sink, seedMailbox, startSink } from './support/outbound-sink.js';
import { createTestApp, type TestApp } from './support/test-app.js';
import { waitFor } from './support/wait.js';

const LAB = 'results@lab.example';

/** One sample's value from Prometheus text, e.g. value(text, 'mailward_outbox_messages', { state: 'queued' }); undefined if absent. */
const value = (text: string, name: string, labels: Record<string, string> = {}) => {
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    const m = /^([^{\s]+)(?:\{([^}]*)\})?\s+(\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) return Number(m[3]);
  }
  return undefined;
};

/** promtool from Debian's `prometheus` package is required (CI installs it): a missing checker fails, never skips. */
const promtoolCheck = (text: string) => {
  const r = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
  if (r.error) throw new Error(`promtool is required for this test (apt-get install prometheus): ${r.error.message}`);
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
};

for (const dialect of testDialects()) {
  describe(`metrics an operator can use (${dialect})`, () => {
    let t: TestApp;
    let sink: Sink;
    let smtp: Inbound;
    let senders: ReturnType<typeof outsideSenders>;
    const dir = tempDir('mw-metrics');

    beforeAll(async () => {
      sink = await startSink(dir);
      senders = outsideSenders(dir);
      t = await createTestApp(dialect, {
        env: relayEnv(sink, { MAILWARD_METRICS_CACHE_MS: '0', MAILWARD_DNS_OVERRIDES: senders.file, MAILWARD_SMTP_MAX_RECIPIENTS: '2' }),
      });
      smtp = await startInbound(t, (c) => c, { withMetrics: true });
    });
    afterAll(async () => {
      await smtp?.close();
      await t?.close();
      await sink?.close();
    });

    const scrape = async () => {
      // The audit gauge is the chain head: what the integrator has sequenced (src/audit/integrator.ts).
      await t.c.audit.sync();
      const r = await t.call('GET', '/metrics', null);
      expect(r.status).toBe(200);
      return String(r.body);
    };

    it('names every series mailward_*, passes promtool check metrics, and moves when mail is sent, received, held and decided', async () => {
      const before = await scrape();
      expect(promtoolCheck(before)).toEqual({ code: 0, out: '' });
      const names = [...before.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1] as string);
      expect(names.filter((n) => !n.startsWith('mailward_'))).toEqual([]);
      for (const n of [
        'mailward_outbox_messages',
        'mailward_outbox_oldest_age_seconds',
        'mailward_delivery_attempts_total',
        'mailward_delivery_latency_seconds',
        'mailward_smtp_inbound_sessions_total',
        'mailward_smtp_inbound_messages_total',
        'mailward_inbound_auth_results_total',
        'mailward_approvals_pending',
        'mailward_approvals_oldest_age_seconds',
        'mailward_approvals_decided_total',
        'mailward_audit_events',
        'mailward_audit_checkpoint_age_seconds',
        'mailward_signing_queue',
        'mailward_analysis_queue',
      ])
        expect(names).toContain(n);
      const auditBefore = value(before, 'mailward_audit_events') as number;
      expect(auditBefore).toBeGreaterThan(0);

      // Send: queued first (no worker running), then delivered through the loopback relay.
      const auto = await seedMailbox(t, 'autonomous');
      const sent = await t.call('POST', `/v1/mailboxes/${auto.mailbox.id}/send`, auto.agentKey, {
        to: ['patient@clinic.example'],
        subject: 'Appointment',
        text: 'See you on Monday.',
      });
      expect(sent.status).toBe(202);
      const queued = await scrape();
      expect(value(queued, 'mailward_outbox_messages', { state: 'queued' })).toBe(1);
      expect(value(queued, 'mailward_outbox_oldest_age_seconds', { state: 'queued' })).toBeGreaterThanOrEqual(0);
      await drainDeliveries(t);
      await sink.waitFor(1);

      // A deferral: the relay answers 451 once, then takes it.
      sink.replies.push({ code: 451, text: '4.3.0 Try again later' });
      const again = await t.call('POST', `/v1/mailboxes/${auto.mailbox.id}/send`, auto.agentKey, {
        to: ['patient@clinic.example'],
        subject: 'Reminder',
        text: 'Tomorrow.',
      });
      expect(again.status).toBe(202);
      await drainDeliveries(t);
      await sink.waitFor(2);

      // Hold: a gated_send message waits for a reviewer.
      const gated = await seedMailbox(t, 'gated_send');
      const held = await t.call('POST', `/v1/mailboxes/${gated.mailbox.id}/send`, gated.agentKey, {
        to: ['patient@clinic.example'],
        subject: 'Results',
        text: 'Please call us.',
      });
      expect(held.body.status).toBe('pending_approval');
      const holding = await scrape();
      expect(value(holding, 'mailward_approvals_pending', { reason: 'oversight_mode' })).toBe(1);
      expect(value(holding, 'mailward_approvals_oldest_age_seconds', { reason: 'oversight_mode' })).toBeGreaterThanOrEqual(0);

      // Decide it.
      const reviewerKey = await t.call('POST', `/v1/humans/${gated.reviewer.id}/api-keys`, t.adminKey, {});
      const approvals = await t.call('GET', '/v1/approvals?status=pending', reviewerKey.body.key);
      const apr = approvals.body.approvals.find((a: { email_id: string }) => a.email_id === held.body.id);
      expect((await t.call('POST', `/v1/approvals/${apr.id}/approve`, reviewerKey.body.key, {})).status).toBe(200);
      await drainDeliveries(t);
      await sink.waitFor(3);

      // Receive: one DKIM-signed message accepted, one for an unknown mailbox refused with 550.
      const raw = await senders.sign(rawMessage({ to: auto.mailbox.address }));
      expect(await smtpCode(smtp.sendRaw(raw, { from: LAB, to: [auto.mailbox.address] }))).toBe(250);
      expect(await smtpCode(smtp.sendRaw(rawMessage({ to: `nobody@${t.domain}` }), { from: LAB, to: [`nobody@${t.domain}`] }))).toBe(550);
      // Past MAILWARD_SMTP_MAX_RECIPIENTS the third recipient gets 452; the message is stored for the first two.
      const three = [auto.mailbox.address, gated.mailbox.address, `third@${t.domain}`];
      expect(await smtpCode(smtp.sendRaw(rawMessage({ to: three.join(', ') }), { from: LAB, to: three }))).toBe(250);

      // Session counters move when the client's QUIT closes the session.
      await waitFor(async () => {
        const m = await scrape();
        return (
          (value(m, 'mailward_smtp_inbound_sessions_total', { verdict: '550' }) ?? 0) >= 1 &&
          (value(m, 'mailward_smtp_inbound_sessions_total', { verdict: 'accepted' }) ?? 0) >= 2
        );
      });
      const after = await scrape();
      expect(promtoolCheck(after)).toEqual({ code: 0, out: '' });
      expect(value(after, 'mailward_delivery_attempts_total', { result: 'delivered', smtp_class: '2xx' })).toBe(3);
      expect(value(after, 'mailward_delivery_attempts_total', { result: 'deferred', smtp_class: '4xx' })).toBe(1);
      expect(value(after, 'mailward_delivery_latency_seconds_count')).toBe(3);
      expect(value(after, 'mailward_outbox_messages', { state: 'queued' })).toBe(0);
      expect(value(after, 'mailward_outbox_messages', { state: 'deferred' })).toBe(0);
      expect(value(after, 'mailward_approvals_pending', { reason: 'oversight_mode' })).toBeUndefined();
      expect(value(after, 'mailward_approvals_decided_total', { outcome: 'approved' })).toBe(1);
      expect(value(after, 'mailward_smtp_inbound_messages_total', { verdict: 'accepted' })).toBe(2);
      expect(value(after, 'mailward_smtp_inbound_messages_total', { verdict: '452' })).toBe(1);
      expect(value(after, 'mailward_smtp_inbound_messages_total', { verdict: '550' })).toBe(1);
      expect(value(after, 'mailward_smtp_inbound_sessions_total', { verdict: 'accepted' })).toBe(2);
      expect(value(after, 'mailward_inbound_auth_results_total', { method: 'dkim', result: 'pass' })).toBe(1);
      expect(value(after, 'mailward_inbound_auth_results_total', { method: 'dkim', result: 'none' })).toBe(1);
      expect(value(after, 'mailward_inbound_auth_results_total', { method: 'spf', result: 'pass' })).toBe(2);
      expect(value(after, 'mailward_audit_events') as number).toBeGreaterThan(auditBefore);
      expect(value(after, 'mailward_signing_queue')).toBe(0);
      expect(value(after, 'mailward_analysis_queue')).toBe(0);
      // No label value is an address, a message id or any other identifier.
      const labels = [...after.matchAll(/="([^"]*)"/g)].map((m) => m[1] as string);
      expect(labels.filter((l) => /@|msg_|agt_|mbx_|apr_|hum_/.test(l))).toEqual([]);
    });

    it('ships Prometheus alert rules that promtool accepts and a Grafana dashboard over these series', () => {
      const root = path.resolve(import.meta.dirname, '..', 'deploy');
      const rules = path.join(root, 'prometheus-alerts.yml');
      execFileSync('promtool', ['check', 'rules', rules], { stdio: 'pipe' });
      const dashboard = JSON.parse(fs.readFileSync(path.join(root, 'grafana-dashboard.json'), 'utf8'));
      const exprs = JSON.stringify(dashboard.panels.flatMap((p: { targets?: { expr: string }[] }) => p.targets ?? []));
      for (const n of [
        'mailward_outbox_messages',
        'mailward_delivery_attempts_total',
        'mailward_approvals_pending',
        'mailward_audit_checkpoint_age_seconds',
      ])
        expect(exprs).toContain(n);
      const ruleText = fs.readFileSync(rules, 'utf8');
      expect(ruleText).toContain('mailward_audit_checkpoint_age_seconds');
    });
  });
}
