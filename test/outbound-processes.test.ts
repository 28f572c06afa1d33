import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { headerValue, splitMessage } from '../src/mail/mime.js';
import { createIntegrator } from '../src/audit/integrator.js';
import { openStore, type Store } from '../src/store/db.js';
import { freshDatabase, tempDir, testDialects } from './support/dialects.js';
import { SMTPServer } from 'smtp-server';
import { selfSignedCert } from './support/outbound-sink.js';
import { freePort } from './support/processes.js';

type Serve = { port: number; child: ChildProcess; stop: () => Promise<void>; kill9: () => Promise<void> };

/** `mailward serve` in its own process, as a user runs it. */
const serve = async (env: Record<string, string>): Promise<Serve> => {
  const port = await freePort();
  const child = spawn(process.execPath, ['--import', 'tsx', path.resolve('src/cli/main.ts'), 'serve'], {
    env: {
      ...process.env,
      ...env,
      MAILWARD_HTTP_PORT: String(port),
      MAILWARD_SMTP_PORT: String(await freePort()),
      MAILWARD_LOG_LEVEL: 'warn',
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  child.stderr?.on('data', (d) => {
    err += d;
  });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  for (const end = Date.now() + 60_000; ; ) {
    if (child.exitCode !== null) throw new Error(`serve exited: ${err}`);
    try {
      if ((await fetch(`http://127.0.0.1:${port}/healthz`)).ok) break;
    } catch {
      /* starting */
    }
    if (Date.now() > end) throw new Error(`serve not ready: ${err}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    port,
    child,
    stop: async () => {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
    },
    kill9: async () => {
      child.kill('SIGKILL');
      await exited;
    },
  };
};

const api = (port: number) => async (method: string, p: string, key: string, body?: unknown) => {
  const r = await fetch(`http://127.0.0.1:${port}${p}`, {
    method,
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: r.status, body: (await r.json()) as Record<string, string> };
};

const seed = async (port: number, dataDir: string) => {
  const call = api(port);
  const admin = fs.readFileSync(path.join(dataDir, 'bootstrap-admin.key'), 'utf8').trim();
  const dep = await call('POST', '/v1/departments', admin, { name: 'Cardiology' });
  const human = await call('POST', '/v1/humans', admin, { name: 'Dr. Crash', email: 'crash@hospital.example', roles: ['reviewer'] });
  const agent = await call('POST', '/v1/agents', admin, {
    name: 'Reminder Bot',
    department_id: dep.body.id,
    responsible_human_id: human.body.id,
  });
  const key = await call('POST', `/v1/agents/${agent.body.id}/api-keys`, admin, {});
  const mbx = await call('POST', '/v1/mailboxes', admin, {
    agent_id: agent.body.id,
    display_name: 'Reminders',
    oversight_mode: 'autonomous',
  });
  expect(mbx.status).toBe(201);
  return { agentKey: key.body.key!, mailboxId: mbx.body.id! };
};

const submitAll = async (ports: number[], agentKey: string, mailboxId: string, n: number) => {
  let next = 0;
  const ids: string[] = [];
  await Promise.all(
    Array.from({ length: 16 }, async (_, w) => {
      while (next < n) {
        const i = next++;
        const r = await api(ports[w % ports.length]!)('POST', `/v1/mailboxes/${mailboxId}/send`, agentKey, {
          to: [`patient${i}@clinic.example`],
          subject: `Reminder ${i}`,
          text: `Appointment ${i}`,
        });
        expect(r.status).toBe(202);
        ids.push(r.body.id!);
      }
    }),
  );
  return ids;
};

/**
 * A loopback relay whose 250s can be withheld: it acknowledges the first
 * `limit` messages and holds the DATA reply of every later one until `release`.
 * A held message whose client has gone when it is released is refused and not
 * counted: the client never learnt it was accepted (an SMTP server commits the
 * message when it writes the 250, RFC 5321 4.1.1.4). One listener per process,
 * so the test knows whose connections are still open.
 */
const startGatedRelay = async (dir: string, listeners: number) => {
  const pems = selfSignedCert(fs.mkdtempSync(path.join(dir, 'cert-')));
  const accepted: Buffer[] = [];
  const held: (() => void)[] = [];
  let limit = Number.POSITIVE_INFINITY;
  const open: Set<string>[] = [];
  const servers: SMTPServer[] = [];
  for (let i = 0; i < listeners; i++) {
    const live = new Set<string>();
    const gone = new Set<string>();
    open.push(live);
    const server = new SMTPServer({
      secure: false,
      disabledCommands: ['AUTH'],
      key: pems.private,
      cert: pems.cert,
      logger: false,
      onConnect(session, cb) {
        live.add(session.id);
        cb();
      },
      onClose(session) {
        live.delete(session.id);
        gone.add(session.id);
      },
      onData(stream, session, cb) {
        const chunks: Buffer[] = [];
        stream.on('data', (c: Buffer) => chunks.push(c));
        stream.on('end', () => {
          const answer = () => {
            if (gone.has(session.id)) {
              cb(Object.assign(new Error('client gone'), { responseCode: 421 }));
              return;
            }
            accepted.push(Buffer.concat(chunks));
            cb();
          };
          // A little delay keeps several messages in flight, as with a real relay.
          setTimeout(() => (accepted.length >= limit ? held.push(answer) : answer()), 5);
        });
      },
    });
    // A client killed mid-session resets its connection: expected here.
    server.on('error', () => {});
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    servers.push(server);
  }
  return {
    caFile: pems.caFile,
    ports: servers.map((s) => (s.server.address() as { port: number }).port),
    accepted,
    held: () => held.length,
    openSessions: (listener: number) => open[listener]!.size,
    /** Acknowledge only up to `n` messages in total from now on (Infinity: all). */
    limitTo: (n: number) => {
      limit = n;
    },
    /** Answers every held message (refused when its client is gone) and acknowledges all later ones. */
    release: () => {
      limit = Number.POSITIVE_INFINITY;
      for (const a of held.splice(0)) a();
    },
    close: () => Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r())))),
  };
};
type GatedRelay = Awaited<ReturnType<typeof startGatedRelay>>;

