import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import fc from 'fast-check';
import { sql } from 'kysely';
import { createTransport } from 'nodemailer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshDatabase, tempDir, testDialects } from './support/dialects.js';
import { type Inbound, outsideSenders, rawMessage, smtpCode, startInbound } from './support/inbound-mail.js';
import { seedMailbox } from './support/outbound-sink.js';
import { startServer } from './support/processes.js';
import { createTestApp, type TestApp } from './support/test-app.js';

const LAB = 'results@lab.example';
const CRLF = '\r\n';

/** Reads the first reply line of a raw SMTP connection (the greeting or the refusal). */
const greeting = (port: number) =>
  new Promise<{ line: string; socket: net.Socket }>((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let buf = '';
    socket.on('data', (d) => {
      buf += d.toString();
      if (buf.includes('\n')) resolve({ line: buf.split(/\r?\n/)[0]!, socket });
    });
    socket.on('error', reject);
  });

const storedIdOf = (response: string) => /as (msg_[0-9a-f]{32})/.exec(response)?.[1];

/** Odd but real-world messages: each must be accepted, stored and readable. */
const ODD: {
  name: string;
  raw: (to: string) => Buffer;
  check: (v: { subject: string; text: string | null; attachments: unknown[] }) => void;
}[] = [
  {
    name: 'windows-1252 body',
    raw: (to) =>
      Buffer.concat([
        Buffer.from(
          `From: a@lab.example${CRLF}To: ${to}${CRLF}Subject: =?windows-1252?Q?Caf=E9?=${CRLF}MIME-Version: 1.0${CRLF}Content-Type: text/plain; charset=windows-1252${CRLF}Content-Transfer-Encoding: 8bit${CRLF}${CRLF}`,
        ),
        Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x20, 0x80, 0x0d, 0x0a]),
      ]),
    check: (v) => {
      expect(v.subject).toBe('Café');
      expect(v.text).toContain('café €');
    },
  },
  {
    name: 'ISO-2022-JP subject and body',
    raw: (to) =>
      Buffer.from(
        `From: a@lab.example${CRLF}To: ${to}${CRLF}Subject: =?ISO-2022-JP?B?GyRCJUYlOSVIGyhC?=${CRLF}MIME-Version: 1.0${CRLF}Content-Type: text/plain; charset=ISO-2022-JP${CRLF}${CRLF}\x1b$B%F%9%H\x1b(B${CRLF}`,
        'latin1',
      ),
    check: (v) => {
      expect(v.subject).toBe('テスト');
      expect(v.text).toContain('テスト');
    },
  },
  {
    name: 'unknown charset',
    raw: (to) =>
      Buffer.from(
        `From: a@lab.example${CRLF}To: ${to}${CRLF}Subject: odd charset${CRLF}Content-Type: text/plain; charset=x-no-such-charset${CRLF}${CRLF}plain words\xff\xfe${CRLF}`,
        'latin1',
      ),
    check: (v) => expect(v.text).toContain('plain words'),
  },
  {
    name: 'multipart without its closing boundary',
    raw: (to) =>
      Buffer.from(
        [
          `From: a@lab.example`,
          `To: ${to}`,
          'Subject: truncated multipart',
          'MIME-Version: 1.0',
          'Content-Type: multipart/mixed; boundary="XYZ"',
          '',
          '--XYZ',
          'Content-Type: text/plain',
          '',
          'first part text',
          '--XYZ',
          'Content-Type: application/pdf; name="r.pdf"',
          'Content-Transfer-Encoding: base64',
          '',
          'JVBERi0xLjQK!!!not base64',
          '',
        ].join(CRLF),
      ),
    check: (v) => expect(v.text).toContain('first part text'),
  },
  {
    name: 'multipart without a boundary parameter',
    raw: (to) =>
      Buffer.from(
        [`From: a@lab.example`, `To: ${to}`, 'Subject: no boundary', 'Content-Type: multipart/alternative', '', 'just some text', ''].join(
          CRLF,
        ),
      ),
    check: (v) => expect(v.subject).toBe('no boundary'),
  },
  {
    name: 'headers only, no body',
    raw: (to) => Buffer.from(`From: a@lab.example${CRLF}To: ${to}${CRLF}Subject: headers only${CRLF}`),
    check: (v) => expect(v.subject).toBe('headers only'),
  },
  {
    name: 'broken encoded words and no From',
    raw: (to) => Buffer.from(`To: ${to}${CRLF}Subject: =?utf-8?B?###?= =?bogus?Q?x?=${CRLF}${CRLF}body${CRLF}`),
    check: (v) => expect(typeof v.subject).toBe('string'),
  },
  {
    name: 'deeply nested multiparts',
    raw: (to) => {
      const depth = 60;
      let body = 'Content-Type: text/plain\r\n\r\ninnermost text\r\n';
      for (let i = depth; i > 0; i--) body = `Content-Type: multipart/mixed; boundary="b${i}"\r\n\r\n--b${i}\r\n${body}--b${i}--\r\n`;
      return Buffer.from(`From: a@lab.example${CRLF}To: ${to}${CRLF}Subject: nested${CRLF}MIME-Version: 1.0${CRLF}${body}`);
    },
    check: (v) => expect(v.subject).toBe('nested'),
  },
];

