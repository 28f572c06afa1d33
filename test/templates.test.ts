import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dnsRecordsFor } from '../src/mail/dns-records.js';
import { headerValue, splitMessage } from '../src/mail/mime.js';
import { tempDir, testDialects } from './support/dialects.js';
import { relayEnv, type Sink, seedMailbox, startSink } from './support/outbound-sink.js';
import { createTestApp, seedAgent, type TestApp } from './support/test-app.js';
import { waitFor } from './support/wait.js';
import { connectHttp } from './support/mcp-client.js';
import { runCli } from './support/processes.js';
import fs from 'node:fs';

const here = path.dirname(fileURLToPath(import.meta.url));
const DKIMPY = path.join(here, 'support', 'dkimpy-verify.py');

const REMINDER = {
  name: 'Appointment reminder',
  subject: 'Your appointment reminder',
  text: 'Hello {{patient}}, this is a reminder of your appointment on {{date}} at {{time}} with {{provider}} at {{location}}. {{note}}',
  html: '<p>Hello {{patient}}, see you on {{date}} at {{time}} with {{provider}} at {{location}}.</p><p>{{note}}</p>',
  slots: [
    { name: 'patient', type: 'patient_name' },
    { name: 'date', type: 'date' },
    { name: 'time', type: 'time' },
    { name: 'provider', type: 'provider' },
    { name: 'location', type: 'location' },
    { name: 'note', type: 'short_text', max_length: 40 },
  ],
  category: 'appointment',
};

const slotsFor = (i: number) => ({
  patient: `Jordan Avery-${String.fromCharCode(65 + (i % 26))}`.replace('-', ' '),
  date: '2026-03-14',
  time: '09:30',
  provider: 'Dr. Sam Lee',
  location: 'Main Clinic',
  note: 'Please arrive ten minutes early.',
});

const patient = (i: number) => `patient${i}@clinic.example`;