const countsByMessageId = (raws: Buffer[]) => {
  const m = new Map<string, number>();
  for (const raw of raws) {
    const id = headerValue(splitMessage(raw).header, 'Message-ID')!;
    m.set(id, (m.get(id) ?? 0) + 1);
  }
  return m;
};

const until = async (what: string, ok: () => boolean | Promise<boolean>, timeoutMs = 120_000) => {
  for (const end = Date.now() + timeoutMs; !(await ok()); ) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
};

const storeOf = (env: Record<string, string>, dataDir: string): Store =>
  openStore(env.DATABASE_URL ? { kind: 'postgres', url: env.DATABASE_URL } : { kind: 'sqlite', file: path.join(dataDir, 'mailward.db') });

const deliveredCount = async (store: Store) =>
  Number(
    (
      await store.db
        .selectFrom('messages')
        .select((eb) => eb.fn.countAll().as('n'))
        .where('status', '=', 'delivered')
        .executeTakeFirstOrThrow()
    ).n,
  );

const envFor = (relay: GatedRelay, listener: number) => ({
  MAILWARD_DOMAIN: 'hospital.example',
  MAILWARD_SMTP_RELAY: `smtp://127.0.0.1:${relay.ports[listener]}`,
  MAILWARD_SMTP_TLS_CA_FILE: relay.caFile,
  MAILWARD_DELIVERY_POLL_MS: '20',
  MAILWARD_DELIVERY_RETRY_SCHEDULE: '1,1,1,1,1',
  MAILWARD_DELIVERY_LEASE_SECONDS: '10',
  MAILWARD_RATE_LIMIT_PER_MINUTE: '1000000',
});

/** After the run: every message delivered exactly once, every job done, one `email.delivered` audit event each. */
const expectExactlyOnce = async (relay: GatedRelay, store: Store, n: number) => {
  const counts = countsByMessageId(relay.accepted);
  expect(counts.size).toBe(n);
  expect([...counts.entries()].filter(([, c]) => c !== 1)).toEqual([]);
  const statuses = await store.db.selectFrom('messages').select('status').execute();
  expect(statuses.filter((r) => r.status !== 'delivered')).toEqual([]);
  const jobs = await store.db.selectFrom('outbox').select(['status', 'attempts']).execute();
  expect(jobs.filter((j) => j.status !== 'done')).toEqual([]);
  // The delivery events committed unsequenced; whichever process is left, integrate them here (any process may).
  await createIntegrator({ db: store.db, dialect: store.dialect, intervalMs: 1000 }).sync();
  const audited = await store.db
    .selectFrom('audit_events')
    .select((eb) => eb.fn.countAll().as('n'))
    .where('action', '=', 'email.delivered')
    .executeTakeFirstOrThrow();
  expect(Number(audited.n)).toBe(n);
  return jobs;
};

