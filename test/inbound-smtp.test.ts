import fs from 'node:fs';
import net from 'node:net';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { open } from '../src/kernel/crypto/envelope.js';
import { sha256Hex } from '../src/kernel/crypto/hash.js';
import { messageAad, openContent } from '../src/mail/message-store.js';
import { tempDir, testDialects } from './support/dialects.js';
import { type Inbound, outsideSenders, rawMessage, smtpCode, startInbound } from './support/inbound-mail.js';
import { seedMailbox } from './support/outbound-sink.js';
import { createTestApp, type TestApp } from './support/test-app.js';
import { eventRows, selectEventRows } from '../src/audit/event-rows.js';
import { storedOfId } from '../src/audit/audit-columns.js';

const LAB = 'results@lab.example';

for (const dialect of testDialects()) {
  describe(`inbound mail over SMTP (${dialect})`, () => {
    let t: TestApp;
    let smtp: Inbound;
    let senders: ReturnType<typeof outsideSenders>;
    let reviewerKey: string;
    let box: Awaited<ReturnType<typeof seedMailbox>>;

    const stored = (id: string) => t.c.store.db.selectFrom('messages').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
    const inboxOf = async (mailboxId: string) =>
      t.c.store.db
        .selectFrom('messages')
        .selectAll()
        .where('mailbox_id', '=', mailboxId)
        .where('direction', '=', 'inbound')
        .orderBy('id')
        .execute();

    beforeAll(async () => {
      const dir = tempDir('mw-inbound');
      senders = outsideSenders(dir, { orgDomain: 'hospital.example' });
      t = await createTestApp(dialect, {
        env: { MAILWARD_DNS_OVERRIDES: senders.file, MAILWARD_MAX_MESSAGE_BYTES: String(256 * 1024), MAILWARD_APPROVAL_TTL: '3600' },
      });
      smtp = await startInbound(t);
      box = await seedMailbox(t, 'autonomous');
      const k = await t.call('POST', `/v1/humans/${box.reviewer.id}/api-keys`, t.adminKey, { scopes: ['reviewer'] });
      reviewerKey = k.body.key;
    }, 60_000);
    afterAll(async () => {
      await smtp?.close();
      await t?.close();
    });

    it('receives a DKIM-signed message over STARTTLS that the agent lists, reads and tags, with reads audited and the raw bytes sealed', async () => {
      const marker = `MARKER-${Math.random().toString(36).slice(2)}-BODY`;
      const raw = await senders.sign(
        rawMessage({ to: box.mailbox.address, subject: 'Refill request for lisinopril', body: `Please renew the prescription. ${marker}` }),
      );
      const r = await smtp.sendRaw(raw, { from: LAB, to: [box.mailbox.address] });
      expect(r.response).toMatch(/^250 /);

      const list = await t.call('GET', `/v1/mailboxes/${box.mailbox.id}/messages?direction=inbound`, box.agentKey);
      expect(list.status).toBe(200);
      const item = list.body.messages.find((m: { subject: string }) => m.subject === 'Refill request for lisinopril');
      expect(item).toBeTruthy();
      expect(item.status).toBe('received');
      expect(item.direction).toBe('inbound');

      const view = await t.call('GET', `/v1/emails/${item.id}`, box.agentKey);
      expect(view.status).toBe(200);
      expect(view.body.from).toBe(LAB);
      expect(view.body.to).toEqual([box.mailbox.address]);
      expect(view.body.text).toContain(marker);
      expect(view.body.tags).toContain('prescription');
      expect(view.body.auth_results.flags).toEqual([]);
      expect(view.body.auth_results.dkim).toEqual([expect.objectContaining({ result: 'pass', domain: 'lab.example', aligned: true })]);
      expect(view.body.auth_results.spf.result).toBe('pass');
      expect(view.body.auth_results.dmarc.result).toBe('pass');

      expect(view.body.system_tags).toContain('prescription');
      expect(view.body.agent_tags).toEqual([]);

      // The agent's tags replace its own only: the content-derived ones stay.
      const tagged = await t.call('PUT', `/v1/emails/${item.id}/tags`, box.agentKey, { tags: ['pharmacy', 'reviewed'] });
      expect(tagged.status).toBe(200);
      expect(tagged.body.agent_tags).toEqual(['pharmacy', 'reviewed']);
      expect(tagged.body.system_tags).toEqual(view.body.system_tags);
      expect(tagged.body.tags).toEqual([...view.body.system_tags, 'pharmacy', 'reviewed']);
      const erased = await t.call('PUT', `/v1/emails/${item.id}/tags`, box.agentKey, { tags: [] });
      expect(erased.body).toEqual({ id: item.id, tags: view.body.system_tags, system_tags: view.body.system_tags, agent_tags: [] });
      await t.call('PUT', `/v1/emails/${item.id}/tags`, box.agentKey, { tags: ['pharmacy', 'reviewed'] });
      const relisted = (await t.call('GET', `/v1/mailboxes/${box.mailbox.id}/messages?tag=prescription`, box.agentKey)).body.messages;
      expect(relisted.find((m: { id: string }) => m.id === item.id)).toMatchObject({
        agent_tags: ['pharmacy', 'reviewed'],
        system_tags: view.body.system_tags,
      });

      // The store: raw bytes sealed (what was sent, byte for byte), hashed, audited as received by the system with that hash.
      const row = await stored(item.id);
      expect(row.is_read === 0 || row.is_read === 1).toBe(true);
      const opened = open(t.c.ring, row.raw_sealed!, messageAad(row, 'raw'));
      expect(opened.equals(raw)).toBe(true);
      expect(row.raw_hash).toBe(sha256Hex(raw));
      expect(Buffer.from(row.raw_sealed!).toString('latin1')).not.toContain(marker);
      expect(Buffer.from(row.content_sealed).toString('latin1')).not.toContain(marker);
      await t.c.audit.sync();
      const events = await eventRows(selectEventRows(t.c.store.db).where('e.target_id', '=', storedOfId(item.id)).orderBy('e.seq'));
      const received = events.find((e) => e.action === 'email.received')!;
      expect(received).toMatchObject({ actor_type: 'system', content_hash: sha256Hex(raw), client_ip: '127.0.0.1', outcome: 'success' });
      expect(JSON.parse(received.delegation_chain).map((c: { type: string }) => c.type)).toEqual(['organization', 'department', 'agent']);
      expect(received.details).not.toContain(marker);
      expect(received.details).not.toContain(LAB);
      expect(events.filter((e) => e.action === 'email.read' && e.actor_id === box.agent.id).length).toBeGreaterThanOrEqual(1);
      expect(events.some((e) => e.action === 'email.tagged')).toBe(true);

      if (dialect === 'sqlite') {
        // Nothing readable in the database file or its write-ahead log.
        for (const f of [`${t.dataDir}/mailward.db`, `${t.dataDir}/mailward.db-wal`]) {
          if (fs.existsSync(f)) expect(fs.readFileSync(f).includes(Buffer.from(marker))).toBe(false);
        }
      } else {
        const hits = await sql<{
          n: number;
        }>`select count(*)::int as n from messages where content_sealed like ${`%${marker}%`} or raw_sealed like ${`%${marker}%`}`.execute(
          t.c.store.db,
        );
        expect(hits.rows[0]!.n).toBe(0);
      }
    });

    it('answers 550 5.1.1 for an unknown mailbox and 550 5.7.1 for any other domain (never relays)', async () => {
      const unknown = smtp.sendRaw(rawMessage({ to: `nobody@${t.domain}` }), { from: LAB, to: [`nobody@${t.domain}`] });
      await expect(unknown).rejects.toMatchObject({ responseCode: 550, response: expect.stringContaining('5.1.1') });
      const relay = smtp.sendRaw(rawMessage({ to: 'someone@elsewhere.example' }), { from: LAB, to: ['someone@elsewhere.example'] });
      await expect(relay).rejects.toMatchObject({ responseCode: 550, response: expect.stringContaining('5.7.1') });
      expect(await smtpCode(smtp.sendRaw(rawMessage({ to: box.mailbox.address }), { from: LAB, to: ['not an address'] }))).not.toBe(250);
    });

    it('refuses a message over MAILWARD_MAX_MESSAGE_BYTES with 552 and stores nothing', async () => {
      const { before } = { before: (await inboxOf(box.mailbox.id)).length };
      const big = rawMessage({ to: box.mailbox.address, body: 'x'.repeat(300 * 1024).replace(/(.{76})/g, '$1\r\n') });
      expect(await smtpCode(smtp.sendRaw(big, { from: LAB, to: [box.mailbox.address] }))).toBe(552);
      expect((await inboxOf(box.mailbox.id)).length).toBe(before);
      // A client that declares the size (RFC 1870) is refused before it sends anything.
      const replies = await new Promise<string>((resolve, reject) => {
        const socket = net.connect(smtp.port, '127.0.0.1');
        let buf = '';
        const steps = ['EHLO mx.lab.example\r\n', `MAIL FROM:<${LAB}> SIZE=${300 * 1024}\r\n`, 'QUIT\r\n'];
        socket.on('data', (d) => {
          buf += d.toString();
          if (/^\d{3} /m.test(buf.split(/\r?\n/).filter(Boolean).at(-1) ?? '') && steps.length > 0) socket.write(steps.shift()!);
        });
        socket.on('close', () => resolve(buf));
        socket.on('error', reject);
      });
      expect(replies).toMatch(/^552 /m);
    });

    it('records the delegation chain as it is now: an agent moved to another department is audited under the new one at once', async () => {
      const receivedChain = async () => {
        const r = await smtp.sendRaw(rawMessage({ to: box.mailbox.address, subject: 'Chain check' }), {
          from: LAB,
          to: [box.mailbox.address],
        });
        expect(r.response).toMatch(/^250 /);
        await t.c.audit.sync();
        const [ev] = await eventRows(
          selectEventRows(t.c.store.db).where('e.action', '=', 'email.received').orderBy('e.seq', 'desc').limit(1),
        );
        return JSON.parse(ev!.delegation_chain) as { type: string; id: string }[];
      };
      const before = await receivedChain();
      const dep = await t.call('POST', '/v1/departments', t.adminKey, { name: `Moved ${Math.random().toString(36).slice(2, 8)}` });
      expect(dep.status).toBe(201);
      const moved = await t.call('PATCH', `/v1/agents/${box.agent.id}`, t.adminKey, { department_id: dep.body.id });
      expect(moved.status).toBe(200);
      const after = await receivedChain();
      expect(before.find((c) => c.type === 'department')?.id).not.toBe(dep.body.id);
      expect(after.find((c) => c.type === 'department')?.id).toBe(dep.body.id);
    });

    it('quarantines a forged message (DKIM fails, DMARC p=reject) by default, and delivers it flagged only where an admin opted into flag', async () => {
      const signed = await senders.sign(
        rawMessage({
          from: 'Billing <billing@forged.example>',
          to: box.mailbox.address,
          subject: 'Invoice overdue',
          body: 'Pay the balance now.',
        }),
        'forged.example',
      );
      const forged = Buffer.from(signed.toString().replace('Pay the balance now.', 'Pay the balance to account 12345 now.'));
      const f = await seedMailbox(t, 'autonomous', { dmarc_failure: 'flag' });
      expect(f.mailbox.dmarc_failure).toBe('flag');
      await smtp.sendRaw(forged, { from: 'billing@forged.example', to: [f.mailbox.address] });
      const flagged = (await inboxOf(f.mailbox.id)).at(-1)!;
      expect(flagged.status).toBe('received');
      const auth = JSON.parse(flagged.auth_results!);
      expect(auth.flags).toEqual(expect.arrayContaining(['dmarc_fail', 'dkim_fail', 'spf_fail']));
      expect(auth.dmarc).toMatchObject({ result: 'fail', policy: 'reject' });

      // A mailbox created without a choice quarantines.
      const q = await seedMailbox(t, 'autonomous');
      expect(q.mailbox.dmarc_failure).toBe('quarantine');
      await smtp.sendRaw(forged, { from: 'billing@forged.example', to: [q.mailbox.address] });
      const list = await t.call('GET', `/v1/mailboxes/${q.mailbox.id}/messages`, q.agentKey);
      expect(list.body.messages).toHaveLength(1);
      expect(list.body.messages[0].status).toBe('quarantined');
      const row = await stored(list.body.messages[0].id);
      expect(JSON.parse(row.status_reason!)).toMatchObject({ code: 'quarantined', reasons: [{ code: 'dmarc_fail', policy: 'reject' }] });
      // A reviewer may release it.
      const pending = await t.call('GET', '/v1/approvals?status=pending', reviewerKey);
      const apr = pending.body.approvals.find((a: { email_id: string }) => a.email_id === row.id);
      expect(apr).toMatchObject({ direction: 'inbound', reasons: [{ code: 'dmarc_fail', policy: 'reject' }] });

      // A sender whose domain does not ask for enforcement (p=none) is flagged, not quarantined.
      await smtp.sendRaw(rawMessage({ from: 'news@relaxed.example', to: q.mailbox.address, subject: 'Newsletter' }), {
        from: 'news@relaxed.example',
        to: [q.mailbox.address],
      });
      const relaxed = (await inboxOf(q.mailbox.id)).at(-1)!;
      expect(relaxed.status).toBe('received');
      expect(JSON.parse(relaxed.auth_results!).flags).toContain('dmarc_fail');
    });

    it("quarantines mail from outside that claims the organisation's own domain and fails its DMARC, whatever its p=; flag stays an opt-in", async () => {
      const q = await seedMailbox(t, 'autonomous');
      const f = await seedMailbox(t, 'autonomous', { dmarc_failure: 'flag' });
      const spoof = (from: string) =>
        rawMessage({ from: `Front Desk <${from}>`, to: q.mailbox.address, subject: 'Password reset', body: 'Log in at the link below.' });
      // The organisation's own p=reject.
      await smtp.sendRaw(spoof('frontdesk@hospital.example'), {
        from: 'frontdesk@hospital.example',
        to: [q.mailbox.address, f.mailbox.address],
      });
      const own = (await inboxOf(q.mailbox.id)).at(-1)!;
      expect(own.status).toBe('quarantined');
      expect(JSON.parse(own.status_reason!)).toMatchObject({
        code: 'quarantined',
        reasons: [
          { code: 'dmarc_fail', policy: 'reject' },
          { code: 'org_domain_unauthenticated', dmarc: 'fail' },
        ],
      });
      expect(JSON.parse(own.auth_results!).flags).toEqual(expect.arrayContaining(['dmarc_fail', 'org_domain_unauthenticated']));
      const seen = await t.call('GET', `/v1/emails/${own.id}`, q.agentKey);
      expect(seen.body).toMatchObject({ status: 'quarantined', content_hidden: true });
      expect(JSON.stringify(seen.body)).not.toContain('Log in at the link');
      const optedIn = (await inboxOf(f.mailbox.id)).at(-1)!;
      expect(optedIn.status).toBe('received');
      expect(JSON.parse(optedIn.auth_results!).flags).toEqual(expect.arrayContaining(['dmarc_fail', 'org_domain_unauthenticated']));

      // A subdomain whose policy is none (sp=none) fails DMARC too: still the organisation's, still quarantined.
      await smtp.sendRaw(spoof('it@mail.hospital.example'), { from: 'it@mail.hospital.example', to: [q.mailbox.address] });
      const sub = (await inboxOf(q.mailbox.id)).at(-1)!;
      expect(JSON.parse(sub.auth_results!).dmarc).toMatchObject({ result: 'fail', policy: 'none' });
      expect(sub.status).toBe('quarantined');
      expect(JSON.parse(sub.status_reason!).reasons).toEqual(
        expect.arrayContaining([{ code: 'org_domain_unauthenticated', dmarc: 'fail' }]),
      );
      const pending = await t.call('GET', '/v1/approvals?status=pending', reviewerKey);
      expect(pending.body.approvals.filter((a: { email_id: string }) => [own.id, sub.id].includes(a.email_id))).toHaveLength(2);
    });

    it("refuses mail for a deactivated agent's mailbox with 550 5.1.1, and holds one that raced the deactivation for review", async () => {
      const d = await seedMailbox(t, 'autonomous');
      const raw = await senders.sign(
        rawMessage({ to: d.mailbox.address, subject: 'Biopsy results', body: 'The biopsy of Maria Lopez came back.' }),
      );
      expect(await smtpCode(smtp.sendRaw(raw, { from: LAB, to: [d.mailbox.address] }))).toBe(250);
      const off = await t.call('POST', `/v1/agents/${d.agent.id}/deactivate`, t.adminKey);
      expect(off.status).toBe(200);
      const before = (await inboxOf(d.mailbox.id)).length;
      await expect(smtp.sendRaw(raw, { from: LAB, to: [d.mailbox.address] })).rejects.toMatchObject({
        responseCode: 550,
        response: expect.stringContaining('5.1.1'),
      });
      expect((await inboxOf(d.mailbox.id)).length).toBe(before);

      // Accepted at RCPT just before the deactivation committed: stored held, never shown, a reviewer decides.
      const r = await t.c.inbound.receiver.receive(
        { mailFrom: LAB, rcptTo: [d.mailbox.address], clientIp: '127.0.0.1', helo: 'mx.lab.example', tls: true },
        Buffer.from(raw.toString().replace('Biopsy results', 'Biopsy results again')),
      );
      expect(r.stored).toEqual([expect.objectContaining({ mailbox_id: d.mailbox.id, status: 'pending_approval' })]);
      const row = await stored(r.stored[0]!.id);
      expect(JSON.parse(row.status_reason!)).toMatchObject({ code: 'held', reasons: [{ code: 'agent_deactivated' }] });
      const apr = (await t.call('GET', '/v1/approvals?status=pending', reviewerKey)).body.approvals.find(
        (a: { email_id: string }) => a.email_id === row.id,
      );
      expect(apr).toMatchObject({ direction: 'inbound', reasons: [{ code: 'agent_deactivated' }] });
    });

    it('threads a reply to an outbound message into its thread, by In-Reply-To and by subject as a fallback', async () => {
      const sent = await t.call('POST', `/v1/mailboxes/${box.mailbox.id}/send`, box.agentKey, {
        to: [LAB],
        subject: 'Lab order 7781',
        text: 'Please send the results.',
      });
      expect(sent.status).toBe(202);
      const out = await stored(sent.body.id);
      await smtp.sendRaw(
        await senders.sign(
          rawMessage({
            to: box.mailbox.address,
            subject: 'Re: Lab order 7781',
            headers: { 'In-Reply-To': out.message_id, References: out.message_id },
          }),
        ),
        { from: LAB, to: [box.mailbox.address] },
      );
      const reply = (await inboxOf(box.mailbox.id)).at(-1)!;
      expect(reply.thread_id).toBe(out.thread_id);
      const thread = await t.call('GET', `/v1/threads/${out.thread_id}`, box.agentKey);
      expect(thread.body.messages.map((m: { id: string }) => m.id)).toEqual([out.id, reply.id]);

      // No headers (a client that drops them): the same correspondent and base subject within 30 days.
      await smtp.sendRaw(rawMessage({ to: box.mailbox.address, subject: 'RE: Lab order 7781' }), { from: LAB, to: [box.mailbox.address] });
      expect((await inboxOf(box.mailbox.id)).at(-1)!.thread_id).toBe(out.thread_id);
      // A different correspondent with the same subject starts its own thread.
      await smtp.sendRaw(rawMessage({ from: 'x@relaxed.example', to: box.mailbox.address, subject: 'Re: Lab order 7781' }), {
        from: 'x@relaxed.example',
        to: [box.mailbox.address],
      });
      expect((await inboxOf(box.mailbox.id)).at(-1)!.thread_id).not.toBe(out.thread_id);
    });

    it('turns an outbound message bounced when a delivery status notification reports it failed', async () => {
      const sent = await t.call('POST', `/v1/mailboxes/${box.mailbox.id}/send`, box.agentKey, {
        to: ['nobody@clinic.example'],
        subject: 'Appointment',
        text: 'See you Tuesday.',
      });
      const out = await stored(sent.body.id);
      expect(out.status).toBe('queued');
      const dsn = [
        'From: Mail Delivery System <MAILER-DAEMON@mx.clinic.example>',
        `To: ${box.mailbox.address}`,
        'Subject: Undelivered Mail Returned to Sender',
        'Message-ID: <dsn.1@mx.clinic.example>',
        'MIME-Version: 1.0',
        'Content-Type: multipart/report; report-type=delivery-status; boundary="BOUNDARY"',
        '',
        '--BOUNDARY',
        'Content-Type: text/plain',
        '',
        'Your message could not be delivered.',
        '--BOUNDARY',
        'Content-Type: message/delivery-status',
        '',
        'Reporting-MTA: dns; mx.clinic.example',
        '',
        'Final-Recipient: rfc822; nobody@clinic.example',
        'Action: failed',
        'Status: 5.1.1',
        'Diagnostic-Code: smtp; 550 5.1.1 <nobody@clinic.example>: Recipient address rejected',
        '',
        '--BOUNDARY',
        'Content-Type: text/rfc822-headers',
        '',
        `From: ${box.mailbox.address}`,
        `Message-ID: ${out.message_id}`,
        'Subject: Appointment',
        '',
        '--BOUNDARY--',
        '',
      ].join('\r\n');
      await smtp.sendRaw(Buffer.from(dsn), { from: '', to: [box.mailbox.address] });
      const after = await stored(out.id);
      expect(after.status).toBe('bounced');
      const reason = JSON.parse(after.status_reason!);
      expect(reason).toMatchObject({ code: 'dsn', action: 'failed', status: '5.1.1', failed_recipients: 1 });
      expect(reason.diagnostic).not.toContain('nobody@clinic.example');
      const report = (await inboxOf(box.mailbox.id)).at(-1)!;
      expect(report.thread_id).toBe(out.thread_id);
      expect(JSON.parse(report.system_tags)).toContain('bounce');
      expect(JSON.parse(report.tags)).toEqual([]);
      await t.c.audit.sync();
      const audit = await t.c.store.db
        .selectFrom('audit_events')
        .selectAll()
        .where('target_id', '=', storedOfId(out.id))
        .where('action', '=', 'email.bounced')
        .execute();
      expect(audit).toHaveLength(1);
      expect(JSON.parse(audit[0]!.details)).toMatchObject({ source: 'dsn', status: '5.1.1', report_email_id: report.id });
      const view = await t.call('GET', `/v1/emails/${out.id}`, box.agentKey);
      expect(view.body.status).toBe('bounced');
      expect(view.body.events.map((e: { type: string }) => e.type)).toContain('bounced');
    });

    it('holds inbound mail of a gated_all mailbox until a reviewer releases it, audited; a rejected one stays withheld', async () => {
      const g = await seedMailbox(t, 'gated_all');
      for (const subject of ['First held', 'Second held']) {
        await smtp.sendRaw(await senders.sign(rawMessage({ to: g.mailbox.address, subject })), { from: LAB, to: [g.mailbox.address] });
      }
      const rows = await inboxOf(g.mailbox.id);
      expect(rows.map((r) => r.status)).toEqual(['pending_approval', 'pending_approval']);
      const list = await t.call('GET', `/v1/mailboxes/${g.mailbox.id}/messages`, g.agentKey);
      expect(list.body.messages).toHaveLength(2);
      // Held: the tags Mailward derived from the content ('results') say what it is about, so the agent sees none.
      expect(JSON.parse(rows[0]!.system_tags)).toContain('results');
      for (const m of list.body.messages) expect(m).toMatchObject({ tags: [], system_tags: [] });
      const pending = await t.call('GET', '/v1/approvals?status=pending', reviewerKey);
      const approvals = rows.map((r) => pending.body.approvals.find((a: { email_id: string }) => a.email_id === r.id));
      for (const a of approvals)
        expect(a).toMatchObject({ direction: 'inbound', reasons: [{ code: 'oversight_mode', mode: 'gated_all' }] });

      // Agents never decide; edits make no sense for received mail.
      expect((await t.call('POST', `/v1/approvals/${approvals[0].id}/approve`, g.agentKey, {})).status).toBe(404);
      expect((await t.call('POST', `/v1/approvals/${approvals[0].id}/approve`, reviewerKey, { edits: { text: 'changed' } })).status).toBe(
        422,
      );

      const released = await t.call('POST', `/v1/approvals/${approvals[0].id}/approve`, reviewerKey, { comment: 'Genuine lab results.' });
      expect(released.status).toBe(200);
      expect(released.body.status).toBe('received');
      expect((await stored(rows[0]!.id)).status).toBe('received');
      const view = await t.call('GET', `/v1/emails/${rows[0]!.id}`, g.agentKey);
      expect(view.body.subject).toBe('First held');
      expect(view.body.system_tags).toContain('results');
      await t.c.audit.sync();
      const audit = await eventRows(
        selectEventRows(t.c.store.db).where('e.target_id', '=', storedOfId(rows[0]!.id)).where('e.action', '=', 'email.released'),
      );
      expect(audit).toHaveLength(1);
      expect(audit[0]).toMatchObject({
        actor_type: 'human',
        actor_id: g.reviewer.id === box.reviewer.id ? box.reviewer.id : audit[0]!.actor_id,
        content_hash: rows[0]!.raw_hash,
      });

      const rejected = await t.call('POST', `/v1/approvals/${approvals[1].id}/reject`, reviewerKey, { comment: 'Phishing.' });
      expect(rejected.status).toBe(200);
      expect(rejected.body.status).toBe('quarantined');
      expect((await stored(rows[1]!.id)).status).toBe('quarantined');
      // The domain-event log tells the same story, in commit order, with ids and codes only.
      const log = await t.c.mail.events.read({ orgId: t.orgId, after: 0, limit: 100, mailboxIds: [g.mailbox.id] });
      expect(log.map((e) => `${e.type}:${e.email_id === rows[0]!.id ? 1 : 2}`)).toEqual([
        'email.received:1',
        'approval.opened:1',
        'email.held:1',
        'email.received:2',
        'approval.opened:2',
        'email.held:2',
        'approval.decided:1',
        'email.released:1',
        'approval.decided:2',
        'email.quarantined:2',
      ]);
      expect(log.find((e) => e.type === 'approval.decided' && e.email_id === rows[1]!.id)?.data).toMatchObject({ outcome: 'rejected' });
      expect(JSON.stringify(log)).not.toContain('First held');
    });

    it('stores one sealed copy per recipient mailbox, marks a Bcc recipient, and quarantines a held message nobody released in time', async () => {
      const g = await seedMailbox(t, 'gated_all');
      const raw = await senders.sign(rawMessage({ to: box.mailbox.address, subject: 'Two mailboxes' }));
      const r = await smtp.sendRaw(raw, { from: LAB, to: [box.mailbox.address, g.mailbox.address] });
      expect(r.response).toMatch(/^250 /);
      const a = (await inboxOf(box.mailbox.id)).at(-1)!;
      const b = (await inboxOf(g.mailbox.id)).at(-1)!;
      expect([a.status, b.status]).toEqual(['received', 'pending_approval']);
      expect(a.raw_sealed).not.toEqual(b.raw_sealed);
      expect(a.raw_hash).toBe(b.raw_hash);
      const bcc = (await t.call('GET', `/v1/emails/${a.id}`, box.agentKey)).body;
      expect(bcc.bcc).toEqual([]);
      expect(openContent(t.c.ring, b, b.content_sealed).bcc).toEqual([g.mailbox.address]);
      // Expiry (MAILWARD_APPROVAL_TTL) keeps an unreleased inbound message withheld, as quarantined.
      await t.c.store.db
        .updateTable('approvals')
        .set({ expires_at: new Date(Date.now() - 1000).toISOString() })
        .where('message_id', '=', b.id)
        .execute();
      expect(await t.c.mail.approvals.expireDue()).toBeGreaterThanOrEqual(1);
      const expired = await stored(b.id);
      expect(expired.status).toBe('quarantined');
      expect(JSON.parse(expired.status_reason!)).toMatchObject({ code: 'expired' });
    });

    it('limits messages per client address per minute with 451 4.7.1', async () => {
      const limited = await startInbound(t, (c) => ({ ...c, inbound: { ...c.inbound, ratePerMinute: 2 } }));
      try {
        const send = () => limited.sendRaw(rawMessage({ to: box.mailbox.address }), { from: LAB, to: [box.mailbox.address] });
        expect(await smtpCode(send())).toBe(250);
        expect(await smtpCode(send())).toBe(250);
        await expect(send()).rejects.toMatchObject({ responseCode: 451, response: expect.stringContaining('4.7.1') });
      } finally {
        await limited.close();
      }
    });
  });
}
