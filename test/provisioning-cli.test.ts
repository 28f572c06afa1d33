import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMailwardClient } from '../sdk/src/index.js';
import { headerValue, splitMessage } from '../src/mail/mime.js';
import { freshDatabase, tempDir, testDialects } from './support/dialects.js';
import { relayEnv, type Sink, startSink } from './support/outbound-sink.js';
import { runCli, type ServerProcess, startServer } from './support/processes.js';
import { waitFor } from './support/wait.js';

const json = (r: { code: number | null; stdout: string; stderr: string }) => {
  expect(r.stderr, r.stderr).toBe('');
  expect(r.code).toBe(0);
  return JSON.parse(r.stdout);
};

describe('mailward provisioning commands: help', () => {
  it('has --help on every provisioning command', async () => {
    for (const cmd of [
      ['departments', 'create'],
      ['departments', 'list'],
      ['humans', 'create'],
      ['humans', 'list'],
      ['humans', 'deactivate'],
      ['agents', 'create'],
      ['agents', 'list'],
      ['agents', 'deactivate'],
      ['mailboxes', 'create'],
      ['mailboxes', 'list'],
      ['keys', 'create'],
      ['keys', 'list'],
      ['keys', 'revoke'],
      ['keys', 'rotate'],
    ]) {
      const r = await runCli([...cmd, '--help'], {});
      expect(r.code, cmd.join(' ')).toBe(0);
      expect(r.stdout).toContain(`Usage: mailward ${cmd.join(' ')}`);
    }
    const group = await runCli(['agents', '--help'], {});
    expect(group.stdout).toContain('MAILWARD_ADDR');
  }, 120_000);
});

