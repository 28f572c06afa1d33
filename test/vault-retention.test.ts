import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixedClock } from '../src/kernel/clock.js';
import { openStore } from '../src/store/db.js';
import { testDialects } from './support/dialects.js';
import { runCli } from './support/processes.js';
import { createTestApp, seedAgent, type TestApp } from './support/test-app.js';
import { idOfStored } from '../src/audit/audit-columns.js';

const DAY = 86_400_000;
const RETENTION_DAYS = 2190;
const SCOPES = ['vault:read', 'vault:write', 'vault:reveal', 'vault:totp'];

const versionsOf = async (t: TestApp, agentId: string) =>
  (
    await t.c.store.db
      .selectFrom('vault_secret_versions')
      .select(['name', 'version'])
      .where('agent_id', '=', agentId)
      .orderBy('name')
      .orderBy('version')
      .execute()
  ).map((r) => `${r.name}.v${Number(r.version)}`);

const purgedEvents = async (t: TestApp) =>
  (
    await t.c.audit
      .sync()
      .then(() => t.c.store.db.selectFrom('audit_events').selectAll().where('action', '=', 'vault.secret.purged').orderBy('seq').execute())
  ).map((e) => ({
    org_id: idOfStored(e.org_id),
    actor_type: e.actor_type,
    target_id: idOfStored(e.target_id),
    outcome: e.outcome,
    details: JSON.parse(e.details) as { name: string; versions: number[]; cutoff: string; retention_days: number; agent_id: string },
  }));

