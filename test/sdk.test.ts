import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateSdkFiles, OPENAPI_FILE, TYPES_FILE } from '../sdk/scripts/generate.js';
import { createMailwardClient, isMailwardError, MailwardError, type MailwardClient, unwrap } from '../sdk/src/index.js';
import { headerValue, splitMessage } from '../src/mail/mime.js';
import { freshDatabase, tempDir, testDialects } from './support/dialects.js';
import { relayEnv, type Sink, startSink } from './support/outbound-sink.js';
import { repoRoot, type ServerProcess, startServer } from './support/processes.js';
import { waitFor } from './support/wait.js';

describe('SDK: generated from the OpenAPI document', () => {
  it('has committed generated files that match the current routes (run `npm run sdk:generate` when this fails)', async () => {
    const fresh = await generateSdkFiles();
    expect(fs.readFileSync(OPENAPI_FILE, 'utf8') === fresh.openapi, 'sdk/openapi.json is stale: run npm run sdk:generate').toBe(true);
    expect(fs.readFileSync(TYPES_FILE, 'utf8') === fresh.types, 'sdk/src/generated/api.ts is stale: run npm run sdk:generate').toBe(true);
  });

  it('shows in the README the example that typecheck compiles (sdk/examples/readme.ts)', () => {
    const readme = fs.readFileSync(path.join(repoRoot, 'README.md'), 'utf8');
    const block = /^## SDK$[\s\S]*?^```ts\n([\s\S]*?)^```$/m.exec(readme)?.[1];
    expect(block).toBeDefined();
    const example = fs.readFileSync(path.join(repoRoot, 'sdk', 'examples', 'readme.ts'), 'utf8');
    const body = (text: string) =>
      text
        .split('\n')
        .filter((l) => !l.startsWith('import ') && !l.startsWith('//'))
        .join('\n');
    expect(body(example)).toBe(body(block!));
    expect(block).toContain("from '@mailward/sdk'");
  });

  it('stands alone: nothing under sdk/src imports the server', () => {
    const dir = path.join(repoRoot, 'sdk', 'src');
    const files = fs.readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts'));
    expect(files.length).toBeGreaterThan(1);
    for (const f of files) {
      const text = fs.readFileSync(path.join(dir, f), 'utf8');
      for (const m of text.matchAll(/from\s+'([^']+)'/g)) expect(m[1], f).toMatch(/^(\.\/|openapi-fetch$)/);
    }
  });
});

