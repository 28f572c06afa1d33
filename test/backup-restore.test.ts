import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { createTransport } from 'nodemailer';
import { afterAll, describe, expect, it } from 'vitest';
import { freshDatabase, tempDir, testDialects } from './support/dialects.js';
import { rawMessage } from './support/inbound-mail.js';
import { runCli, type ServerProcess, startServer } from './support/processes.js';
import { waitFor } from './support/wait.js';

const TOTAL = 200;
/** Held back until the backup has finished, so the backup is provably taken while mail is still arriving. */
const AFTER_BACKUP = 20;
const SENDERS = 8;

const api = async (port: number, key: string, method: string, url: string, body?: unknown) => {
  const r = await fetch(`http://127.0.0.1:${port}${url}`, {
    method,
    headers: { authorization: `Bearer ${key}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  return { status: r.status, body: (await r.json()) as any };
};

/** Every page of a cursor-paged list. */
const all = async (port: number, key: string, url: string, field: string) => {
  const out: any[] = [];
  let cursor: string | null = null;
  do {
    const sep = url.includes('?') ? '&' : '?';
    const r = await api(port, key, 'GET', `${url}${cursor ? `${sep}cursor=${encodeURIComponent(cursor)}` : ''}`);
    expect(r.status).toBe(200);
    out.push(...r.body[field]);
    cursor = r.body.next_cursor;
  } while (cursor);
  return out;
};

for (const dialect of testDialects()) {
  describe(`the 72-hour restore drill (${dialect})`, () => {
    const servers: ServerProcess[] = [];
    const drops: (() => Promise<void>)[] = [];
    afterAll(async () => {
      for (const s of servers) await s.stop();
      for (const d of drops) await d();
    });

    it(`restores a backup taken while ${TOTAL} messages arrive over SMTP: every message readable, audit verify passes, a wrong key refused`, async () => {
      const src = await freshDatabase(dialect);
      const dst = await freshDatabase(dialect);
      drops.push(src.drop, dst.drop);
      const env = { ...src.env, MAILWARD_DOMAIN: 'drill.example', MAILWARD_ORG_NAME: 'Drill Hospital' };
      const server = await startServer(env);
      servers.push(server);
      const admin = fs.readFileSync(path.join(src.dataDir, 'bootstrap-admin.key'), 'utf8').trim();
      const dep = await api(server.port, admin, 'POST', '/v1/departments', { name: 'Records' });
      const human = await api(server.port, admin, 'POST', '/v1/humans', {
        name: 'Dr. Ito',
        email: 'ito@drill.example',
        roles: ['reviewer'],
      });
      const agent = await api(server.port, admin, 'POST', '/v1/agents', {
        name: 'Records Assistant',
        department_id: dep.body.id,
        responsible_human_id: human.body.id,
      });
      const box = await api(server.port, admin, 'POST', '/v1/mailboxes', {
        agent_id: agent.body.id,
        display_name: 'Records',
        oversight_mode: 'autonomous',
      });
      expect(box.status).toBe(201);
      const address = box.body.address as string;

      // Inbound SMTP with STARTTLS against the server's own (development) certificate.
      const ca = fs.readFileSync(path.join(src.dataDir, 'smtp-tls-cert.pem'));
      let sent = 0;
      let backupDone = false;
      const sender = async (n: number) => {
        const tr = createTransport({
          host: '127.0.0.1',
          port: server.smtpPort,
          secure: false,
          requireTLS: true,
          tls: { ca, servername: 'localhost' },
          pool: true,
          maxConnections: 1,
          name: 'mx.lab.example',
        });
        try {
          for (let i = n; i < TOTAL; i += SENDERS) {
            if (i >= TOTAL - AFTER_BACKUP) await waitFor(() => backupDone, { timeoutMs: 120_000 });
            const raw = rawMessage({
              to: address,
              subject: `Drill ${i}`,
              body: `Drill message ${i}.`,
              messageId: `<drill-${i}@lab.example>`,
            });
            await tr.sendMail({ envelope: { from: 'records@lab.example', to: [address] }, raw });
            sent++;
          }
        } finally {
          tr.close();
        }
      };
      const sending = Promise.all(Array.from({ length: SENDERS }, (_, n) => sender(n)));
      await waitFor(() => sent >= 20, { timeoutMs: 60_000 });
      const file = path.join(tempDir('mw-backup'), 'mailward-backup.tar.gz');
      const backup = await runCli(['backup', '--out', file, '--json'], env);
      backupDone = true;
      expect(backup.code, backup.stderr).toBe(0);
      const sentAtBackupEnd = sent;
      expect(backup.stderr).toContain('master key is NOT in this backup');
      const made = JSON.parse(backup.stdout);
      expect(made).toMatchObject({ dialect, master_key_included: false });
      expect(fs.statSync(file).mode & 0o777).toBe(0o600);
      await sending;
      expect(sent).toBe(TOTAL);
      await server.stop();

      // The master key and the bootstrap admin key are never in a backup.
      const listing = execFileSync('tar', ['-tzf', file], { encoding: 'utf8' }).split('\n');
      expect(listing.filter((f) => /master\.key|bootstrap-admin\.key/.test(f))).toEqual([]);

      // A data dir with another master key: refused with exit 2, nothing restored.
      const wrong = tempDir('mw-wrong-key');
      fs.writeFileSync(path.join(wrong, 'master.key'), `${randomBytes(32).toString('base64')}\n`, { mode: 0o600 });
      const refused = await runCli(['restore', file], { ...dst.env, MAILWARD_DATA_DIR: wrong });
      expect(refused.code).toBe(2);
      expect(refused.stderr).toContain('master_key_mismatch');
      expect(fs.readdirSync(wrong)).toEqual(['master.key']);

      // The right key, put in place by the operator, then restore, then verify.
      fs.copyFileSync(path.join(src.dataDir, 'master.key'), path.join(dst.dataDir, 'master.key'));
      const restored = await runCli(['restore', file, '--json'], dst.env);
      expect(restored.code, restored.stderr).toBe(0);
      if (dialect === 'sqlite') {
        expect(fs.statSync(path.join(dst.dataDir, 'mailward.db')).mode & 0o777).toBe(0o600);
        expect(fs.statSync(dst.dataDir).mode & 0o777).toBe(0o700);
      }
      const verify = await runCli(['audit', 'verify', '--json'], dst.env);
      expect(verify.code, verify.stdout + verify.stderr).toBe(0);

      // Every message the restored store holds is readable, and it holds exactly what its audit log says it received.
      const again = await startServer({ ...dst.env, MAILWARD_DOMAIN: 'drill.example' });
      servers.push(again);
      const messages = await all(again.port, admin, `/v1/mailboxes/${box.body.id}/messages?direction=inbound&limit=100`, 'messages');
      const received = await all(again.port, admin, '/v1/audit/events?action=email.received', 'events');
      expect(messages.length).toBe(received.length);
      // Taken under load: some of the mail arrived before the copy, the held-back tail after it.
      expect(messages.length).toBeGreaterThanOrEqual(20);
      expect(messages.length).toBeLessThanOrEqual(Math.min(sentAtBackupEnd, TOTAL - AFTER_BACKUP));
      for (const m of messages) {
        const r = await api(again.port, admin, 'GET', `/v1/emails/${m.id}`);
        expect(r.status).toBe(200);
        expect(r.body.subject).toMatch(/^Drill \d+$/);
        expect(r.body.text).toContain(`Drill message ${r.body.subject.slice(6)}.`);
      }
    }, 240_000);
  });
}