for (const dialect of testDialects()) {
  describe(`outbound delivery across processes (${dialect})`, () => {
    /*
     * Exactly once after kill -9. The one window no sender can close is between
     * the relay's 250 and our commit of `delivered` (RFC 1047): a crash there
     * sends that message again. The relay withholds its 250s after K messages,
     * and the process is killed once it has committed all K acknowledged ones,
     * with messages still in flight (DATA sent, no 250 yet) and ~700 queued:
     * everything else (jobs claimed but not acknowledged, jobs not claimed,
     * commits per message rather than per batch) must come out exactly once.
     */
    it('delivers each of 1,000 accepted messages exactly once after kill -9 mid-delivery and a restart', async () => {
      const dir = tempDir('mw-crash');
      const relay = await startGatedRelay(dir, 1);
      const db = await freshDatabase(dialect);
      const env = { ...db.env, ...envFor(relay, 0), MAILWARD_MASTER_KEY: randomBytes(32).toString('base64') };
      const store = storeOf(env, db.dataDir);
      try {
        const N = 1000;
        const K = 300;
        relay.limitTo(K);
        const a = await serve(env);
        const { agentKey, mailboxId } = await seed(a.port, db.dataDir);
        await submitAll([a.port], agentKey, mailboxId, N);
        await until(
          'K acknowledged and committed, more in flight',
          async () => relay.accepted.length === K && relay.held() > 0 && (await deliveredCount(store)) === K,
        );
        const inFlight = relay.held();
        await a.kill9();
        await until("the killed process's connections to close", () => relay.openSessions(0) === 0);
        relay.release();
        // Nothing the dead process sent after the K-th was acknowledged.
        expect(relay.accepted.length).toBe(K);

        const b = await serve(env);
        try {
          await until('all delivered', async () => (await deliveredCount(store)) === N);
          const jobs = await expectExactlyOnce(relay, store, N);
          // The messages in flight at the kill were claimed again after their lease ran out, and sent once.
          expect(jobs.filter((j) => j.attempts >= 2).length).toBeGreaterThanOrEqual(inFlight);
        } finally {
          await b.stop();
        }
      } finally {
        await store.destroy();
        await relay.close();
        await db.drop();
      }
    }, 300_000);

    it.runIf(dialect === 'postgres')(
      'never sends a message twice when two processes deliver from one database, even when one is killed',
      async () => {
        const dir = tempDir('mw-two');
        const relay = await startGatedRelay(dir, 2);
        const db = await freshDatabase(dialect);
        const masterKey = randomBytes(32).toString('base64');
        const envA = { ...db.env, ...envFor(relay, 0), MAILWARD_MASTER_KEY: masterKey };
        const envB = { ...db.env, ...envFor(relay, 1), MAILWARD_MASTER_KEY: masterKey };
        const store = storeOf(envA, db.dataDir);
        try {
          const N = 600;
          const K = 400;
          relay.limitTo(K);
          const a = await serve(envA);
          const b = await serve(envB);
          try {
            const { agentKey, mailboxId } = await seed(a.port, db.dataDir);
            await submitAll([a.port, b.port], agentKey, mailboxId, N);
            await until(
              'K acknowledged and committed, more in flight',
              async () => relay.accepted.length === K && relay.held() > 0 && (await deliveredCount(store)) === K,
            );
            // Both processes were delivering at once.
            const byListener = await store.db.selectFrom('outbox').select('claimed_by').where('status', '=', 'sending').execute();
            expect(new Set(byListener.map((j) => j.claimed_by)).size).toBe(2);
            await a.kill9();
            await until("the killed process's connections to close", () => relay.openSessions(0) === 0);
            relay.release();
            await until('all delivered', async () => (await deliveredCount(store)) === N);
            await expectExactlyOnce(relay, store, N);
          } finally {
            await a.stop();
            await b.stop();
          }
        } finally {
          await store.destroy();
          await relay.close();
          await db.drop();
        }
      },
      300_000,
    );
  });
}
