import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { headerValue, splitMessage } from '../src/mail/mime.js';
import { openStore } from '../src/store/db.js';
import { freshDatabase, tempDir, testDialects } from './support/dialects.js';
import { type Sink, startSink } from './support/outbound-sink.js';
import { freePort } from './support/processes.js';


type Serve = { port: number; child: ChildProcess; stop: () => Promise<void>; kill9: () => Promise<void> };

/** `mailward serve` in its own process, as a user runs it. */
const serve = async (env: Record<string, string>): Promise<Serve> => {
  const port = await freePort();
  const child = spawn(process.execPath, ['--import', 'tsx', path.resolve('src/cli/main.ts'), 'serve'], {
    env: { ...process.env, ...env, MAILWARD_HTTP_PORT: String(port), MAILWARD_SMTP_PORT: String(await freePort()), MAILWARD_LOG_LEVEL: 'warn' },
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
  const r = await fetch(`http://127.0.0.1:${port}${p}`, { method, headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
  return { status: r.status, body: (await r.json()) as Record<string, string> };
};

const seed = async (port: number, dataDir: string) => {
  const call = api(port);
  const admin = fs.readFileSync(path.join(dataDir, 'bootstrap-admin.key'), 'utf8').trim();
  const dep = await call('POST', '/v1/departments', admin, { name: 'Cardiology' });
  const human = await call('POST', '/v1/humans', admin, { name: 'Dr. Crash', email: 'crash@hospital.example', roles: ['reviewer'] });
  const agent = await call('POST', '/v1/agents', admin, { name: 'Reminder Bot', department_id: dep.body.id, responsible_human_id: human.body.id });
  const key = await call('POST', `/v1/agents/${agent.body.id}/api-keys`, admin, {});
  const mbx = await call('POST', '/v1/mailboxes', admin, { agent_id: agent.body.id, display_name: 'Reminders', oversight_mode: 'autonomous' });
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
        const r = await api(ports[w % ports.length]!)('POST', `/v1/mailboxes/${mailboxId}/send`, agentKey, { to: [`patient${i}@clinic.example`], subject: `Reminder ${i}`, text: `Appointment ${i}` });
        expect(r.status).toBe(202);
        ids.push(r.body.id!);
      }
    }),
  );
  return ids;
};

const countsByMessageId = (sink: Sink) => {
  const m = new Map<string, number>();
  for (const x of sink.messages) {
    const id = headerValue(splitMessage(x.raw).header, 'Message-ID')!;
    m.set(id, (m.get(id) ?? 0) + 1);
  }
  return m;
};

const waitAllFinal = async (env: Record<string, string>, dataDir: string, n: number) => {
  const store = openStore(env.DATABASE_URL ? { kind: 'postgres', url: env.DATABASE_URL } : { kind: 'sqlite', file: path.join(dataDir, 'mailward.db') });
  try {
    for (const end = Date.now() + 120_000; ; ) {
      const rows = await store.db.selectFrom('messages').select(['status']).execute();
      const delivered = rows.filter((r) => r.status === 'delivered').length;
      if (delivered === n) return rows;
      if (Date.now() > end) throw new Error(`only ${delivered} of ${n} delivered`);
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    await store.destroy();
  }
};

const baseEnv = (sink: Sink) => ({
  MAILWARD_MASTER_KEY: randomBytes(32).toString('base64'),
  MAILWARD_DOMAIN: 'hospital.example',
  MAILWARD_SMTP_RELAY: `smtp://127.0.0.1:${sink.port}`,
  MAILWARD_SMTP_TLS_CA_FILE: sink.caFile,
  MAILWARD_DELIVERY_POLL_MS: '20',
  MAILWARD_DELIVERY_RETRY_SCHEDULE: '1,1,1,1,1',
  MAILWARD_DELIVERY_LEASE_SECONDS: '2',
  MAILWARD_RATE_LIMIT_PER_MINUTE: '1000000',
});

for (const dialect of testDialects()) {
  describe(`outbound delivery across processes (${dialect})`, () => {
    it('delivers every accepted message after kill -9 during delivery and a restart, repeating at most the batch in flight', async () => {
      const dir = tempDir('mw-crash');
      const sink = await startSink(dir, { replyDelayMs: 25 });
      const db = await freshDatabase(dialect);
      const env = { ...db.env, ...baseEnv(sink) };
      try {
        const a = await serve(env);
        const { agentKey, mailboxId } = await seed(a.port, db.dataDir);
        const N = 1000;
        await submitAll([a.port], agentKey, mailboxId, N);
        // Kill in the middle of delivery (the sink is slower than the submissions).
        const before = sink.messages.length;
        await a.kill9();
        expect(before).toBeLessThan(N);
        const b = await serve(env);
        try {
          await waitAllFinal(env, db.dataDir, N);
          await sink.waitFor(N);
          const counts = countsByMessageId(sink);
          expect(counts.size).toBe(N);
          // SMTP has no acknowledgement of the 250 (RFC 1047): a message the sink accepted while the killed
          // process had not yet recorded it is sent again. Those are the only repeats, so at most one
          // claimed batch (MAILWARD_DELIVERY_CONCURRENCY, 16) can repeat; nothing is ever lost.
          const repeats = [...counts.values()].filter((c) => c > 1);
          expect(repeats.every((c) => c === 2)).toBe(true);
          expect(repeats.length).toBeLessThanOrEqual(16);
        } finally {
          await b.stop();
        }
      } finally {
        await sink.close();
        await db.drop();
      }
    }, 240_000);

    it.runIf(dialect === 'postgres')('never sends a message twice when two processes deliver from one database', async () => {
      const dir = tempDir('mw-two');
      const sink = await startSink(dir, { replyDelayMs: 5 });
      const db = await freshDatabase(dialect);
      const env = { ...db.env, ...baseEnv(sink) };
      try {
        const a = await serve(env);
        const b = await serve(env);
        try {
          const { agentKey, mailboxId } = await seed(a.port, db.dataDir);
          const N = 400;
          await submitAll([a.port, b.port], agentKey, mailboxId, N);
          await waitAllFinal(env, db.dataDir, N);
          const counts = countsByMessageId(sink);
          expect(counts.size).toBe(N);
          expect([...counts.values()].every((c) => c === 1)).toBe(true);
        } finally {
          await a.stop();
          await b.stop();
        }
      } finally {
        await sink.close();
        await db.drop();
      }
    }, 240_000);
  });
}