for (const dialect of testDialects()) {
  describe(`vault retention (${dialect})`, () => {
    let t: TestApp;
    const clock = fixedClock('2020-01-01T00:00:00Z');
    beforeAll(async () => {
      t = await createTestApp(dialect, { clock });
    });
    afterAll(async () => {
      await t?.close();
    });

    it('destroys versions of deleted secrets and superseded versions after the retention period, audits each secret, and keeps current versions readable', async () => {
      const a = await seedAgent(t, 'Retention Agent', SCOPES);
      const put = (name: string, body: unknown) => t.call('PUT', `/v1/vault/secrets/${name}`, a.agentKey, body);
      expect((await put('gone', { kind: 'password', value: 'old-portal-pw-1' })).status).toBe(200);
      expect((await put('gone', { kind: 'password', value: 'old-portal-pw-2' })).status).toBe(200);
      expect((await t.call('DELETE', '/v1/vault/secrets/gone', a.agentKey)).status).toBe(200);
      const deletedAt = clock.now().getTime();
      expect((await put('live', { kind: 'password', value: 'live-pw-1' })).status).toBe(200);
      expect((await put('otp', { kind: 'totp', value: 'GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ' })).status).toBe(200);
      clock.advance(DAY);
      expect((await put('live', { kind: 'password', value: 'live-pw-2' })).status).toBe(200);
      const supersededAt = clock.now().getTime();
      expect(await versionsOf(t, a.agent.id)).toEqual(['gone.v1', 'gone.v2', 'live.v1', 'live.v2', 'otp.v1']);

      // One hour short of the retention period after the deletion: nothing goes.
      clock.set(new Date(deletedAt + RETENTION_DAYS * DAY - 3_600_000));
      expect(await t.c.vault.purgeExpired()).toMatchObject({ versions: 0, secrets: 0, dry_run: false });
      expect(await purgedEvents(t)).toEqual([]);

      // Past it for the deleted secret, not yet for the superseded version.
      clock.set(new Date(deletedAt + RETENTION_DAYS * DAY + 3_600_000));
      expect(await t.c.vault.purgeExpired({ dryRun: true })).toMatchObject({ versions: 2, secrets: 1, dry_run: true });
      expect(await versionsOf(t, a.agent.id)).toHaveLength(5);
      expect(await t.c.vault.purgeExpired()).toMatchObject({ versions: 2, secrets: 1 });
      expect(await versionsOf(t, a.agent.id)).toEqual(['live.v1', 'live.v2', 'otp.v1']);

      clock.set(new Date(supersededAt + RETENTION_DAYS * DAY + 3_600_000));
      const r = await t.c.vault.purgeExpired();
      expect(r).toEqual({
        cutoff: new Date(clock.now().getTime() - RETENTION_DAYS * DAY).toISOString(),
        dry_run: false,
        versions: 1,
        secrets: 1,
      });
      expect(await versionsOf(t, a.agent.id)).toEqual(['live.v2', 'otp.v1']);
      // Nothing left to do: a second run changes and records nothing.
      expect(await t.c.vault.purgeExpired()).toMatchObject({ versions: 0 });

      const events = await purgedEvents(t);
      expect(events).toHaveLength(2);
      expect(events.map((e) => [e.details.name, e.details.versions])).toEqual([
        ['gone', [1, 2]],
        ['live', [1]],
      ]);
      for (const e of events) {
        expect(e).toMatchObject({
          org_id: t.orgId,
          actor_type: 'system',
          outcome: 'success',
          details: { agent_id: a.agent.id, retention_days: RETENTION_DAYS },
        });
        expect(JSON.stringify(e)).not.toMatch(/pw-\d/);
      }

      // Current versions still open; the deleted name can be used again with the next version number.
      expect((await t.call('GET', '/v1/vault/secrets/live', a.agentKey)).body).toMatchObject({ version: 2, value: 'live-pw-2' });
      expect((await t.call('POST', '/v1/vault/secrets/otp/totp', a.agentKey)).status).toBe(200);
      expect((await put('gone', { kind: 'password', value: 'new-portal-pw' })).body).toMatchObject({ version: 3 });
      expect((await t.call('GET', '/v1/vault/secrets/gone', a.agentKey)).body).toMatchObject({ version: 3, value: 'new-portal-pw' });
      expect((await t.c.auditLog.verify()).ok).toBe(true);
    });

    it('deletes nothing when the audit write fails or while the organisation is under a legal hold', async () => {
      const a = await seedAgent(t, 'Held Agent', SCOPES);
      await t.call('PUT', '/v1/vault/secrets/held', a.agentKey, { kind: 'password', value: 'held-pw' });
      await t.call('DELETE', '/v1/vault/secrets/held', a.agentKey);
      clock.advance((RETENTION_DAYS + 1) * DAY);

      const original = t.c.audit.record;
      (t.c.audit as { record: unknown }).record = async () => {
        throw new Error('audit store unavailable');
      };
      try {
        await expect(t.c.vault.purgeExpired()).rejects.toThrow('audit store unavailable');
      } finally {
        (t.c.audit as { record: unknown }).record = original;
      }
      expect(await versionsOf(t, a.agent.id)).toEqual(['held.v1']);

      const hold = await t.call('POST', '/v1/audit/legal-holds', t.adminKey, { matter: 'Case 2026-17' });
      expect(hold.status).toBe(201);
      expect(await t.c.vault.purgeExpired()).toMatchObject({ versions: 0 });
      expect(await versionsOf(t, a.agent.id)).toEqual(['held.v1']);
      expect((await t.call('POST', `/v1/audit/legal-holds/${hold.body.id}/release`, t.adminKey)).status).toBe(200);
      expect(await t.c.vault.purgeExpired()).toMatchObject({ versions: 1, secrets: 1 });
      expect(await versionsOf(t, a.agent.id)).toEqual([]);
    });

    it('purges on a schedule in the server process', async () => {
      const a = await seedAgent(t, 'Scheduled Agent', SCOPES);
      await t.call('PUT', '/v1/vault/secrets/sched', a.agentKey, { kind: 'api_key', value: 'sched-key' });
      await t.call('DELETE', '/v1/vault/secrets/sched', a.agentKey);
      clock.advance((RETENTION_DAYS + 1) * DAY);
      const stop = t.c.vault.startPurgeScheduler({ firstAfterMs: 0, everyMs: 50 });
      try {
        const deadline = Date.now() + 10_000;
        while ((await versionsOf(t, a.agent.id)).length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      } finally {
        stop();
      }
      expect(await versionsOf(t, a.agent.id)).toEqual([]);
      expect((await purgedEvents(t)).some((e) => e.details.name === 'sched' && e.details.agent_id === a.agent.id)).toBe(true);
    });
  });

  describe(`mailward audit purge (${dialect})`, () => {
    let t: TestApp;
    beforeAll(async () => {
      t = await createTestApp(dialect);
    });
    afterAll(async () => {
      await t?.close();
    });

    it('also destroys vault versions past retention, from the real CLI', async () => {
      const a = await seedAgent(t, 'CLI Agent', SCOPES);
      await t.call('PUT', '/v1/vault/secrets/cli', a.agentKey, { kind: 'password', value: 'cli-pw' });
      await t.call('DELETE', '/v1/vault/secrets/cli', a.agentKey);
      await t.call('PUT', '/v1/vault/secrets/kept', a.agentKey, { kind: 'password', value: 'kept-pw' });
      // Deleted seven years ago (the CLI runs on the real clock).
      const old = new Date(Date.now() - 7 * 365 * DAY).toISOString();
      await t.c.store.db.updateTable('vault_secret_versions').set({ deleted_at: old }).where('name', '=', 'cli').execute();

      const dry = await runCli(['audit', 'purge', '--dry-run', '--json'], t.env);
      expect(dry.code).toBe(0);
      expect(JSON.parse(dry.stdout).vault).toMatchObject({ dry_run: true, versions: 1, secrets: 1 });
      const run = await runCli(['audit', 'purge'], t.env);
      expect([run.code, run.stderr]).toEqual([0, '']);
      expect(run.stdout).toMatch(/^vault: 1 version\(s\) of 1 secret\(s\), deleted or superseded before .*, destroyed$/m);
      // A fresh handle: the CLI's own process did the work.
      const s = openStore(t.c.config.database);
      try {
        const left = await s.db.selectFrom('vault_secret_versions').select('name').where('agent_id', '=', a.agent.id).execute();
        expect(left.map((r) => r.name)).toEqual(['kept']);
      } finally {
        await s.destroy();
      }
    });
  });
}
