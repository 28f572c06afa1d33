import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/app/config.js';
import { type Container, createContainer } from '../src/app/container.js';
import { buildServer } from '../src/app/http-server.js';
import { createLogger } from '../src/kernel/log.js';
import { consoleClient } from './support/console-client.js';
import { freshDatabase, testDialects } from './support/dialects.js';
import { runCli } from './support/processes.js';

for (const dialect of testDialects()) {
  describe(`mailward humans invite (${dialect})`, () => {
    let db: Awaited<ReturnType<typeof freshDatabase>>;
    let c: Container | undefined;

    beforeAll(async () => {
      db = await freshDatabase(dialect);
      const init = await runCli(['init', '--org', 'General Hospital', '--domain', 'hospital.example', '--json'], db.env);
      expect(init.code).toBe(0);
    }, 120_000);
    afterAll(async () => {
      await c?.close();
      await db?.drop();
    });

    it('creates the human and prints a one-time link that opens the set-password page, once', async () => {
      const r = await runCli(
        ['humans', 'invite', '--email', 'Rivera@Hospital.example', '--name', 'Dr. Rivera', '--roles', 'reviewer,auditor', '--json'],
        {
          ...db.env,
          MAILWARD_PUBLIC_URL: 'https://mailward.hospital.example',
        },
      );
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      const out = JSON.parse(r.stdout);
      expect(out.url).toMatch(/^https:\/\/mailward\.hospital\.example\/console\/invite\/[A-Za-z0-9_-]{43}$/);

      c = await createContainer(loadConfig({ ...db.env, MAILWARD_LOG_LEVEL: 'silent' }), { logger: createLogger({ level: 'silent' }) });
      const human = await c.store.db.selectFrom('humans').selectAll().where('id', '=', out.human_id).executeTakeFirstOrThrow();
      expect(human.email).toBe('rivera@hospital.example');
      expect(JSON.parse(human.roles)).toEqual(['reviewer', 'auditor']);
      // Only the token's hash is stored.
      const token = out.url.split('/').at(-1);
      const rows = await c.store.db.selectFrom('human_invitations').selectAll().execute();
      expect(JSON.stringify(rows)).not.toContain(token);
      await c.audit.sync();
      const audit = await c.store.db
        .selectFrom('audit_events')
        .select(['action', 'details'])
        .where('action', '=', 'human.invited')
        .execute();
      expect(audit).toHaveLength(1);
      expect(audit[0]!.details).not.toContain(token);

      const app = await buildServer(c);
      const b = consoleClient(app);
      const page = await b.request('GET', `/console/invite/${token}`);
      expect(page.status).toBe(200);
      expect(page.body).toContain('Dr. Rivera');
      await app.close();

      const again = await runCli(
        ['humans', 'invite', '--email', 'rivera@hospital.example', '--name', 'Dr. Rivera', '--roles', 'reviewer'],
        db.env,
      );
      expect(again.code).toBe(1);
      expect(again.stderr).toContain('email_taken');
      const bad = await runCli(['humans', 'invite', '--email', 'x@hospital.example', '--name', 'X', '--roles', 'superuser'], db.env);
      expect(bad.code).toBe(2);
    }, 120_000);
  });
}