for (const dialect of testDialects()) {
  describe(`mailward provisioning commands (${dialect})`, () => {
    let sink: Sink;
    let server: ServerProcess;
    let db: Awaited<ReturnType<typeof freshDatabase>>;
    let adminKey: string;
    let remote: Record<string, string>;
    let local: Record<string, string>;

    beforeAll(async () => {
      sink = await startSink(tempDir('mw-cli-sink'));
      db = await freshDatabase(dialect);
      server = await startServer({ ...db.env, ...relayEnv(sink), MAILWARD_DOMAIN: 'cli.example', MAILWARD_ORG_NAME: 'CLI Hospital' });
      adminKey = fs.readFileSync(path.join(db.dataDir, 'bootstrap-admin.key'), 'utf8').trim();
      remote = { MAILWARD_ADDR: `http://127.0.0.1:${server.port}`, MAILWARD_API_KEY: adminKey };
      // The local data dir (and DATABASE_URL on PostgreSQL) of the running server: the same store, in-process.
      local = { ...db.env, MAILWARD_LOG_LEVEL: 'warn' };
    }, 90_000);
    afterAll(async () => {
      await server?.stop();
      await sink?.close();
      await db?.drop();
    });

    it('provisions a working agent without curl: created with --json, its key sends through the loopback relay', async () => {
      const dep = json(await runCli(['departments', 'create', '--name', 'Cardiology', '--json'], remote));
      expect(dep.id).toMatch(/^dep_/);
      const hum = json(
        await runCli(['humans', 'create', '--name', 'Dr. Rivera', '--email', 'rivera@cli.example', '--role', 'reviewer', '--json'], remote),
      );
      const agent = json(
        await runCli(
          ['agents', 'create', '--name', 'Scheduling Assistant', '--department', dep.id, '--responsible', hum.id, '--json'],
          remote,
        ),
      );
      expect(agent).toMatchObject({ address: 'scheduling-assistant@cli.example', responsible_human: { id: hum.id } });
      expect(agent.delegation_chain.map((e: { type: string }) => e.type)).toEqual(['organization', 'department', 'agent']);
      const mbx = json(
        await runCli(
          ['mailboxes', 'create', '--agent', agent.id, '--display-name', 'Scheduling', '--mode', 'autonomous', '--json'],
          remote,
        ),
      );
      expect(mbx).toMatchObject({ address: agent.address, oversight_mode: 'autonomous' });
      const key = json(await runCli(['keys', 'create', '--agent', agent.id, '--scope', 'mail:send,mail:read', '--json'], remote));
      expect(key.key).toMatch(/^mw_/);
      expect(key.scopes.sort()).toEqual(['mail:read', 'mail:send']);

      const client = createMailwardClient({ baseUrl: remote.MAILWARD_ADDR!, apiKey: key.key });
      const sent = await client.sendEmail(mbx.id, { to: ['patient@example.org'], subject: 'Your appointment', text: 'Tuesday at 10:00.' });
      expect(await waitFor(async () => (await client.getEmail(sent.id)).status === 'delivered', { timeoutMs: 20_000, everyMs: 100 })).toBe(
        true,
      );
      const email = await client.getEmail(sent.id);
      const messageId = 'message_id' in email ? email.message_id : null;
      const delivered = sink.messages.filter((m) => headerValue(splitMessage(m.raw).header, 'Message-ID') === messageId);
      expect(delivered).toHaveLength(1);
      expect(delivered[0]!.from).toBe(agent.address);

      // Tables by default: one header line, one row per item, the values readable.
      const table = await runCli(['agents', 'list'], remote);
      expect(table.code).toBe(0);
      const lines = table.stdout.trimEnd().split('\n');
      expect(lines[0]).toMatch(/^ID\s+NAME\s+ADDRESS\s+DEPARTMENT\s+ACTIVE$/);
      expect(lines.find((l) => l.startsWith(agent.id))).toMatch(/Scheduling Assistant\s+scheduling-assistant@cli\.example/);

      // The same store in-process (no MAILWARD_ADDR): it sees what the server made, and a revocation there stops the key at the server.
      const keys = json(await runCli(['keys', 'list', '--principal', agent.id, '--json'], { ...local, MAILWARD_API_KEY: adminKey }));
      expect(keys.map((k: { id: string }) => k.id)).toEqual([key.id]);
      const revoked = json(await runCli(['keys', 'revoke', key.id, '--json'], local)); // acts as bootstrap-admin.key
      expect(revoked.revoked_at).not.toBeNull();
      const statusOfMe = () =>
        client.me().then(
          () => 200,
          (e: { status?: number }) => e.status ?? 0,
        );
      expect(await waitFor(async () => (await statusOfMe()) === 401, { timeoutMs: 10_000, everyMs: 100 })).toBe(true);
    });

    it('works on the local data dir alone, and refuses there what REST refuses', async () => {
      const dep = json(await runCli(['departments', 'create', '--name', 'Radiology', '--json'], local));
      const listed = json(await runCli(['departments', 'list', '--json'], local));
      expect(listed.map((d: { id: string }) => d.id)).toContain(dep.id);
      const hum = json(
        await runCli(['humans', 'create', '--name', 'Sam Lee', '--email', 'sam@cli.example', '--role', 'auditor', '--json'], local),
      );
      const off = json(await runCli(['humans', 'deactivate', hum.id, '--json'], local));
      expect(off).toMatchObject({ id: hum.id, is_active: false });
      // Seen by the server too: the same store.
      const remoteList = json(await runCli(['humans', 'list', '--json'], remote));
      expect(remoteList.find((h: { id: string }) => h.id === hum.id)).toMatchObject({ is_active: false });

      const bad = await runCli(['departments', 'create', '--name', 'x\u0007y', '--json'], local);
      expect(bad.code).toBe(1);
      expect(bad.stdout).toBe('');
      expect(bad.stderr).toMatch(/\(validation_failed\)|\(invalid_unicode\)/);
      const dup = await runCli(['humans', 'create', '--name', 'Sam Again', '--email', 'sam@cli.example', '--role', 'auditor'], remote);
      expect(dup.code).toBe(1);
      expect(dup.stderr).toContain('(email_taken)');
    });

    it('names the setting to fix when there is nothing to talk to, and refuses a key that is not an admin', async () => {
      const empty = tempDir('mw-cli-empty');
      const none = await runCli(['agents', 'list'], { MAILWARD_DATA_DIR: path.join(empty, 'data') });
      expect(none.code).toBe(2);
      expect(none.stderr).toMatch(/MAILWARD_ADDR is not set and no data dir found at .*data/);
      const noKey = await runCli(['agents', 'list'], { MAILWARD_ADDR: remote.MAILWARD_ADDR! });
      expect(noKey.code).toBe(2);
      expect(noKey.stderr).toContain('MAILWARD_API_KEY is not set');
      const down = await runCli(['agents', 'list'], { MAILWARD_ADDR: 'http://127.0.0.1:9', MAILWARD_API_KEY: adminKey });
      expect(down.code).toBe(2);
      expect(down.stderr).toMatch(/cannot reach the server at MAILWARD_ADDR=http:\/\/127\.0\.0\.1:9/);
      const badKey = await runCli(['departments', 'list'], { ...remote, MAILWARD_API_KEY: 'mw_key_nope_nope' });
      expect(badKey.code).toBe(1);
      expect(badKey.stderr).toContain('(unauthorized)');
    });
  });
}
