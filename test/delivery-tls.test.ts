import { Writable } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { createLogger } from '../src/kernel/log.js';
import { tempDir, testDialects } from './support/dialects.js';
import { drainDeliveries, relayEnv, type Sink, seedMailbox, startSink } from './support/outbound-sink.js';
import { createTestApp, type TestApp } from './support/test-app.js';
import { storedOfId } from '../src/audit/audit-columns.js';

const PATIENT = 'patient@clinic.example';

/** A logger writing JSON lines into memory, at info (the delivery line's level). */
const capture = () => {
  let text = '';
  const logger = createLogger({
    level: 'info',
    destination: new Writable({
      write(chunk, _enc, done) {
        text += chunk;
        done();
      },
    }),
  });
  const lines = () =>
    text
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, any>);
  return { logger, lines, text: () => text };
};

const sendOne = async (t: TestApp, m: Awaited<ReturnType<typeof seedMailbox>>) => {
  const r = await t.call('POST', `/v1/mailboxes/${m.mailbox.id}/send`, m.agentKey, { to: [PATIENT], subject: 'Results', text: 'Call us.' });
  expect(r.status).toBe(202);
  return r.body.id as string;
};

const attemptOf = async (t: TestApp, id: string) => {
  await t.c.audit.sync(); // audit events are sequenced by the integrator
  const rows = await t.c.store.db
    .selectFrom('audit_events')
    .select(['details'])
    .where('action', '=', 'email.delivery_attempted')
    .where('target_id', '=', storedOfId(id))
    .execute();
  return rows.map((r) => JSON.parse(r.details) as Record<string, unknown>);
};

for (const dialect of testDialects()) {
  describe(`delivery over STARTTLS names the negotiated TLS version and cipher (${dialect})`, () => {
    const dir = tempDir('mw-delivery-tls');
    const cleanups: (() => Promise<void>)[] = [];
    afterAll(async () => {
      for (const c of cleanups.reverse()) await c();
    });

    for (const max of ['TLSv1.3', 'TLSv1.2'] as const) {
      it(`logs and audits what the sink negotiated, capped at ${max}, on every message of a pooled session`, async () => {
        const sink: Sink = await startSink(dir, { tlsMaxVersion: max });
        cleanups.push(() => sink.close());
        const log = capture();
        const t = await createTestApp(dialect, { env: relayEnv(sink), logger: log.logger });
        cleanups.push(t.close);
        const m = await seedMailbox(t, 'autonomous');
        const ids = [await sendOne(t, m), await sendOne(t, m), await sendOne(t, m)];
        await drainDeliveries(t);
        await sink.waitFor(3);

        // What the sink's side of the handshake says: the reference the client's figures are checked against.
        const negotiated = sink.messages.map((x) => x.cipher);
        expect(negotiated.every((c) => c?.version === max)).toBe(true);
        const cipher = negotiated[0]!.standardName ?? negotiated[0]!.name;
        expect(cipher).toMatch(max === 'TLSv1.3' ? /^TLS_/ : /^TLS_ECDHE_/);

        const sent = log.lines().filter((l) => l.msg === 'delivery sent');
        expect(sent.map((l) => l.delivery.message).sort()).toEqual([...ids].sort());
        for (const l of sent) {
          expect(l.delivery).toMatchObject({ status: 'sent', tls: 'starttls-verified', tls_version: max, tls_cipher: cipher });
        }
        for (const id of ids) {
          const [a] = await attemptOf(t, id);
          expect(a).toMatchObject({ result: 'accepted', tls: 'starttls-verified', tls_version: max, tls_cipher: cipher });
        }
        // No addresses in the line.
        expect(log.text()).not.toContain(PATIENT);
      }, 60_000);
    }

    it('names the negotiated TLS on a refusal given over the session, and none on plain SMTP', async () => {
      const sink: Sink = await startSink(dir);
      cleanups.push(() => sink.close());
      sink.replies.push({ code: 550, text: '5.1.1 no such user' });
      const log = capture();
      const t = await createTestApp(dialect, { env: relayEnv(sink), logger: log.logger });
      cleanups.push(t.close);
      const m = await seedMailbox(t, 'autonomous');
      const id = await sendOne(t, m);
      await drainDeliveries(t);
      const line = log.lines().find((l) => l.delivery?.message === id);
      expect(line?.delivery).toMatchObject({ code: 550, tls: 'starttls-verified', tls_version: 'TLSv1.3' });
      expect(line?.delivery.tls_cipher).toMatch(/^TLS_/);

      const plain: Sink = await startSink(dir, { tls: false });
      cleanups.push(() => plain.close());
      const log2 = capture();
      const t2 = await createTestApp(dialect, {
        env: { ...relayEnv(plain), MAILWARD_SMTP_RELAY_REQUIRE_TLS: 'false' },
        logger: log2.logger,
      });
      cleanups.push(t2.close);
      const m2 = await seedMailbox(t2, 'autonomous');
      const id2 = await sendOne(t2, m2);
      await drainDeliveries(t2);
      await plain.waitFor(1);
      expect(plain.messages[0]?.tls).toBe(false);
      const line2 = log2.lines().find((l) => l.delivery?.message === id2);
      expect(line2?.delivery).toMatchObject({ status: 'sent', tls: 'none', tls_version: null, tls_cipher: null });
    }, 60_000);
  });
}
