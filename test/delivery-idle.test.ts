import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../src/kernel/log.js';
import { tempDir, testDialects } from './support/dialects.js';
import { receivedWithId, relayEnv, type Sink, seedMailbox, startSink } from './support/outbound-sink.js';
import { createTestApp, type TestApp } from './support/test-app.js';
import { waitFor } from './support/wait.js';

/*
 * The running delivery worker with nothing due asks nothing of the store (README, "Two PostgreSQL processes"), yet
 * delivers what it is woken for (a send's commit) and a retry whose time comes with no wake-up. Statements are
 * counted from trace logging: one `store query` line per statement the container runs (durations only).
 */
for (const dialect of testDialects()) {
  describe(`an idle delivery worker (${dialect})`, () => {
    let t: TestApp;
    let sink: Sink;
    let queries = 0;
    const logger = createLogger({
      level: 'trace',
      destination: {
        write: (line: string) => {
          if (line.includes('"msg":"store query"')) queries++;
        },
      },
    });

    beforeAll(async () => {
      sink = await startSink(tempDir('mw-sink'));
      // Polling every 20 ms (relayEnv) would claim about a hundred times in a two-second window; a retry two seconds on.
      t = await createTestApp(dialect, { logger, env: relayEnv(sink, { MAILWARD_DELIVERY_RETRY_SCHEDULE: '2,2,2' }) });
    }, 60_000);
    afterAll(async () => {
      await t?.c.mail.delivery.stop();
      await t?.close();
      await sink?.close();
    });

    /** Waits until the count stops moving for two seconds (audit integration of what came before settles). */
    const settled = async () => {
      let last = -1;
      let stableFor = 0;
      const ok = await waitFor(
        () => {
          stableFor = queries === last ? stableFor + 1 : 0;
          last = queries;
          return stableFor >= 4;
        },
        { timeoutMs: 30_000, everyMs: 500 },
      );
      if (!ok) throw new Error(`store queries never settled (${queries})`);
      return last;
    };

    const send = async (key: string, mailboxId: string, subject: string) => {
      const r = await t.call('POST', `/v1/mailboxes/${mailboxId}/send`, key, { to: ['patient@clinic.example'], subject, text: 'Hello' });
      expect(r.status).toBe(202);
      return (await t.c.store.db.selectFrom('messages').select('message_id').where('id', '=', r.body.id).executeTakeFirstOrThrow())
        .message_id;
    };

    it('runs no statement for two seconds while idle, delivers a send it is woken for, and a retry when it comes due', async () => {
      const s = await seedMailbox(t, 'autonomous');
      t.c.mail.delivery.start();
      const quiet = await settled();
      // Polled, so the test fails as soon as a statement appears.
      expect(await waitFor(() => queries !== quiet, { timeoutMs: 2000, everyMs: 50 })).toBe(false);

      // Woken: the send's commit kicks the worker.
      const first = await send(s.agentKey, s.mailbox.id, 'Woken');
      expect(await waitFor(() => receivedWithId(sink, first).length === 1, { timeoutMs: 20_000 })).toBe(true);

      // A retry: the first attempt is deferred (451), the next one comes due two seconds later with no wake-up.
      await settled();
      sink.replies.push({ code: 451, text: '4.3.0 try again later' });
      const retried = await send(s.agentKey, s.mailbox.id, 'Retried');
      expect(await waitFor(() => receivedWithId(sink, retried).length === 1, { timeoutMs: 30_000 })).toBe(true);
      // Deferred once, then delivered by the worker waking at the retry's time (its outcome commits after the 250).
      const job = () =>
        t.c.store.db
          .selectFrom('outbox')
          .innerJoin('messages', 'messages.id', 'outbox.message_id')
          .select(['outbox.status', 'outbox.attempts'])
          .where('messages.message_id', '=', retried)
          .executeTakeFirstOrThrow();
      expect(await waitFor(async () => (await job()).status === 'done')).toBe(true);
      expect(Number((await job()).attempts)).toBe(2);
    }, 120_000);
  });
}