for (const dialect of testDialects()) {
  describe(`inbound SMTP listener robustness (${dialect})`, () => {
    let t: TestApp;
    let smtp: Inbound;
    let box: Awaited<ReturnType<typeof seedMailbox>>;

    beforeAll(async () => {
      const senders = outsideSenders(tempDir('mw-inbound-fuzz'));
      t = await createTestApp(dialect, { env: { MAILWARD_DNS_OVERRIDES: senders.file, MAILWARD_SMTP_RATE_PER_MINUTE: '0' } });
      smtp = await startInbound(t);
      box = await seedMailbox(t, 'autonomous');
    }, 60_000);
    afterAll(async () => {
      await smtp?.close();
      await t?.close();
    });

    for (const c of ODD) {
      it(`stores and shows a message with ${c.name}`, async () => {
        const r = await smtp.sendRaw(c.raw(box.mailbox.address), { from: LAB, to: [box.mailbox.address] });
        const id = storedIdOf(r.response);
        expect(id).toMatch(/^msg_/);
        const view = await t.call('GET', `/v1/emails/${id}`, box.agentKey);
        expect(view.status).toBe(200);
        c.check(view.body);
      });
    }

    it('never crashes on generated messages, and every accepted one is readable (fast-check)', async () => {
      const tr = createTransport({
        host: '127.0.0.1',
        port: smtp.port,
        secure: false,
        requireTLS: true,
        pool: true,
        maxConnections: 2,
        tls: { ca: smtp.ca, servername: 'localhost' },
      });
      const headerName = fc.constantFrom(
        'Subject',
        'From',
        'To',
        'Cc',
        'Content-Type',
        'Content-Transfer-Encoding',
        'MIME-Version',
        'Message-ID',
        'In-Reply-To',
        'References',
        'Date',
        'X-Junk',
        'Content-Disposition',
      );
      const value = fc.oneof(
        fc.string({ maxLength: 80 }),
        fc.constantFrom(
          'multipart/mixed; boundary="q"',
          'multipart/report; report-type=delivery-status; boundary=q',
          'text/plain; charset=klingon',
          'text/html; charset=utf-16',
          'base64',
          'quoted-printable',
          '=?utf-8?B?w6k=?=',
          '<a@b>',
          '<<<>>>',
          'message/rfc822',
        ),
        fc.uint8Array({ maxLength: 60 }).map((b) => Buffer.from(b).toString('latin1')),
      );
      const headerLine = fc.tuple(headerName, value).map(([k, v]) => `${k}: ${v.replace(/[\r\n]/g, ' ')}`);
      const body = fc.oneof(
        fc.string({ maxLength: 500 }),
        fc.uint8Array({ maxLength: 2000 }).map((b) => Buffer.from(b).toString('latin1')),
        fc.constantFrom(
          '--q\r\nContent-Type: text/plain\r\n\r\nhi\r\n--q--\r\n',
          '--q\r\nContent-Type: message/delivery-status\r\n\r\nAction: failed\r\nStatus: 5.1.1\r\n--q',
          '=41=42=4',
          '.\r\n..\r\n.',
        ),
      );
      // fast-check replays inputs while shrinking: a message sent before is a retransmission, suppressed as a duplicate.
      const sent = new Set<string>();
      try {
        await fc.assert(
          fc.asyncProperty(fc.array(headerLine, { maxLength: 12 }), body, async (headers, b) => {
            const raw = Buffer.from(
              `To: ${box.mailbox.address}\r\n${headers.join('\r\n')}\r\n\r\n${b.replace(/\r?\n/g, '\r\n')}\r\n`,
              'latin1',
            );
            const resent = sent.has(raw.toString('base64'));
            sent.add(raw.toString('base64'));
            let response: string;
            try {
              response = String((await tr.sendMail({ envelope: { from: LAB, to: [box.mailbox.address] }, raw })).response);
            } catch (e) {
              // A refusal is acceptable only as a well-formed SMTP reply, never a dropped connection or a 5xx for a good recipient.
              throw new Error(`refused: ${(e as { response?: string; code?: string }).response ?? (e as Error).message}`);
            }
            const id = storedIdOf(response);
            if (resent && id === undefined) {
              expect(response).toMatch(/^250 2\.0\.0 Ok: stored$/);
              return;
            }
            expect(id).toMatch(/^msg_/);
            const view = await t.call('GET', `/v1/emails/${id}`, box.agentKey);
            expect(view.status).toBe(200);
          }),
          // Found by this property on PostgreSQL: a NUL in a Message-ID reached a query (text cannot hold NUL there).
          { numRuns: 60, examples: [[['References: \u0000', 'Message-ID: <a\u0000b@x>', 'In-Reply-To: \u0000@\u0001'], '']] },
        );
      } finally {
        tr.close();
      }
      // Still serving afterwards.
      expect(await smtpCode(smtp.sendRaw(rawMessage({ to: box.mailbox.address }), { from: LAB, to: [box.mailbox.address] }))).toBe(250);
    }, 120_000);

    it('survives arbitrary bytes and command sequences on the socket (fast-check)', async () => {
      const talk = (chunks: Uint8Array[]) =>
        new Promise<void>((resolve) => {
          const socket = net.connect(smtp.port, '127.0.0.1');
          socket.on('error', () => resolve());
          socket.on('close', () => resolve());
          socket.once('data', async () => {
            for (const c of chunks) socket.write(c);
            setTimeout(() => socket.destroy(), 30);
          });
        });
      const command = fc.oneof(
        fc.uint8Array({ maxLength: 300 }),
        fc
          .constantFrom(
            'EHLO x\r\n',
            'HELO \r\n',
            'MAIL FROM:<a@lab.example>\r\n',
            `RCPT TO:<${'x'.repeat(70)}@hospital.example>\r\n`,
            'DATA\r\n',
            '.\r\n',
            'STARTTLS\r\n',
            'AUTH PLAIN AAAA\r\n',
            'BDAT 10 LAST\r\n',
            'RSET\r\n',
            'GET / HTTP/1.1\r\n',
            'MAIL FROM:<> SIZE=99999999999\r\n',
          )
          .map((x) => Buffer.from(x)),
      );
      await fc.assert(
        fc.asyncProperty(fc.array(command, { maxLength: 12 }), async (chunks) => talk(chunks)),
        { numRuns: 40 },
      );
      expect(await smtpCode(smtp.sendRaw(rawMessage({ to: box.mailbox.address }), { from: LAB, to: [box.mailbox.address] }))).toBe(250);
    }, 60_000);

    it('answers 451 4.3.0 while the store cannot take the message, and stores it when the sender retries', async () => {
      const raw = rawMessage({ to: box.mailbox.address, subject: 'retry me', messageId: '<retry.1@lab.example>' });
      await sql`alter table messages rename to messages_away`.execute(t.c.store.db);
      try {
        await expect(smtp.sendRaw(raw, { from: LAB, to: [box.mailbox.address] })).rejects.toMatchObject({
          responseCode: 451,
          response: expect.stringContaining('4.3.0'),
        });
      } finally {
        await sql`alter table messages_away rename to messages`.execute(t.c.store.db);
      }
      const ok = await smtp.sendRaw(raw, { from: LAB, to: [box.mailbox.address] });
      expect(storedIdOf(ok.response)).toMatch(/^msg_/);
      // The same bytes again (a retry after a lost 250) are not stored twice.
      await smtp.sendRaw(raw, { from: LAB, to: [box.mailbox.address] });
      const rows = await t.c.store.db.selectFrom('messages').select('id').where('message_id', '=', '<retry.1@lab.example>').execute();
      expect(rows).toHaveLength(1);
    });

    it('limits connections per client address (421) and can require STARTTLS (530)', async () => {
      const limited = await startInbound(t, (c) => ({ ...c, inbound: { ...c.inbound, maxClientsPerIp: 1, requireTls: true } }));
      try {
        const first = await greeting(limited.port);
        expect(first.line).toMatch(/^220 /);
        const second = await greeting(limited.port);
        expect(second.line).toMatch(/^421 4\.7\.0/);
        first.socket.destroy();
        second.socket.destroy();
        await new Promise((r) => setTimeout(r, 100));
        const plain = createTransport({ host: '127.0.0.1', port: limited.port, secure: false, ignoreTLS: true });
        try {
          await expect(
            plain.sendMail({ envelope: { from: LAB, to: [box.mailbox.address] }, raw: rawMessage({ to: box.mailbox.address }) }),
          ).rejects.toMatchObject({ responseCode: 530 });
        } finally {
          plain.close();
        }
        expect(await smtpCode(limited.sendRaw(rawMessage({ to: box.mailbox.address }), { from: LAB, to: [box.mailbox.address] }))).toBe(
          250,
        );
      } finally {
        await limited.close();
      }
    });
  });
}