for (const dialect of testDialects()) {
  describe(`pre-approved templates and bulk sends (${dialect})`, () => {
    let t: TestApp;
    let sink: Sink;
    let author: string;
    let approver: string;
    let dkimRecords: Record<string, string>;

    const humanKey = async (roles: string[]) => {
      const h = await t.call('POST', '/v1/humans', t.adminKey, {
        name: `Reviewer ${roles.join(' ')} ${Math.random().toString(36).slice(2, 6)}`,
        email: `r${Math.random().toString(36).slice(2, 8)}@hospital.example`,
        roles,
      });
      const k = await t.call('POST', `/v1/humans/${h.body.id}/api-keys`, t.adminKey, { scopes: roles });
      expect(k.status).toBe(201);
      return k.body.key as string;
    };
    const consent = async (address: string, categories: string[]) => {
      const r = await t.call('PUT', `/v1/contacts/${encodeURIComponent(address)}/consent`, t.adminKey, {
        electronic: true,
        categories,
        source: 'intake_form',
      });
      expect(r.status).toBe(200);
    };
    const approvedTemplate = async (body: Record<string, unknown> = REMINDER) => {
      const c = await t.call('POST', '/v1/templates', author, { ...body, name: `${String(body.name)} ${Math.random()}` });
      expect(c.status).toBe(201);
      const a = await t.call('POST', `/v1/templates/${c.body.id}/approve`, approver, {});
      expect(a.status).toBe(200);
      return c.body.id as string;
    };
    const drainUntil = async (n: number) => {
      // Anything queued by earlier tests is delivered too: callers count their own recipients.
      const ok = await waitFor(
        async () => {
          await t.c.mail.delivery.runOnce();
          return sink.messages.length >= n;
        },
        { timeoutMs: 120_000, everyMs: 1 },
      );
      expect(ok, `sink has ${sink.messages.length} of ${n}`).toBe(true);
    };

    beforeAll(async () => {
      sink = await startSink(tempDir('mw-tpl-sink'));
      t = await createTestApp(dialect, {
        env: relayEnv(sink, {
          MAILWARD_DELIVERY_CONCURRENCY: '16',
          // The opt-in 10,000-row test records 10,000 consents through the API first.
          ...(process.env.MAILWARD_TEST_BULK_10K ? { MAILWARD_RATE_LIMIT_PER_MINUTE: '100000' } : {}),
        }),
      });
      author = await humanKey(['reviewer']);
      approver = await humanKey(['reviewer']);
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
    }, 60_000);
    afterAll(async () => {
      t?.app.server.closeAllConnections();
      await t?.close();
      await sink?.close();
    });

    it('lets a reviewer approve a template once, never its author, with a signature manifestation', async () => {
      const c = await t.call('POST', '/v1/templates', author, REMINDER);
      expect(c.status).toBe(201);
      expect(c.body).toEqual({ id: expect.stringMatching(/^tpl_[0-9a-f]{32}$/), version: 1, status: 'pending' });
      const own = await t.call('POST', `/v1/templates/${c.body.id}/approve`, author, {});
      expect(own.status).toBe(403);
      expect(own.body.code).toBe('author_cannot_approve');
      const s = await seedAgent(t, 'Reminder Agent');
      // Agents never approve: the route's resource does not exist for them.
      expect((await t.call('POST', `/v1/templates/${c.body.id}/approve`, s.agentKey, {})).status).toBe(404);
      expect((await t.call('POST', '/v1/templates', s.agentKey, REMINDER)).status).toBe(404);
      const ok = await t.call('POST', `/v1/templates/${c.body.id}/approve`, approver, {});
      expect(ok.status).toBe(200);
      expect(ok.body.approved_version).toBe(1);
      const v = ok.body.versions[0];
      expect(v.status).toBe('approved');
      expect(v.signature).toMatchObject({ meaning: 'approved as a template', method: 'api_key', content_hash: v.content_hash });
      expect(v.allowed_phi_types).toEqual(expect.arrayContaining(['name']));
      expect((await t.call('POST', `/v1/templates/${c.body.id}/approve`, approver, {})).body.code).toBe('template_version_decided');
      // The agent reads it (it needs the slots); the approval is in the audit log with the signature.
      const read = await t.call('GET', `/v1/templates/${c.body.id}`, s.agentKey);
      expect(read.status).toBe(200);
      expect(read.body.versions[0].slots.map((x: { name: string }) => x.name)).toEqual(REMINDER.slots.map((x) => x.name));
      const events = await t.call('GET', `/v1/audit/events?action=template.approved&target_id=${c.body.id}`, t.adminKey);
      const outcomes = events.body.events.map((e: { outcome: string; details?: { code?: string } }) => e.outcome);
      // One approval, and the author's and the agent's attempts recorded as denied.
      expect(outcomes.filter((o: string) => o === 'success')).toHaveLength(1);
      expect(outcomes.filter((o: string) => o === 'denied')).toHaveLength(2);
    });

    it('refuses a template whose text uses an undeclared slot, and duplicate names', async () => {
      const r = await t.call('POST', '/v1/templates', author, { ...REMINDER, name: 'Bad', text: 'Hi {{nobody}}' });
      expect(r.status).toBe(422);
      expect(r.body.code).toBe('unknown_slot');
      const bad = await t.call('POST', '/v1/templates', author, { ...REMINDER, name: 'Bad 2', slots: [{ name: 'x', type: 'mrn' }] });
      expect(bad.status).toBe(400);
      const a = await t.call('POST', '/v1/templates', author, { ...REMINDER, name: 'Twice' });
      expect(a.status).toBe(201);
      expect((await t.call('POST', '/v1/templates', author, { ...REMINDER, name: 'Twice' })).body.code).toBe('template_name_taken');
    });

    it('sends an approved template without per-message approval from a gated_send mailbox that allows templates, and holds it where templates are not allowed', async () => {
      const id = await approvedTemplate();
      const allowed = await seedMailbox(t, 'gated_send', { allow_templates: true });
      expect(allowed.mailbox.allow_templates).toBe(true);
      const plain = await seedMailbox(t, 'gated_send');
      expect(plain.mailbox.allow_templates).toBe(false);
      await consent(patient(90001), ['appointment']);
      const send = (s: { agentKey: string; mailbox: { id: string } }, slots: Record<string, string> = slotsFor(1)) =>
        t.call('POST', `/v1/mailboxes/${s.mailbox.id}/send`, s.agentKey, { to: [patient(90001)], template_id: id, slots });
      const flows = await send(allowed);
      expect(flows.status).toBe(202);
      expect(flows.body.status).toBe('queued');
      const held = await send(plain);
      expect(held.body.status).toBe('pending_approval');
      const view = await t.call('GET', `/v1/emails/${held.body.id}`, plain.agentKey);
      expect(view.body.approval.reasons).toEqual([{ code: 'oversight_mode', mode: 'gated_send' }]);
      // The rendered content is what is stored and sent; html slot values are escaped.
      const sent = await t.call('GET', `/v1/emails/${flows.body.id}`, allowed.agentKey);
      expect(sent.body.subject).toBe('Your appointment reminder');
      expect(sent.body.text).toContain(
        'Hello Jordan Avery B, this is a reminder of your appointment on 2026-03-14 at 09:30 with Dr. Sam Lee',
      );
      const apostrophe = await send(allowed, { ...slotsFor(1), patient: "Sean O'Brien" });
      const html = await t.call('GET', `/v1/emails/${apostrophe.body.id}`, allowed.agentKey);
      expect(html.body.html).toContain('Hello Sean O&#39;Brien');
      const row = await t.c.store.db
        .selectFrom('messages')
        .select(['template_id', 'template_version', 'category'])
        .where('id', '=', flows.body.id)
        .executeTakeFirstOrThrow();
      // The category comes from the template when the send names none.
      expect(row).toEqual({ template_id: id, template_version: 1, category: 'appointment' });
      const audit = await t.call('GET', `/v1/audit/events?action=email.submitted&target_id=${flows.body.id}`, t.adminKey);
      expect(audit.body.events).toHaveLength(1);
      // Reviewers see what flowed (monitored's "reviewers see it"): the mailbox's outbound messages list it.
      const listed = await t.call('GET', `/v1/mailboxes/${allowed.mailbox.id}/messages?direction=outbound`, approver);
      expect(listed.status).toBe(200);
      expect(listed.body.messages.map((m: { id: string }) => m.id)).toContain(flows.body.id);
      // A reply can be a template too: threaded under the parent, rendered from the template.
      const reply = await t.call('POST', `/v1/emails/${flows.body.id}/reply`, allowed.agentKey, { template_id: id, slots: slotsFor(4) });
      expect(reply.status).toBe(202);
      expect(reply.body).toMatchObject({ status: 'queued', thread_id: flows.body.thread_id });
      const replied = await t.c.store.db
        .selectFrom('messages')
        .select(['in_reply_to', 'template_id'])
        .where('id', '=', reply.body.id)
        .executeTakeFirstOrThrow();
      expect(replied).toEqual({ in_reply_to: `<${flows.body.id}@${t.domain}>`, template_id: id });
      // gated_all keeps holding everything.
      const all = await seedMailbox(t, 'gated_all', { allow_templates: true });
      expect((await send(all)).body.status).toBe('pending_approval');
    });

    it('validates slot values at the edge: 422 invalid_slot naming the slot', async () => {
      const id = await approvedTemplate();
      const s = await seedMailbox(t, 'gated_send', { allow_templates: true });
      const send = (slots: Record<string, string>) =>
        t.call('POST', `/v1/mailboxes/${s.mailbox.id}/send`, s.agentKey, { to: [patient(90002)], template_id: id, slots });
      const cases: [Record<string, string>, string][] = [
        [{ ...slotsFor(1), date: '2026-02-30' }, 'date'],
        [{ ...slotsFor(1), date: '14/03/2026' }, 'date'],
        [{ ...slotsFor(1), time: '25:00' }, 'time'],
        [{ ...slotsFor(1), patient: 'Jordan 42' }, 'patient'],
        [{ ...slotsFor(1), note: 'x'.repeat(41) }, 'note'],
        [{ ...slotsFor(1), note: 'line\nbreak' }, 'note'],
        [{ ...slotsFor(1), extra: 'x' }, 'extra'],
        [(({ provider: _p, ...rest }) => rest)(slotsFor(1)), 'provider'],
      ];
      for (const [slots, slot] of cases) {
        const r = await send(slots);
        expect(r.status, JSON.stringify(slots)).toBe(422);
        expect(r.body).toMatchObject({ code: 'invalid_slot', slot });
      }
      // A template send takes no free content.
      const mixed = await t.call('POST', `/v1/mailboxes/${s.mailbox.id}/send`, s.agentKey, {
        to: [patient(90002)],
        template_id: id,
        slots: slotsFor(1),
        text: 'anything',
      });
      expect(mixed.status).toBe(400);
    });

    it('refuses an unapproved template (409), uses the approved version until a change is approved, and hides other organisations’ templates', async () => {
      const s = await seedMailbox(t, 'gated_send', { allow_templates: true });
      await consent(patient(90003), ['appointment']);
      const draft = await t.call('POST', '/v1/templates', author, { ...REMINDER, name: 'Draft only' });
      const send = (id: string) =>
        t.call('POST', `/v1/mailboxes/${s.mailbox.id}/send`, s.agentKey, { to: [patient(90003)], template_id: id, slots: slotsFor(2) });
      const unapproved = await send(draft.body.id);
      expect(unapproved.status).toBe(409);
      expect(unapproved.body.code).toBe('template_not_approved');

      const id = await approvedTemplate();
      const { name: _name, ...content } = REMINDER;
      const changed = await t.call('PUT', `/v1/templates/${id}`, author, { ...content, text: `${REMINDER.text} Reply STOP to opt out.` });
      expect(changed.body).toMatchObject({ version: 2, status: 'pending' });
      const before = await send(id);
      expect(before.body.status).toBe('queued');
      expect((await t.call('GET', `/v1/emails/${before.body.id}`, s.agentKey)).body.text).not.toContain('STOP');
      const approved = await t.call('POST', `/v1/templates/${id}/approve`, approver, {});
      expect(approved.body.approved_version).toBe(2);
      expect(approved.body.versions.map((v: { status: string }) => v.status)).toEqual(['superseded', 'approved']);
      const after = await send(id);
      expect((await t.call('GET', `/v1/emails/${after.body.id}`, s.agentKey)).body.text).toContain('Reply STOP to opt out.');
      const rows = await t.c.store.db
        .selectFrom('messages')
        .select(['id', 'template_version'])
        .where('id', 'in', [before.body.id, after.body.id])
        .execute();
      expect(Object.fromEntries(rows.map((r) => [r.id, r.template_version]))).toEqual({ [before.body.id]: 1, [after.body.id]: 2 });

      const other = await t.c.init({ orgName: 'Other Clinic', domain: `other-tpl-${dialect}.example` });
      if (!other) throw new Error('no second organisation');
      expect((await t.call('GET', `/v1/templates/${id}`, other.admin_api_key)).status).toBe(404);
      expect((await t.call('PUT', `/v1/templates/${id}`, other.admin_api_key, content)).status).toBe(404);
      const list = await t.call('GET', '/v1/templates', other.admin_api_key);
      expect(list.body.templates).toEqual([]);
      expect((await send('tpl_0123456789abcdef0123456789abcdef')).status).toBe(404);
    });

    it('holds a message whose slot smuggles an MRN or a diagnosis, with the reason', async () => {
      const id = await approvedTemplate();
      const s = await seedMailbox(t, 'gated_send', { allow_templates: true });
      await consent(patient(90004), ['appointment']);
      const send = (note: string) =>
        t.call('POST', `/v1/mailboxes/${s.mailbox.id}/send`, s.agentKey, {
          to: [patient(90004)],
          template_id: id,
          slots: { ...slotsFor(3), note },
        });
      for (const [note, type] of [
        ['MRN 48213377', 'mrn'],
        ['Your HIV test is ready', 'diagnosis'],
      ] as const) {
        const r = await send(note);
        expect(r.body.status).toBe('pending_approval');
        const v = await t.call('GET', `/v1/emails/${r.body.id}`, s.agentKey);
        expect(v.body.approval.reasons).toContainEqual({ code: 'template_slot_phi', slot: 'note', types: [type] });
      }
    });

    it('sends a reminder to 1,000 patients in one bulk request: delivered DKIM-valid, the MRN row held, a repeat sends nothing twice', async () => {
      const id = await approvedTemplate();
      const s = await seedMailbox(t, 'gated_send', { allow_templates: true });
      const n = 1000;
      for (let i = 0; i < n; i++) await consent(patient(i), ['appointment']);
      const mrnRow = 500;
      const rows = Array.from({ length: n }, (_, i) => ({
        to: [patient(i)],
        slots: i === mrnRow ? { ...slotsFor(i), note: 'MRN 48213377' } : slotsFor(i),
        idempotency_key: `reminder-2026-03-14-${i}`,
      }));
      const before = sink.messages.length;
      const first = await t.call('POST', `/v1/mailboxes/${s.mailbox.id}/send-bulk`, s.agentKey, { template_id: id, rows });
      expect(first.status).toBe(200);
      expect(first.body.counts).toEqual({ queued: n - 1, pending_approval: 1, refused: 0 });
      expect(first.body.results).toHaveLength(n);
      const held = first.body.results[mrnRow];
      expect(held).toMatchObject({ row: mrnRow, status: 'pending_approval', idempotency_key: `reminder-2026-03-14-${mrnRow}` });
      const heldView = await t.call('GET', `/v1/emails/${held.email_id}`, s.agentKey);
      expect(heldView.body.approval.reasons).toContainEqual({ code: 'template_slot_phi', slot: 'note', types: ['mrn'] });

      const recipients = new Set(rows.map((r) => r.to[0]!));
      const oursAtSink = () => sink.messages.filter((m) => m.to.some((a) => recipients.has(a)));
      await drainUntil(before + n - 1);
      await waitFor(() => oursAtSink().length >= n - 1, { timeoutMs: 60_000 });
      const ours = oursAtSink();
      expect(ours).toHaveLength(n - 1);
      const ids = new Set(ours.map((m) => headerValue(splitMessage(m.raw).header, 'Message-ID')));
      expect(ids.size).toBe(n - 1);
      expect(ours.some((m) => m.to.includes(patient(mrnRow)))).toBe(false);
      // DKIM, checked independently (dkimpy) on a sample: both signatures.
      for (const m of [ours[0]!, ours[Math.floor(ours.length / 2)]!, ours[ours.length - 1]!]) {
        const r = JSON.parse(
          execFileSync('/usr/bin/python3', [DKIMPY, JSON.stringify(dkimRecords)], { input: m.raw, encoding: 'utf8' }),
        ) as { ok: boolean }[];
        expect(r.map((x) => x.ok)).toEqual([true, true]);
      }

      // The same request again: the same email ids, nothing stored or sent twice.
      const count = async () =>
        Number(
          (
            await t.c.store.db
              .selectFrom('messages')
              .select((e) => e.fn.countAll().as('n'))
              .where('mailbox_id', '=', s.mailbox.id)
              .executeTakeFirstOrThrow()
          ).n,
        );
      expect(await count()).toBe(n);
      const again = await t.call('POST', `/v1/mailboxes/${s.mailbox.id}/send-bulk`, s.agentKey, { template_id: id, rows });
      expect(again.status).toBe(200);
      expect(again.body.results.map((r: { email_id: string }) => r.email_id)).toEqual(
        first.body.results.map((r: { email_id: string }) => r.email_id),
      );
      expect(await count()).toBe(n);
      for (let i = 0; i < 5; i++) await t.c.mail.delivery.runOnce();
      expect(oursAtSink()).toHaveLength(n - 1);
      const summary = await t.call('GET', `/v1/audit/events?action=email.bulk_submitted&target_id=${s.mailbox.id}`, t.adminKey);
      expect(summary.body.events).toHaveLength(2);
    }, 180_000);

    it('answers per-row refusals in a bulk request, and refuses the whole request for an unapproved template or another agent’s mailbox', async () => {
      const id = await approvedTemplate();
      const s = await seedMailbox(t, 'gated_send', { allow_templates: true });
      await consent(patient(90005), ['appointment']);
      const r = await t.call('POST', `/v1/mailboxes/${s.mailbox.id}/send-bulk`, s.agentKey, {
        template_id: id,
        rows: [
          { to: [patient(90005)], slots: slotsFor(1), idempotency_key: 'a' },
          { to: [patient(90005)], slots: { ...slotsFor(1), time: '9.30' }, idempotency_key: 'b' },
          { to: [patient(90005)], slots: slotsFor(2), idempotency_key: 'a' },
        ],
      });
      expect(r.status).toBe(200);
      expect(r.body.results.map((x: { status: string; code?: string }) => [x.status, x.code])).toEqual([
        ['queued', undefined],
        ['refused', 'invalid_slot'],
        ['refused', 'idempotency_key_reused'],
      ]);
      const draft = await t.call('POST', '/v1/templates', author, { ...REMINDER, name: 'Bulk draft' });
      const refused = await t.call('POST', `/v1/mailboxes/${s.mailbox.id}/send-bulk`, s.agentKey, {
        template_id: draft.body.id,
        rows: [{ to: [patient(90005)], slots: slotsFor(1), idempotency_key: 'c' }],
      });
      expect(refused.status).toBe(409);
      const other = await seedAgent(t, 'Another Agent');
      const notYours = await t.call('POST', `/v1/mailboxes/${s.mailbox.id}/send-bulk`, other.agentKey, {
        template_id: id,
        rows: [{ to: [patient(90005)], slots: slotsFor(1), idempotency_key: 'd' }],
      });
      expect(notYours.status).toBe(404);
    });

    it('sends in bulk over MCP (send_template_bulk, with row progress) and from the CLI against the running server', async () => {
      const id = await approvedTemplate();
      const s = await seedMailbox(t, 'gated_send', { allow_templates: true });
      for (let i = 0; i < 5; i++) await consent(patient(80000 + i), ['appointment']);
      await t.app.listen({ host: '127.0.0.1', port: 0 });
      const port = (t.app.server.address() as { port: number }).port;
      const mcp = await connectHttp(port, s.agentKey);
      try {
        const progress: number[] = [];
        const r = (await mcp.client.callTool(
          {
            name: 'send_template_bulk',
            arguments: {
              mailbox_id: s.mailbox.id,
              template_id: id,
              rows: [0, 1].map((i) => ({ to: [patient(80000 + i)], slots: slotsFor(i), idempotency_key: `mcp-${i}` })),
            },
          },
          { onprogress: (p) => progress.push(p.progress), timeout: 60_000 },
        )) as { isError?: boolean; structuredContent?: any };
        expect(r.isError).toBeFalsy();
        expect(r.structuredContent.counts).toEqual({ queued: 2, pending_approval: 0, refused: 0 });
        expect(progress).toEqual([2]);
      } finally {
        await mcp.close();
      }

      const dir = tempDir('mw-tpl-cli');
      const file = path.join(dir, 'rows.jsonl');
      const lines = [2, 3, 4].map((i) => JSON.stringify({ to: [patient(80000 + i)], slots: slotsFor(i), idempotency_key: `cli-${i}` }));
      lines.push(JSON.stringify({ to: [patient(80004)], slots: { ...slotsFor(4), date: 'tomorrow' }, idempotency_key: 'cli-bad' }));
      fs.writeFileSync(file, `${lines.join('\n')}\n`);
      const env = { MAILWARD_ADDR: `http://127.0.0.1:${port}`, MAILWARD_API_KEY: s.agentKey };
      const args = ['mail', 'send-bulk', '--mailbox', s.mailbox.id, '--template', id, '--rows', file, '--json'];
      const cli = await runCli(args, env);
      expect(cli.stderr).toContain('sent 4/4 rows: 3 queued, 0 held, 1 refused');
      expect(cli.code).toBe(1);
      const out = JSON.parse(cli.stdout);
      expect(out.results.map((x: { status: string }) => x.status)).toEqual(['queued', 'queued', 'queued', 'refused']);
      expect(out.results[3]).toMatchObject({ row: 3, code: 'invalid_slot' });
      // Run again: the same email ids, nothing new.
      const again = JSON.parse((await runCli(args, env)).stdout);
      expect(again.results.map((x: { email_id?: string }) => x.email_id)).toEqual(
        out.results.map((x: { email_id?: string }) => x.email_id),
      );
    }, 60_000);

    // Opt-in (MAILWARD_TEST_BULK_10K=1): the largest request the route accepts, end to end through the send path.
    it.skipIf(!process.env.MAILWARD_TEST_BULK_10K)(
      'accepts 10,000 rows in one bulk request and answers each row',
      async () => {
        const id = await approvedTemplate();
        const s = await seedMailbox(t, 'gated_send', { allow_templates: true });
        const n = 10_000;
        for (let i = 0; i < n; i++) await consent(`bulk${i}@clinic.example`, ['appointment']);
        const rows = Array.from({ length: n }, (_, i) => ({
          to: [`bulk${i}@clinic.example`],
          slots: slotsFor(i),
          idempotency_key: `big-${i}`,
        }));
        const started = Date.now();
        const heap = process.memoryUsage().heapUsed;
        const r = await t.call('POST', `/v1/mailboxes/${s.mailbox.id}/send-bulk`, s.agentKey, { template_id: id, rows });
        process.stderr.write(
          `10,000-row bulk (${dialect}): ${Date.now() - started} ms, heap ${Math.round((process.memoryUsage().heapUsed - heap) / 1e6)} MB more\n`,
        );
        expect(r.status).toBe(200);
        expect(r.body.counts).toEqual({ queued: n, pending_approval: 0, refused: 0 });
        expect(new Set(r.body.results.map((x: { email_id: string }) => x.email_id)).size).toBe(n);
      },
      900_000,
    );
  });
}
