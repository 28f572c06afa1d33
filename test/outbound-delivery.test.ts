import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { open } from '../src/kernel/crypto/envelope.js';
import { newId } from '../src/kernel/ids.js';
import { messageAad } from '../src/mail/message-store.js';
import { claimOutboxJobs } from '../src/queue/outbox-repo.js';
import { openStore } from '../src/store/db.js';
import { tempDir, testDialects } from './support/dialects.js';
import { type Sink, selfSignedCert, startSink, drainDeliveries, receivedWithId, relayEnv, seedMailbox } from './support/outbound-sink.js';
import { freePort } from './support/processes.js';
import { createTestApp, seedAgent, type TestApp } from './support/test-app.js';

const run = promisify(execFile);
const PATIENT = 'patient@clinic.example';

const drain = drainDeliveries;

const autonomousMailbox = async (t: TestApp) => {
  const s = await seedAgent(t, `Sender ${Math.random().toString(36).slice(2, 6)}`);
  const m = await t.call('POST', '/v1/mailboxes', t.adminKey, {
    agent_id: s.agent.id,
    display_name: 'Sender',
    oversight_mode: 'autonomous',
  });
  return { ...s, mailbox: m.body };
};

const sendOne = async (t: TestApp, key: string, mbx: string) => {
  const r = await t.call('POST', `/v1/mailboxes/${mbx}/send`, key, { to: [PATIENT], subject: 'Hello', text: 'Body' });
  expect(r.status).toBe(202);
  return r.body.id as string;
};

const status = async (t: TestApp, id: string) =>
  await t.c.store.db.selectFrom('messages').select(['status', 'message_id']).where('id', '=', id).executeTakeFirstOrThrow();

