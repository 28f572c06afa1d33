import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixedClock } from '../src/kernel/clock.js';
import { dnsRecordsFor } from '../src/mail/dns-records.js';
import { headerValue, splitMessage } from '../src/mail/mime.js';
import { tempDir, testDialects } from './support/dialects.js';
import { drainDeliveries, relayEnv, type Sink, seedMailbox, startSink } from './support/outbound-sink.js';
import { createTestApp, type TestApp } from './support/test-app.js';

const DKIMPY = path.join(import.meta.dirname, 'support', 'dkimpy-verify.py');
const DAY = 86_400_000;
const consentPath = (email: string) => `/v1/contacts/${encodeURIComponent(email)}/consent`;

for (const dialect of testDialects()) {
  describe(`breach workbench (${dialect})`, () => {
    let t: TestApp;
    let sink: Sink;
    const start = new Date(Date.UTC(2026, 0, 5, 9, 0, 0));
    const clock = fixedClock(start);
    let officerKey: string;
    let officerId: string;
    let reviewerKey: string;
    let agentKey: string;
    let a: Awaited<ReturnType<typeof seedMailbox>>;
    let b: Awaited<ReturnType<typeof seedMailbox>>;
    let dkimRecords: Record<string, string>;
    const p = (i: number) => `patient${i}@clinic.example`;
    const sent: Record<string, string> = {};

    const send = async (m: Awaited<ReturnType<typeof seedMailbox>>, to: string, text: string) => {
      const r = await t.call('POST', `/v1/mailboxes/${m.mailbox.id}/send`, m.agentKey, { to: [to], subject: 'Your results', text });
      expect(r.status).toBe(202);
      return r.body.id as string;
    };

    beforeAll(async () => {
      sink = await startSink(tempDir('mw-breach-sink'));
      t = await createTestApp(dialect, { env: relayEnv(sink), clock });
      const officer = await t.call('POST', '/v1/humans', t.adminKey, {
        name: 'Pat Privacy',
        email: 'privacy@hospital.example',
        roles: ['privacy_officer'],
      });
      officerId = officer.body.id;
      officerKey = (await t.call('POST', `/v1/humans/${officerId}/api-keys`, t.adminKey, {})).body.key;
      for (const i of [1, 2, 3, 4, 5]) {
        const r = await t.call('PUT', consentPath(p(i)), officerKey, { electronic: true, categories: ['results'], source: 'paper_form' });
        expect(r.status).toBe(200);
      }
      a = await seedMailbox(t, 'autonomous');
      b = await seedMailbox(t, 'autonomous');
      agentKey = a.agentKey;
      reviewerKey = (await t.call('POST', `/v1/humans/${a.reviewer.id}/api-keys`, t.adminKey, { scopes: ['reviewer'] })).body.key;
      // In the window: agent A to patients 1, 2 and 4; agent B to patient 5. After it: agent A to patient 3.
      sent.p1 = await send(a, p(1), 'Patient: Maria Lopez, MRN: 4820193. Your lab results are ready.');
      sent.p2 = await send(a, p(2), 'Your diagnosis of type 2 diabetes mellitus was confirmed. Please call us.');
      sent.p4 = await send(a, p(4), 'MRN: 5530021. Your results are in.');
      sent.p5 = await send(b, p(5), 'MRN: 7730011. Your results are in.');
      clock.advance(3 * 3600_000);
      sent.p3 = await send(a, p(3), 'MRN: 9930012. Your results are in.');
      await drainDeliveries(t);
      await sink.waitFor(5);
      // Patient 4 withdrew email consent later: their notice goes by post (164.404(d)(1)).
      expect((await t.call('PUT', consentPath(p(4)), officerKey, { electronic: false, categories: [], source: 'paper_form' })).status).toBe(
        200,
      );
      const rows = await t.c.store.db
        .selectFrom('signing_keys')
        .selectAll()
        .where('org_id', '=', t.orgId)
        .where('purpose', 'in', ['dkim-ed25519', 'dkim-rsa'])
        .execute();
      dkimRecords = Object.fromEntries(
        dnsRecordsFor(t.domain, rows)
          .filter((r) => r.name.includes('._domainkey.'))
          .map((r) => [r.name, r.value]),
      );
    }, 120_000);
    afterAll(async () => {
      await t?.close();
      await sink?.close();
    });

    it("scopes an incident to one agent's sends in a window, notifies those with email consent with DKIM-valid mail and delivery proof", async () => {
      const inc = await t.call('POST', '/v1/breaches', officerKey, {
        title: 'Agent A misdirected results',
        description: 'Agent A sent results through a misconfigured relay.',
        discovered_at: new Date(start.getTime() + 4 * 3600_000).toISOString(),
        state: 'MA',
      });
      expect(inc.status).toBe(201);
      expect(inc.body.deadline_at).toBe(new Date(start.getTime() + 4 * 3600_000 + 60 * DAY).toISOString());
      const id = inc.body.id;
      const scope = await t.call('PUT', `/v1/breaches/${id}/scope`, officerKey, {
        agent_ids: [a.agent.id],
        since: new Date(start.getTime() - 60_000).toISOString(),
        until: new Date(start.getTime() + 3600_000).toISOString(),
      });
      expect(scope.status).toBe(200);
      expect(scope.body).toMatchObject({ messages: 3, individuals: 3, email_allowed: 2 });
      expect(scope.body.phi_types).toEqual(expect.arrayContaining(['mrn', 'diagnosis']));
      const risk = await t.call('PUT', `/v1/breaches/${id}/risk-assessment`, officerKey, {
        nature_and_extent: 'MRNs and a diagnosis',
        unauthorized_person: 'Unknown relay operator',
        acquired_or_viewed: 'Unknown',
        mitigation: 'Relay credentials rotated',
        low_probability_of_compromise: false,
      });
      expect(risk.status).toBe(200);

      const ind = await t.call('GET', `/v1/breaches/${id}/individuals`, officerKey);
      expect(ind.status).toBe(200);
      const byAddr = Object.fromEntries(ind.body.individuals.map((x: any) => [x.address, x]));
      expect(Object.keys(byAddr).sort()).toEqual([p(1), p(2), p(4)]);
      expect(byAddr[p(1)].phi_types).toContain('mrn');
      expect(byAddr[p(2)].phi_types).toContain('diagnosis');
      expect(byAddr[p(1)].message_ids).toEqual([sent.p1]);
      expect(byAddr[p(4)].notice_by).toBe('postal');
      // The address is sealed at rest.
      const raw = await t.c.store.db.selectFrom('breach_individuals').selectAll().execute();
      expect(JSON.stringify(raw)).not.toContain('clinic.example');

      const before = sink.messages.length;
      const notices = await t.call('POST', `/v1/breaches/${id}/notices`, officerKey, {
        what_happened: 'Results were sent through a misconfigured relay on January 5.',
        breach_date: '2026-01-05',
        steps_individuals_should_take: 'Watch for unexpected mail about your care.',
        what_we_are_doing: 'We rotated the relay credentials and retrained staff.',
        contact_procedures: 'Call 1-800-555-0100 or write to privacy@hospital.example.',
      });
      expect(notices.status).toBe(200);
      expect(notices.body.emailed).toHaveLength(2);
      expect(notices.body.postal).toEqual([byAddr[p(4)].contact_hash]);
      await drainDeliveries(t);
      await sink.waitFor(before + 2);
      const out = sink.messages.slice(before);
      expect(out.map((m) => m.to[0]).sort()).toEqual([p(1), p(2)]);
      for (const m of out) {
        expect(m.from).toBe(`breach-notices@${t.domain}`);
        const text = m.raw.toString();
        expect(text).toContain('What happened');
        expect(text).toContain('1-800-555-0100');
        const r = JSON.parse(
          execFileSync('/usr/bin/python3', [DKIMPY, JSON.stringify(dkimRecords)], { input: m.raw, encoding: 'utf8' }),
        ) as {
          ok: boolean;
        }[];
        expect(r.length).toBeGreaterThan(0);
        expect(r.every((x) => x.ok)).toBe(true);
        expect(headerValue(splitMessage(m.raw).header, 'Subject')).toContain('breach');
      }
      const after = await t.call('GET', `/v1/breaches/${id}/individuals`, officerKey);
      for (const x of after.body.individuals.filter((y: any) => y.notice_by === 'email')) {
        expect(x.delivery.status).toBe('delivered');
        expect(x.delivery.accepted.code).toBe(250);
        expect(x.delivery.accepted.smtp_reply.code).toBe(250);
        expect(x.delivery.accepted.at).toBeTruthy();
      }
      // The notices are attributable to the privacy officer: the sending agent answers to them.
      const agent = await t.c.store.db
        .selectFrom('agents')
        .selectAll()
        .where('address', '=', `breach-notices@${t.domain}`)
        .executeTakeFirstOrThrow();
      expect(agent.responsible_human_id).toBe(officerId);
      // A scope is fixed once notices went out.
      expect((await t.call('PUT', `/v1/breaches/${id}/scope`, officerKey, { agent_ids: [b.agent.id] })).status).toBe(409);

      expect(notices.body.failed).toEqual([]);
      // Other scopes: by recipient (through the index) and by message id and tag.
      const inc2 = await t.call('POST', '/v1/breaches', officerKey, {
        title: 'By recipient',
        description: 'x',
        discovered_at: new Date(start.getTime() + 365 * DAY).toISOString(),
      });
      const byRecipient = await t.call('PUT', `/v1/breaches/${inc2.body.id}/scope`, officerKey, {
        recipients: ['Patient5@clinic.example'],
      });
      expect(byRecipient.body).toMatchObject({ messages: 1, individuals: 1 });
      const who = await t.call('GET', `/v1/breaches/${inc2.body.id}/individuals`, officerKey);
      expect(who.body.individuals.map((x: any) => x.message_ids)).toEqual([[sent.p5]]);
      const byIds = await t.call('PUT', `/v1/breaches/${inc2.body.id}/scope`, officerKey, {
        message_ids: [sent.p3, sent.p5],
        tags: ['no-such-tag'],
      });
      expect(byIds.body).toMatchObject({ messages: 0, individuals: 0 });
      const byIdsOnly = await t.call('PUT', `/v1/breaches/${inc2.body.id}/scope`, officerKey, { message_ids: [sent.p3, sent.p5] });
      expect(byIdsOnly.body).toMatchObject({ messages: 2, individuals: 2 });
      expect(
        (await t.call('PUT', `/v1/breaches/${inc2.body.id}/scope`, officerKey, { mailbox_ids: [b.mailbox.id] })).body.individuals,
      ).toBe(1);

      const hhs = await t.call('GET', `/v1/breaches/${id}/hhs`, officerKey);
      expect(hhs.body).toMatchObject({ individuals: 3, state: 'MA', over_500: false, report_to_hhs_by: '2027-03-01T00:00:00.000Z' });
      const log = await t.call('GET', '/v1/breaches/hhs-log?year=2026', officerKey);
      expect(log.body.breaches.map((x: any) => x.incident_id)).toContain(id);
      const events = await t.call('GET', `/v1/audit/events?target_id=${id}`, t.adminKey);
      expect(events.body.events.map((e: any) => e.action)).toEqual(
        expect.arrayContaining([
          'breach.created',
          'breach.scoped',
          'breach.risk_assessed',
          'breach.individuals.read',
          'breach.notice.sent',
          'breach.notices.sent',
        ]),
      );
      expect(JSON.stringify(events.body.events)).not.toContain('clinic.example');
    }, 60_000);

    it('reminds privacy officers 30, 14, 7 and 1 days before the deadline, once each, on a fake clock', async () => {
      const discovered = clock.now();
      const inc = await t.call('POST', '/v1/breaches', officerKey, {
        title: 'Lost laptop',
        description: 'A laptop was lost.',
        discovered_at: discovered.toISOString(),
      });
      const deadline = Date.parse(inc.body.deadline_at);
      const run = () => t.c.breaches.runReminders();
      const before = sink.messages.length;
      expect(await run()).toBe(0);
      for (const days of [30, 14, 7, 1]) {
        clock.set(new Date(deadline - days * DAY - 60_000));
        expect(await run()).toBe(0);
        clock.set(new Date(deadline - days * DAY + 60_000));
        expect(await run()).toBe(1);
        expect(await run()).toBe(0);
      }
      await drainDeliveries(t);
      await sink.waitFor(before + 4);
      // Only this incident's reminders (the other open incident's deadline is a year later: none of its are due).
      const reminders = sink.messages.slice(before);
      expect(reminders.every((m) => m.raw.toString().includes(inc.body.id))).toBe(true);
      expect(reminders.every((m) => m.to[0] === 'privacy@hospital.example')).toBe(true);
      expect(
        reminders.map((m) => /(\d+) day\(s\) left/.exec(headerValue(splitMessage(m.raw).header, 'Subject') ?? '')?.[1]).sort(),
      ).toEqual(['1', '14', '30', '7']);
    }, 60_000);

    it('answers 404 to a reviewer and an agent on every route', async () => {
      const id = (await t.call('GET', '/v1/breaches', officerKey)).body.breaches[0].id;
      const routes: [string, string, unknown?][] = [
        ['POST', '/v1/breaches', { title: 'x', description: 'x', discovered_at: new Date().toISOString() }],
        ['GET', '/v1/breaches'],
        ['GET', '/v1/breaches/hhs-log?year=2026'],
        ['GET', `/v1/breaches/${id}`],
        ['PUT', `/v1/breaches/${id}/scope`, {}],
        [
          'PUT',
          `/v1/breaches/${id}/risk-assessment`,
          {
            nature_and_extent: 'x',
            unauthorized_person: 'x',
            acquired_or_viewed: 'x',
            mitigation: 'x',
            low_probability_of_compromise: true,
          },
        ],
        ['GET', `/v1/breaches/${id}/individuals`],
        [
          'POST',
          `/v1/breaches/${id}/notices`,
          { what_happened: 'x', breach_date: 'x', steps_individuals_should_take: 'x', what_we_are_doing: 'x', contact_procedures: 'x' },
        ],
        ['GET', `/v1/breaches/${id}/hhs`],
        ['GET', `/v1/disclosures?contact=${p(1)}`],
        ['GET', `/v1/disclosures/csv?contact=${p(1)}`],
      ];
      for (const key of [reviewerKey, agentKey]) {
        for (const [method, url, body] of routes) {
          const r = await t.call(method, url, key, body);
          expect(`${method} ${url} ${r.status}`).toBe(`${method} ${url} 404`);
        }
      }
      // The admin may (CONTRACT.md: privacy_officer and admin).
      expect((await t.call('GET', `/v1/breaches/${id}`, t.adminKey)).status).toBe(200);
    });
  });
}