for (const dialect of testDialects()) {
  describe(`SDK against a live server (${dialect})`, () => {
    let sink: Sink;
    let server: ServerProcess;
    let drop: () => Promise<void>;
    let admin: MailwardClient;
    let baseUrl: string;

    beforeAll(async () => {
      sink = await startSink(tempDir('mw-sdk-sink'));
      const db = await freshDatabase(dialect);
      drop = db.drop;
      server = await startServer({ ...db.env, ...relayEnv(sink), MAILWARD_DOMAIN: 'sdk.example', MAILWARD_ORG_NAME: 'SDK Hospital' });
      baseUrl = `http://127.0.0.1:${server.port}`;
      const adminKey = fs.readFileSync(path.join(db.dataDir, 'bootstrap-admin.key'), 'utf8').trim();
      admin = createMailwardClient({ baseUrl, apiKey: adminKey });
    }, 90_000);
    afterAll(async () => {
      await server?.stop();
      await sink?.close();
      await drop?.();
    });

    it('provisions an agent, sends through the loopback relay once per idempotency key, and pages through the mailbox', async () => {
      const { api } = admin;
      const dep = await unwrap(api.POST('/v1/departments', { body: { name: 'Cardiology' } }));
      const reviewer = await unwrap(
        api.POST('/v1/humans', { body: { name: 'Dr. Rivera', email: 'rivera@sdk.example', roles: ['reviewer'] } }),
      );
      const agent = await unwrap(
        api.POST('/v1/agents', { body: { name: 'Scheduling Assistant', department_id: dep.id, responsible_human_id: reviewer.id } }),
      );
      const mailbox = await unwrap(
        api.POST('/v1/mailboxes', { body: { agent_id: agent.id, display_name: 'Scheduling', oversight_mode: 'autonomous' } }),
      );
      const key = await unwrap(
        api.POST('/v1/agents/{id}/api-keys', { params: { path: { id: agent.id } }, body: { scopes: ['mail:send', 'mail:read'] } }),
      );
      const client = createMailwardClient({ baseUrl, apiKey: key.key });
      expect((await client.me()).principal).toMatchObject({ id: agent.id, type: 'agent' });

      // The same idempotency key twice (a retry after a lost answer): one message, one delivery.
      const body = { to: ['patient@example.org'], subject: 'Your appointment', text: 'See you Tuesday at 10:00.' };
      const first = await client.sendEmail(mailbox.id, body, { idempotencyKey: 'appointment-42' });
      const again = await client.sendEmail(mailbox.id, body, { idempotencyKey: 'appointment-42' });
      expect(again.id).toBe(first.id);
      await waitFor(async () => (await client.getEmail(first.id)).status === 'delivered', { timeoutMs: 20_000, everyMs: 100 });
      const email = await client.getEmail(first.id);
      expect(email.status).toBe('delivered');
      const messageId = 'message_id' in email ? email.message_id : null;
      const atRelay = sink.messages.filter((m) => headerValue(splitMessage(m.raw).header, 'Message-ID') === messageId);
      expect(atRelay).toHaveLength(1);
      expect(atRelay[0]!.to).toEqual(['patient@example.org']);
      expect(atRelay[0]!.tls).toBe(true);

      // Without a key of one's own, every send still carries a fresh one: two sends, two messages.
      const b = await client.sendEmail(mailbox.id, { ...body, subject: 'Second' });
      const c = await client.sendEmail(mailbox.id, { ...body, subject: 'Third' });
      expect(new Set([first.id, b.id, c.id]).size).toBe(3);

      // Cursor pagination as an async iterator: pages of one, every message once, newest first.
      const seen: string[] = [];
      for await (const m of client.messages(mailbox.id, { direction: 'outbound', limit: '1' })) seen.push(m.id);
      expect(seen).toEqual([c.id, b.id, first.id]);
    });

    it('throws a MailwardError carrying the problem code, status and request id', async () => {
      const missing = await admin.getEmail(`msg_${'0'.repeat(32)}`).catch((e: unknown) => e);
      expect(isMailwardError(missing)).toBe(true);
      expect(missing).toBeInstanceOf(MailwardError);
      expect(missing).toMatchObject({ status: 404, code: 'not_found', temporary: false });
      expect((missing as MailwardError).requestId).toMatch(/^req_/);

      const bad = await unwrap(admin.api.POST('/v1/departments', { body: { name: '' } })).catch((e: unknown) => e);
      expect(bad).toMatchObject({ status: 400, code: 'validation_failed' });

      const nobody = createMailwardClient({ baseUrl, apiKey: 'mw_key_nope_nope' });
      await expect(nobody.me()).rejects.toMatchObject({ status: 401, code: 'unauthorized' });
    });

    it('reuses one idempotency key across retries of a temporary failure', async () => {
      const keys: (string | null)[] = [];
      let calls = 0;
      const flaky = createMailwardClient({
        baseUrl,
        apiKey: 'mw_key_x_y',
        fetch: async (req) => {
          calls++;
          keys.push(req.headers.get('idempotency-key'));
          if (calls < 3) {
            return new Response(JSON.stringify({ code: 'store_busy', status: 503, detail: 'busy', temporary: true, retry_after: 0 }), {
              status: 503,
              headers: { 'content-type': 'application/problem+json' },
            });
          }
          return new Response(JSON.stringify({ id: 'msg_1', status: 'queued', thread_id: 'thr_1' }), {
            status: 202,
            headers: { 'content-type': 'application/json' },
          });
        },
      });
      const r = await flaky.sendEmail('mbx_1', { to: ['a@example.org'], subject: 's', text: 't' });
      expect(r.id).toBe('msg_1');
      expect(calls).toBe(3);
      expect(new Set(keys).size).toBe(1);
      expect(keys[0]).toMatch(/^[0-9a-f-]{36}$/);
    });
  });
}