for (const dialect of testDialects()) {
  describe(`durable outbound delivery (${dialect})`, () => {
    const dir = tempDir('mw-outbound');
    const cleanups: (() => Promise<void>)[] = [];
    afterAll(async () => {
      for (const c of cleanups.reverse()) await c();
    });

    it('never lets two workers claim the same outbox job', async () => {
      const t = await createTestApp(dialect, { env: { MAILWARD_SMTP_RELAY: 'smtp://127.0.0.1:9' } });
      cleanups.push(t.close);
      const s = await autonomousMailbox(t);
      // Queue 60 jobs without delivering them (no worker runs in this test).
      for (let i = 0; i < 60; i++) await sendOne(t, s.agentKey, s.mailbox.id);
      const other = openStore(
        dialect === 'sqlite'
          ? { kind: 'sqlite', file: path.join(t.dataDir, 'mailward.db') }
          : { kind: 'postgres', url: t.env.DATABASE_URL! },
      );
      try {
        const now = new Date(Date.now() + 1000);
        const claims = await Promise.all(
          Array.from({ length: 6 }, (_, i) => claimOutboxJobs(i % 2 === 0 ? t.c.store.db : other.db, dialect, `w${i}`, now, 60_000, 15)),
        );
        const ids = claims.flat().map((j) => j.id);
        expect(new Set(ids).size).toBe(ids.length);
        expect(ids.length).toBe(60);
      } finally {
        await other.destroy();
      }
    });

    it('refuses a message larger than MAILWARD_MAX_MESSAGE_BYTES with 413 message_too_large', async () => {
      const t = await createTestApp(dialect, { env: { MAILWARD_SMTP_RELAY: 'smtp://127.0.0.1:9', MAILWARD_MAX_MESSAGE_BYTES: '16384' } });
      cleanups.push(t.close);
      const s = await autonomousMailbox(t);
      const r = await t.call('POST', `/v1/mailboxes/${s.mailbox.id}/send`, s.agentKey, {
        to: [PATIENT],
        subject: 'Big',
        text: 'x'.repeat(20_000),
      });
      expect(r.status).toBe(413);
      expect(r.body.code).toBe('message_too_large');
    });

    it('requires STARTTLS by default and never sends in clear text to a relay without it', async () => {
      const plain = await startSink(dir, { tls: false });
      const t = await createTestApp(dialect, {
        env: { MAILWARD_SMTP_RELAY: `smtp://127.0.0.1:${plain.port}`, MAILWARD_DELIVERY_RETRY_SCHEDULE: '3600' },
      });
      cleanups.push(async () => {
        await t.close();
        await plain.close();
      });
      const s = await autonomousMailbox(t);
      const id = await sendOne(t, s.agentKey, s.mailbox.id);
      await drain(t);
      expect((await status(t, id)).status).toBe('deferred');
      expect(plain.messages).toHaveLength(0);
      const ev = await t.c.store.db
        .selectFrom('message_events')
        .select('details')
        .where('message_id', '=', id)
        .where('type', '=', 'delivery_attempted')
        .executeTakeFirstOrThrow();
      expect(JSON.parse(ev.details)).toMatchObject({ result: 'deferred', category: 'tls' });
    });

    it('sends in clear text only when the TLS requirement is turned off explicitly', async () => {
      const plain = await startSink(dir, { tls: false });
      const t = await createTestApp(dialect, {
        env: { MAILWARD_SMTP_RELAY: `smtp://127.0.0.1:${plain.port}`, MAILWARD_SMTP_RELAY_REQUIRE_TLS: 'false' },
      });
      cleanups.push(async () => {
        await t.close();
        await plain.close();
      });
      const s = await autonomousMailbox(t);
      const id = await sendOne(t, s.agentKey, s.mailbox.id);
      await drain(t);
      expect((await status(t, id)).status).toBe('delivered');
      expect(plain.messages).toHaveLength(1);
    });

    it('defers while the relay is down and delivers once it is back', async () => {
      const port = await freePort();
      const cert = selfSignedCert(dir);
      const t = await createTestApp(dialect, {
        env: {
          MAILWARD_SMTP_RELAY: `smtp://127.0.0.1:${port}`,
          MAILWARD_SMTP_TLS_CA_FILE: cert.caFile,
          MAILWARD_DELIVERY_RETRY_SCHEDULE: '0,0,0,0',
        },
      });
      let sink: Sink | undefined;
      cleanups.push(async () => {
        await t.close();
        await sink?.close();
      });
      const s = await autonomousMailbox(t);
      const id = await sendOne(t, s.agentKey, s.mailbox.id);
      await t.c.mail.delivery.runOnce();
      expect((await status(t, id)).status).toBe('deferred');
      sink = await startSink(dir, { port, cert });
      await drain(t);
      const st = await status(t, id);
      expect(st.status).toBe('delivered');
      expect(receivedWithId(sink, st.message_id)).toHaveLength(1);
      const attempts = await t.c.store.db
        .selectFrom('message_events')
        .select('details')
        .where('message_id', '=', id)
        .where('type', '=', 'delivery_attempted')
        .orderBy('id')
        .execute();
      expect(attempts.map((a) => JSON.parse(a.details).result)).toEqual(['deferred', 'accepted']);
    });

    it("keeps a one-job message's signed bytes with its attempt's outcome and sends the same bytes on the retry; a message with a copy stores them before sending", async () => {
      // What the message row holds while the sink has the data and has not answered yet (the sender waits).
      let t: TestApp | undefined;
      let watched: string | null = null;
      const duringSmtp: (string | null)[] = [];
      const sink = await startSink(dir, {
        beforeReply: async () => {
          if (!t || !watched) return;
          const row = await t.c.store.db.selectFrom('messages').select('raw_hash').where('id', '=', watched).executeTakeFirstOrThrow();
          duringSmtp.push(row.raw_hash);
        },
      });
      t = await createTestApp(dialect, { env: relayEnv(sink) });
      const app = t;
      cleanups.push(async () => {
        await app.close();
        await sink.close();
      });
      const stored = () =>
        app.c.store.db
          .selectFrom('messages')
          .select(['id', 'org_id', 'mailbox_id', 'raw_sealed', 'raw_hash', 'message_id', 'status'])
          .where('id', '=', watched!)
          .executeTakeFirstOrThrow();

      // One route, no copy: the bytes are not stored before the relay's answer, and the deferral's commit keeps them.
      const s = await autonomousMailbox(app);
      watched = await sendOne(app, s.agentKey, s.mailbox.id);
      sink.replies.push({ code: 451, text: '4.3.0 Try again later' });
      await app.c.mail.delivery.runOnce();
      const deferred = await stored();
      expect(deferred.status).toBe('deferred');
      expect(duringSmtp).toEqual([null]);
      expect(deferred.raw_hash).toMatch(/^[0-9a-f]{64}$/);
      const kept = open(app.c.ring, deferred.raw_sealed!, messageAad(deferred, 'raw'));
      // The retry sends exactly the bytes the deferred attempt signed.
      await drain(app);
      const delivered = await stored();
      expect(delivered.status).toBe('delivered');
      expect(delivered.raw_hash).toBe(deferred.raw_hash);
      expect(duringSmtp).toEqual([null, deferred.raw_hash]);
      const got = receivedWithId(sink, delivered.message_id);
      expect(got).toHaveLength(1);
      expect(got[0]!.raw.equals(kept)).toBe(true);
      // Its history: both attempts, then `delivered` (the last two written together, in this order).
      const events = await app.c.store.db
        .selectFrom('message_events')
        .select(['type', 'details'])
        .where('message_id', '=', watched)
        .orderBy('id')
        .execute();
      expect(events.map((e) => e.type).slice(-3)).toEqual(['delivery_attempted', 'delivery_attempted', 'delivered']);
      expect(events.slice(-3, -1).map((e) => JSON.parse(e.details).result)).toEqual(['deferred', 'accepted']);

      // Two jobs (the monitored copy to forward_to): both send the bytes stored before the first of them is sent.
      const m = await seedMailbox(app, 'monitored', { forward_to: 'supervisor@hospital.example' });
      watched = await sendOne(app, m.agentKey, m.mailbox.id);
      duringSmtp.length = 0;
      await drain(app);
      const both = await stored();
      expect(both.status).toBe('delivered');
      expect(duringSmtp).toHaveLength(2);
      expect(duringSmtp.every((h) => h === both.raw_hash && h !== null)).toBe(true);
      const copies = receivedWithId(sink, both.message_id);
      expect(copies).toHaveLength(2);
      expect(copies[0]!.raw.equals(copies[1]!.raw)).toBe(true);
    });

    it("delivers to the recipient domain's MX from MAILWARD_DNS_OVERRIDES when no relay is set", async () => {
      const sink = await startSink(dir);
      const overrides = path.join(dir, `dns-${newId('request')}.json`);
      fs.writeFileSync(overrides, JSON.stringify({ MX: { 'clinic.example': [{ exchange: '127.0.0.1', priority: 10 }] } }));
      const t = await createTestApp(dialect, {
        env: { MAILWARD_DNS_OVERRIDES: overrides, MAILWARD_SMTP_MX_PORT: String(sink.port), MAILWARD_SMTP_TLS_CA_FILE: sink.caFile },
      });
      cleanups.push(async () => {
        await t.close();
        await sink.close();
      });
      const s = await autonomousMailbox(t);
      const id = await sendOne(t, s.agentKey, s.mailbox.id);
      await drain(t);
      expect((await status(t, id)).status).toBe('delivered');
      expect(sink.messages).toHaveLength(1);
      expect(sink.messages[0]!.tls).toBe(true);
    });

    it('verifies a delivered message with `mailward identity verify` and prints DNS records with `mailward dns`', async () => {
      const sink = await startSink(dir);
      const t = await createTestApp(dialect, {
        env: { MAILWARD_SMTP_RELAY: `smtp://127.0.0.1:${sink.port}`, MAILWARD_SMTP_TLS_CA_FILE: sink.caFile },
      });
      cleanups.push(async () => {
        await t.close();
        await sink.close();
      });
      const s = await autonomousMailbox(t);
      await sendOne(t, s.agentKey, s.mailbox.id);
      await drain(t);
      const eml = path.join(dir, `${newId('request')}.eml`);
      fs.writeFileSync(eml, sink.messages[0]!.raw);
      const env = { ...process.env, ...t.env };
      const cli = ['--import', 'tsx', path.resolve('src/cli/main.ts')];
      const ok = await run(process.execPath, [...cli, 'identity', 'verify', eml, '--json'], { env });
      expect(JSON.parse(ok.stdout)).toMatchObject({ valid: true, agent: { id: s.agent.id }, reasons: [] });
      const bad = path.join(dir, `${newId('request')}.eml`);
      fs.writeFileSync(bad, Buffer.from(sink.messages[0]!.raw.toString().replace('Body', 'Bodz')));
      const err = await run(process.execPath, [...cli, 'identity', 'verify', bad, '--json'], { env }).catch(
        (e: { code: number; stdout: string }) => e,
      );
      expect((err as { code: number }).code).toBe(1);
      expect(JSON.parse((err as { stdout: string }).stdout).reasons).toContain('body_hash_mismatch');
      const dns = await run(process.execPath, [...cli, 'dns', '--json'], { env });
      const records = JSON.parse(dns.stdout).organizations[0].dns_records as { name: string; value: string }[];
      expect(
        records
          .filter((r) => r.value.startsWith('v=DKIM1'))
          .map((r) => r.value.split(';')[1]!.trim())
          .sort(),
      ).toEqual(['k=ed25519', 'k=rsa']);
      expect(records.some((r) => r.value.startsWith('v=spf1'))).toBe(true);
      expect(records.some((r) => r.name === `_dmarc.${t.domain}`)).toBe(true);
    }, 60_000);
  });
}
