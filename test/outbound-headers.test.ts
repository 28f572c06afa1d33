import { simpleParser } from 'mailparser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir, testDialects } from './support/dialects.js';
import { drainDeliveries, receivedWithId, relayEnv, type Sink, seedMailbox, startSink } from './support/outbound-sink.js';
import { createTestApp, type TestApp } from './support/test-app.js';

const PATIENT = 'patient@clinic.example';

for (const dialect of testDialects()) {
  describe(`outbound header fields (${dialect})`, () => {
    let t: TestApp;
    let sink: Sink;
    beforeAll(async () => {
      sink = await startSink(tempDir('mw-sink'));
      t = await createTestApp(dialect, { env: relayEnv(sink) });
    }, 60_000);
    afterAll(async () => {
      await t?.close();
      await sink?.close();
    });

    /** Sends from an autonomous mailbox and returns what the relay received, parsed by mailparser (an independent reader). */
    const sendAndParse = async (s: Awaited<ReturnType<typeof seedMailbox>>, body: Record<string, unknown>) => {
      const r = await t.call('POST', `/v1/mailboxes/${s.mailbox.id}/send`, s.agentKey, {
        to: [PATIENT],
        subject: 'Your appointment',
        text: 'See you Tuesday.',
        ...body,
      });
      expect(r.status).toBe(202);
      await drainDeliveries(t);
      const row = await t.c.store.db
        .selectFrom('messages')
        .select(['status', 'message_id'])
        .where('id', '=', r.body.id)
        .executeTakeFirstOrThrow();
      expect(row.status).toBe('delivered');
      const got = receivedWithId(sink, row.message_id);
      expect(got).toHaveLength(1);
      return { id: r.body.id as string, parsed: await simpleParser(got[0]!.raw), raw: got[0]!.raw };
    };

    it('refuses a display name with bidi overrides, controls or line separators on create and patch (400)', async () => {
      const s = await seedMailbox(t, 'autonomous');
      for (const bad of [
        'Clinic \u202Eevil',
        'Clinic\u2066x\u2069',
        'Clinic\u200F',
        'Clinic\tDesk',
        'Clinic\u0085Desk',
        'Clinic\u2028Desk',
        'Clinic\u009bDesk',
      ]) {
        const created = await t.call('POST', '/v1/mailboxes', t.adminKey, {
          agent_id: s.agent.id,
          address: `x${Math.random().toString(36).slice(2, 8)}@${t.domain}`,
          display_name: bad,
          oversight_mode: 'autonomous',
        });
        expect(created.status, JSON.stringify(bad)).toBe(400);
        expect(created.headers['content-type']).toMatch(/application\/problem\+json/);
        const patched = await t.call('PATCH', `/v1/mailboxes/${s.mailbox.id}`, t.adminKey, { display_name: bad });
        expect(patched.status, JSON.stringify(bad)).toBe(400);
        expect(typeof patched.body.code).toBe('string');
      }
      const subject = await t.call('POST', `/v1/mailboxes/${s.mailbox.id}/send`, s.agentKey, {
        to: [PATIENT],
        subject: 'Results \u202Efdp.exe',
        text: 'x',
      });
      expect(subject.status).toBe(400);
      // Ordinary names in any script stay allowed.
      const ok = await t.call('PATCH', `/v1/mailboxes/${s.mailbox.id}`, t.adminKey, { display_name: 'Zoë Ng, MD (מרפאה)' });
      expect(ok.status).toBe(200);
    });

    it('sends a display name and subject holding a literal encoded-word as that literal text, and From keeps its address', async () => {
      const name = '=?utf-8?q?ceo=40bank.example?= <ceo@bank.example>';
      const s = await seedMailbox(t, 'autonomous');
      expect((await t.call('PATCH', `/v1/mailboxes/${s.mailbox.id}`, t.adminKey, { display_name: name })).status).toBe(200);
      const subject = 'Re: =?utf-8?q?=E2=80=AEtxt.exe?= your results';
      const { parsed } = await sendAndParse(s, { subject });
      expect(parsed.from?.value).toEqual([{ name, address: s.mailbox.address }]);
      expect(parsed.subject).toBe(subject);
    });

    it('round-trips quoted, non-ASCII and long display names through From', async () => {
      for (const name of ['Dr. O\'Brien, "Cardiology"', 'Zoë Ng', `${'Clinic '.repeat(20)}=?x`, 'Plain Name']) {
        const s = await seedMailbox(t, 'autonomous');
        expect((await t.call('PATCH', `/v1/mailboxes/${s.mailbox.id}`, t.adminKey, { display_name: name })).status).toBe(200);
        const { parsed, raw } = await sendAndParse(s, {});
        expect(parsed.from?.value, name).toEqual([{ name: name.trim(), address: s.mailbox.address }]);
        // RFC 5322 2.1.1: no header line over 998 characters.
        for (const line of raw.toString('latin1').split('\r\n')) expect(line.length).toBeLessThanOrEqual(998);
      }
    });

    it('builds From without the bidi controls and line breaks of a display name stored before the rules', async () => {
      const s = await seedMailbox(t, 'autonomous');
      // A row written before the edge refused these characters (or by an older version).
      await t.c.store.db
        .updateTable('mailboxes')
        .set({ display_name: 'Clinic \u202Etxt.exe\u202C Desk\r\nBcc: x@evil.example' })
        .where('id', '=', s.mailbox.id)
        .execute();
      const { parsed, raw } = await sendAndParse(s, {});
      expect(parsed.from?.value).toEqual([{ name: 'Clinic txt.exe Desk Bcc: x@evil.example', address: s.mailbox.address }]);
      expect(parsed.headers.has('bcc')).toBe(false);
      expect(raw.toString('utf8')).not.toMatch(/[\u202a-\u202e]/);
    });

    it('sends and stores attachment filenames without a path or bidi controls, as inbound names are served', async () => {
      const s = await seedMailbox(t, 'autonomous');
      const attachments = [
        { filename: '..\\..\\Windows\\evil.exe', content_type: 'application/octet-stream', content_base64: 'eA==' },
        { filename: '../../etc/passwd', content_type: 'text/plain', content_base64: 'eA==' },
        { filename: 'report\u202Efdp.exe', content_type: 'application/pdf', content_base64: 'eA==' },
        { filename: '...', content_type: 'text/plain', content_base64: 'eA==' },
      ];
      const { id, parsed } = await sendAndParse(s, { attachments });
      const expected = ['evil.exe', 'passwd', 'reportfdp.exe', 'attachment'];
      expect(parsed.attachments.map((a) => a.filename)).toEqual(expected);
      const view = await t.call('GET', `/v1/emails/${id}`, s.agentKey);
      expect(view.status).toBe(200);
      expect(view.body.attachments.map((a: { filename: string }) => a.filename)).toEqual(expected);
    });
  });
}