describe.skipIf(!testDialects().includes('sqlite'))('mailward serve', () => {
  it('starts the SMTP listener with a generated development certificate and stores what it receives', async () => {
    const db = await freshDatabase('sqlite');
    const server = await startServer({ ...db.env, MAILWARD_DOMAIN: 'hospital.example' });
    try {
      const smtpPort = Number(/"smtp":"127\.0\.0\.1:(\d+)"/.exec(server.output())?.[1]);
      expect(smtpPort).toBeGreaterThan(0);
      const certFile = path.join(db.dataDir, 'smtp-tls-cert.pem');
      expect((fs.statSync(path.join(db.dataDir, 'smtp-tls-key.pem')).mode & 0o777).toString(8)).toBe('600');
      const base = `http://127.0.0.1:${server.port}`;
      const admin = fs.readFileSync(path.join(db.dataDir, 'bootstrap-admin.key'), 'utf8').trim();
      const call = async (method: string, p: string, key: string, body?: unknown) => {
        const r = await fetch(base + p, {
          method,
          headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
          body: body === undefined ? undefined : JSON.stringify(body),
        });
        return (await r.json()) as Record<string, any>;
      };
      const dep = await call('POST', '/v1/departments', admin, { name: 'Lab' });
      const human = await call('POST', '/v1/humans', admin, { name: 'Dr. Serve', email: 'serve@hospital.example', roles: ['reviewer'] });
      const agent = await call('POST', '/v1/agents', admin, {
        name: 'Results Reader',
        department_id: dep.id,
        responsible_human_id: human.id,
      });
      const key = (await call('POST', `/v1/agents/${agent.id}/api-keys`, admin, {})).key as string;
      const mbx = await call('POST', '/v1/mailboxes', admin, { agent_id: agent.id, display_name: 'Results', oversight_mode: 'autonomous' });
      const tr = createTransport({
        host: '127.0.0.1',
        port: smtpPort,
        secure: false,
        requireTLS: true,
        tls: { ca: fs.readFileSync(certFile), servername: 'localhost' },
      });
      try {
        await tr.sendMail({ envelope: { from: LAB, to: [mbx.address] }, raw: rawMessage({ to: mbx.address, subject: 'Through serve' }) });
      } finally {
        tr.close();
      }
      const list = await call('GET', `/v1/mailboxes/${mbx.id}/messages?direction=inbound`, key);
      expect(list.messages.map((m: { subject: string }) => m.subject)).toEqual(['Through serve']);
    } finally {
      await server.stop();
      await db.drop();
    }
  }, 60_000);
});
