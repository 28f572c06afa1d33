import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { unknownEnvVars } from '../src/app/config.js';
import { ensurePostmasters } from '../src/app/init.js';
import { zoneTxtValue } from '../src/mail/dns-records.js';
import { freshDatabase, testDialects } from './support/dialects.js';
import { rawMessage, smtpCode, startInbound } from './support/inbound-mail.js';
import { repoRoot, runCli, startServer } from './support/processes.js';
import { createTestApp, seedAgent, type TestApp } from './support/test-app.js';

const deploy = (f: string) => path.join(repoRoot, 'deploy', f);

/** The character-strings of a zone-file TXT value (`"a" "b"` or `( "a" "b" )`), unescaped. */
const zoneStrings = (zone: string) => [...zone.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((m) => (m[1] as string).replace(/\\(.)/g, '$1'));

describe('deployment files', () => {
  it('ships a systemd unit that systemd-analyze accepts, sandboxed, writing only to the data dir', () => {
    const unit = fs.readFileSync(deploy('mailward.service'), 'utf8');
    // systemd's own checker (Debian's systemd package); a missing checker fails the test.
    execFileSync('systemd-analyze', ['verify', deploy('mailward.service')], { stdio: 'pipe' });
    const dataDir = /^Environment=MAILWARD_DATA_DIR=(\S+)$/m.exec(unit)?.[1];
    expect(dataDir).toBe('/var/lib/mailward');
    for (const line of [
      'ProtectSystem=strict',
      'NoNewPrivileges=yes',
      `ReadWritePaths=${dataDir}`,
      'PrivateTmp=yes',
      'ProtectHome=yes',
      'UMask=0077',
    ])
      expect(unit.split('\n')).toContain(line);
    expect(fs.readFileSync(deploy('Caddyfile'), 'utf8')).toContain('reverse_proxy 127.0.0.1:8025');
    expect(fs.readFileSync(deploy('nginx-mailward.conf'), 'utf8')).toContain('proxy_pass http://127.0.0.1:8025;');
  });

  it('names MAILWARD_* variables it does not know, with the closest known name, and leaves known ones alone', () => {
    expect(
      unknownEnvVars({
        MAILWARD_SMTP_RELAI: 'smtp://x',
        MAILWARD_HTTP_PORT: '8025',
        MAILWARD_API_KEY: 'k',
        MAILWARD_TEST_DIALECTS: 'sqlite',
        MAILWARD_SOMETHING_ELSE_ENTIRELY: '1',
        PATH: '/bin',
      }),
    ).toEqual([
      { name: 'MAILWARD_SMTP_RELAI', suggestion: 'MAILWARD_SMTP_RELAY' },
      { name: 'MAILWARD_SOMETHING_ELSE_ENTIRELY', suggestion: null },
    ]);
  });

  it('splits TXT values longer than 255 characters into several strings, as zone files need them', () => {
    const long = `v=DKIM1; k=rsa; p=${'A'.repeat(392)}`;
    const zone = zoneTxtValue(long);
    const parts = zoneStrings(zone);
    expect(parts.length).toBe(2);
    expect(parts.every((p) => p.length <= 255)).toBe(true);
    expect(parts.join('')).toBe(long);
    expect(zone.startsWith('( "')).toBe(true);
    expect(zoneTxtValue('v=spf1 mx -all')).toBe('"v=spf1 mx -all"');
  });
});

for (const dialect of testDialects()) {
  describe(`running it: postmaster, zone output, start-up warnings (${dialect})`, () => {
    const cleanups: (() => Promise<void>)[] = [];
    afterAll(async () => {
      for (const c of cleanups.reverse()) await c();
    });

    it('accepts mail for postmaster@ and the DMARC report address into read-only mailboxes admins read, agents cannot', async () => {
      const t: TestApp = await createTestApp(dialect);
      cleanups.push(t.close);
      const smtp = await startInbound(t);
      cleanups.push(smtp.close);
      const other = await seedAgent(t);
      for (const local of ['postmaster', 'dmarc-reports']) {
        const to = `${local}@${t.domain}`;
        expect(
          await smtpCode(smtp.sendRaw(rawMessage({ to, subject: `Report for ${local}` }), { from: 'noreply@lab.example', to: [to] })),
        ).toBe(250);
        const box = await t.c.store.db.selectFrom('mailboxes').selectAll().where('address', '=', to).executeTakeFirstOrThrow();
        expect(box.oversight_mode).toBe('read_only');
        const list = await t.call('GET', `/v1/mailboxes/${box.id}/messages?direction=inbound`, t.adminKey);
        expect(list.status).toBe(200);
        expect(list.body.messages).toHaveLength(1);
        const email = await t.call('GET', `/v1/emails/${list.body.messages[0].id}`, t.adminKey);
        expect(email.body.subject).toBe(`Report for ${local}`);
        // Another agent's key sees nothing of it (404, never 403).
        expect((await t.call('GET', `/v1/mailboxes/${box.id}/messages`, other.agentKey)).status).toBe(404);
      }
      // The postmaster agent is audited like any creation, answered for by the first admin.
      const created = await t.call('GET', '/v1/audit/events?action=agent.created', t.adminKey);
      expect(created.body.events.some((e: { details: { system?: boolean } }) => e.details.system === true)).toBe(true);
    });

    it('gives an organisation from before this version its postmaster mailboxes at start, once', async () => {
      const t: TestApp = await createTestApp(dialect);
      cleanups.push(t.close);
      const db = t.c.store.db;
      // As an organisation created by an older Mailward: no Postmaster agent, department or mailboxes.
      const agent = await db
        .selectFrom('agents')
        .select(['id', 'department_id'])
        .where('address', '=', `postmaster@${t.domain}`)
        .executeTakeFirstOrThrow();
      await db.deleteFrom('mailboxes').where('agent_id', '=', agent.id).execute();
      await db.deleteFrom('agents').where('id', '=', agent.id).execute();
      await db.deleteFrom('departments').where('id', '=', agent.department_id).execute();
      expect(await ensurePostmasters({ db, clock: t.c.clock, audit: t.c.audit })).toEqual([t.domain]);
      expect(await ensurePostmasters({ db, clock: t.c.clock, audit: t.c.audit })).toEqual([]);
      const boxes = await db
        .selectFrom('mailboxes')
        .select(['address', 'oversight_mode'])
        .where('address', 'like', `%@${t.domain}`)
        .orderBy('address')
        .execute();
      expect(boxes).toEqual([
        { address: `dmarc-reports@${t.domain}`, oversight_mode: 'read_only' },
        { address: `postmaster@${t.domain}`, oversight_mode: 'read_only' },
      ]);
      expect((await runCli(['audit', 'verify'], t.env)).code).toBe(0);
    });

    it('prints DKIM records split for zone files, and warns at start about unknown MAILWARD_* variables', async () => {
      const db = await freshDatabase(dialect);
      cleanups.push(db.drop);
      const init = await runCli(['init', '--org', 'Zone Hospital', '--domain', 'zone.example'], db.env);
      expect(init.code, init.stderr).toBe(0);
      const dns = await runCli(['dns', '--json'], db.env);
      const records = JSON.parse(dns.stdout).organizations[0].dns_records as { name: string; value: string; zone_value: string }[];
      const rsa = records.find((r) => r.value.includes('k=rsa'))!;
      expect(rsa.value.length).toBeGreaterThan(255);
      expect(zoneStrings(rsa.zone_value).join('')).toBe(rsa.value);
      expect(zoneStrings(rsa.zone_value).every((s) => s.length <= 255)).toBe(true);
      const text = await runCli(['dns'], db.env);
      expect(text.stdout).toContain(`${rsa.name}.  IN TXT  ${rsa.zone_value}`);

      const server = await startServer({ ...db.env, MAILWARD_SMTP_RELAI: 'smtp://127.0.0.1:1' });
      cleanups.push(server.stop);
      expect(server.output()).toContain(
        'unknown environment variable MAILWARD_SMTP_RELAI is ignored; the closest known name is MAILWARD_SMTP_RELAY',
      );
    });
  });
}
