import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/app/config.js';
import { type Container, createContainer } from '../src/app/container.js';
import { createLogger } from '../src/kernel/log.js';
import { newId } from '../src/kernel/ids.js';
import type { DnsLookups } from '../src/mail/dns-overrides.js';
import { tempDir, testDialects } from './support/dialects.js';
import { receivedWithId, type Sink, startSink } from './support/outbound-sink.js';
import { freePort } from './support/processes.js';
import { createTestApp, seedAgent, type TestApp } from './support/test-app.js';
import { storedOfId } from '../src/audit/audit-columns.js';

const dnsError = (code: string) => Object.assign(new Error(code), { code });

/** Fake DNS (STYLE.md: fakes only for the clock and for DNS): MX answers or error codes per domain; no addresses anywhere. */
const fakeDns = (mx: Record<string, { exchange: string; priority: number }[] | string>): DnsLookups => ({
  resolveMx: async (d) => {
    const v = mx[d] ?? 'ENODATA';
    if (typeof v === 'string') throw dnsError(v);
    return v;
  },
  resolve4: async () => {
    throw dnsError('ENODATA');
  },
  resolve6: async () => {
    throw dnsError('ENODATA');
  },
  resolveTxt: async () => {
    throw dnsError('ENODATA');
  },
});

for (const dialect of testDialects()) {
  describe(`outbound routing and what each attempt records (${dialect})`, () => {
    const dir = tempDir('mw-routing');
    const cleanups: (() => Promise<void>)[] = [];
    afterAll(async () => {
      for (const c of cleanups.reverse()) await c();
    });

    const app = async (env: Record<string, string>) => {
      const t = await createTestApp(dialect, { env: { MAILWARD_DELIVERY_RETRY_SCHEDULE: '3600', ...env } });
      cleanups.push(t.close);
      const s = await seedAgent(t, `Sender ${Math.random().toString(36).slice(2, 6)}`);
      const m = await t.call('POST', '/v1/mailboxes', t.adminKey, {
        agent_id: s.agent.id,
        display_name: 'Sender',
        oversight_mode: 'autonomous',
      });
      expect(m.status).toBe(201);
      const send = async (to: string[]) => {
        const r = await t.call('POST', `/v1/mailboxes/${m.body.id}/send`, s.agentKey, { to, subject: 'Hello', text: 'Body' });
        expect(r.status).toBe(202);
        return r.body.id as string;
      };
      return { t, send };
    };

    /** The same store opened by another process's container ("after a restart"), with its own configuration and DNS. */
    const restart = async (t: TestApp, env: Record<string, string | undefined>, dns?: DnsLookups): Promise<Container> => {
      const merged: Record<string, string> = {};
      for (const [k, v] of Object.entries({ ...t.env, ...env })) if (v !== undefined) merged[k] = v;
      const c = await createContainer(loadConfig(merged), { logger: createLogger({ level: 'silent' }), dns });
      cleanups.push(() => c.close());
      return c;
    };
    const drain = async (c: Container) => {
      for (let i = 0; i < 50; i++) if ((await c.mail.delivery.runOnce()) === 0) return;
    };
    const message = (t: TestApp, id: string) =>
      t.c.store.db.selectFrom('messages').select(['status', 'status_reason', 'message_id']).where('id', '=', id).executeTakeFirstOrThrow();
    const attempts = async (t: TestApp, id: string) =>
      (
        await t.c.store.db
          .selectFrom('message_events')
          .select('details')
          .where('message_id', '=', id)
          .where('type', '=', 'delivery_attempted')
          .orderBy('id')
          .execute()
      ).map((e) => JSON.parse(e.details) as Record<string, unknown>);

    it('bounces mail to a domain that does not exist (NXDOMAIN) or has a null MX at the first attempt', async () => {
      const { t, send } = await app({});
      const nx = await send(['patient@nx.example']);
      const nullMx = await send(['patient@nomail.example']);
      const c = await restart(t, {}, fakeDns({ 'nx.example': 'ENOTFOUND', 'nomail.example': [{ exchange: '', priority: 0 }] }));
      await drain(c);
      for (const [id, category] of [
        [nx, 'domain_not_found'],
        [nullMx, 'null_mx'],
      ] as const) {
        const m = await message(t, id);
        expect(m.status).toBe('bounced');
        expect(JSON.parse(m.status_reason!)).toMatchObject({ code: 'dns_permanent_failure', category });
        expect(await attempts(t, id)).toEqual([expect.objectContaining({ attempt: 1, route: 'mx', result: 'bounced', category })]);
        const job = await t.c.store.db
          .selectFrom('outbox')
          .select(['status', 'attempts'])
          .where('message_id', '=', id)
          .executeTakeFirstOrThrow();
        expect(job).toEqual({ status: 'bounced', attempts: 1 });
      }
    });

    it('defers with category dns and the DNS error code when the look-up fails (SERVFAIL, timeout)', async () => {
      const { t, send } = await app({});
      const servfail = await send(['patient@broken.example']);
      const timeout = await send(['patient@slow.example']);
      const c = await restart(t, {}, fakeDns({ 'broken.example': 'ESERVFAIL', 'slow.example': 'ETIMEOUT' }));
      await drain(c);
      for (const [id, code, domain] of [
        [servfail, 'ESERVFAIL', 'broken.example'],
        [timeout, 'ETIMEOUT', 'slow.example'],
      ] as const) {
        const m = await message(t, id);
        expect(m.status).toBe('deferred');
        expect(JSON.parse(m.status_reason!)).toMatchObject({ code: 'deferred', category: 'dns', error: { code } });
        expect(await attempts(t, id)).toEqual([
          // Said the way a Postfix log says it: `ESERVFAIL broken.example MX`.
          expect.objectContaining({
            result: 'deferred',
            category: 'dns',
            error: { code, stage: 'DNS', message: `${code} ${domain} MX` },
            retry_in_seconds: 3600,
          }),
        ]);
      }
    });

    it("stores a deferral's SMTP reply code, enhanced status and text on the message event, without the recipient's address", async () => {
      const sink: Sink = await startSink(dir);
      cleanups.push(() => sink.close());
      const { t, send } = await app({ MAILWARD_SMTP_RELAY: `smtp://127.0.0.1:${sink.port}`, MAILWARD_SMTP_TLS_CA_FILE: sink.caFile });
      sink.replies.push({ code: 451, text: '4.2.0 <maria.lopez@clinic.example> mailbox busy, try later' });
      const id = await send(['maria.lopez@clinic.example']);
      await drain(await restart(t, {}));
      expect((await message(t, id)).status).toBe('deferred');
      const [a] = await attempts(t, id);
      expect(a).toMatchObject({
        result: 'deferred',
        code: 451,
        category: 'transient',
        smtp_reply: { code: 451, enhanced_status: '4.2.0', text: '[address] mailbox busy, try later' },
      });
      await t.c.audit.sync();
      const audit = await t.c.store.db
        .selectFrom('audit_events')
        .selectAll()
        .where('action', '=', 'email.delivery_attempted')
        .where('target_id', '=', storedOfId(id))
        .executeTakeFirstOrThrow();
      const stored = JSON.stringify([a, audit, await message(t, id)]);
      expect(stored).toContain('mailbox busy');
      expect(stored).not.toMatch(/maria|lopez/i);
    });

    it("stores a deferral's network error code when the relay cannot be reached", async () => {
      const port = await freePort();
      const { t, send } = await app({ MAILWARD_SMTP_RELAY: `smtp://127.0.0.1:${port}` });
      const id = await send(['patient@clinic.example']);
      await drain(await restart(t, {}));
      const [a] = await attempts(t, id);
      expect(a).toMatchObject({ route: 'relay', result: 'deferred', code: null, category: 'connection', error: { code: 'ECONNREFUSED' } });
    });

    it('sends a message queued before MAILWARD_SMTP_RELAY was set through the relay after a restart with it', async () => {
      const sink = await startSink(dir);
      cleanups.push(() => sink.close());
      // Queued with no relay: its job is routed to clinic.example's MX, which this fake DNS says does not exist.
      const { t, send } = await app({});
      const id = await send(['patient@clinic.example']);
      const c = await restart(
        t,
        { MAILWARD_SMTP_RELAY: `smtp://127.0.0.1:${sink.port}`, MAILWARD_SMTP_TLS_CA_FILE: sink.caFile },
        fakeDns({ 'clinic.example': 'ENOTFOUND' }),
      );
      await drain(c);
      const m = await message(t, id);
      expect(m.status).toBe('delivered');
      expect(receivedWithId(sink, m.message_id).map((x) => x.to)).toEqual([['patient@clinic.example']]);
      expect(await attempts(t, id)).toEqual([expect.objectContaining({ route: 'relay', result: 'accepted' })]);
    });

    it("sends a message queued for a relay that has since been unset to each recipient domain's MX", async () => {
      const sink = await startSink(dir);
      cleanups.push(() => sink.close());
      const { t, send } = await app({ MAILWARD_SMTP_RELAY: 'smtp://127.0.0.1:9' });
      const id = await send(['a@clinic.example', 'b@lab.example', 'c@clinic.example']);
      const overrides = path.join(dir, `dns-${newId('request')}.json`);
      fs.writeFileSync(
        overrides,
        JSON.stringify({
          MX: { 'clinic.example': [{ exchange: '127.0.0.1', priority: 10 }], 'lab.example': [{ exchange: '127.0.0.1', priority: 10 }] },
        }),
      );
      const c = await restart(t, {
        MAILWARD_SMTP_RELAY: undefined,
        MAILWARD_DNS_OVERRIDES: overrides,
        MAILWARD_SMTP_MX_PORT: String(sink.port),
        MAILWARD_SMTP_TLS_CA_FILE: sink.caFile,
      });
      await drain(c);
      const m = await message(t, id);
      expect(m.status).toBe('delivered');
      const got = receivedWithId(sink, m.message_id).map((x) => [...x.to].sort());
      expect(got.sort()).toEqual([['a@clinic.example', 'c@clinic.example'], ['b@lab.example']]);
      const jobs = await t.c.store.db
        .selectFrom('outbox')
        .select(['route', 'status'])
        .where('message_id', '=', id)
        .orderBy('route')
        .execute();
      expect(jobs).toEqual([
        { route: 'clinic.example', status: 'done' },
        { route: 'lab.example', status: 'done' },
      ]);
      expect((await attempts(t, id)).map((a) => [a.route, a.result])).toEqual([
        ['mx', 'accepted'],
        ['mx', 'accepted'],
      ]);
    });
  });
}
