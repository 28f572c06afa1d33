import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/app/config.js';
import { createContainer } from '../src/app/container.js';
import { rotateKeys } from '../src/app/key-rotation.js';
import { SEALED_COLUMNS } from '../src/app/sealed-columns.js';
import { buildServer } from '../src/app/http-server.js';
import { createLogger } from '../src/kernel/log.js';
import type { Dialect } from '../src/store/db.js';
import { freshDatabase, testDialects } from './support/dialects.js';
import { createTestApp, seedAgent, type TestApp } from './support/test-app.js';

const SEED = 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP';

/** A snapshot of every row the vault and key checks could touch. */
const snapshot = async (t: TestApp) => {
  // Events commit unsequenced: integrate them first, so an event written by a check shows in the head and count.
  await t.c.audit.sync();
  const db = t.c.store.db;
  return JSON.stringify({
    head: await db.selectFrom('audit_head').selectAll().execute(),
    events: (await db.selectFrom('audit_events').select('seq').execute()).length,
    ring: await db.selectFrom('key_ring').selectAll().orderBy('version').execute(),
    versions: await db.selectFrom('vault_secret_versions').selectAll().orderBy('id').execute(),
    signing: await db.selectFrom('signing_keys').select(['id', 'private_key_sealed']).orderBy('id').execute(),
  });
};

const errorEvents = async (t: TestApp, action: string) => {
  await t.c.audit.sync();
  return (await t.c.store.db.selectFrom('audit_events').selectAll().where('action', '=', action).where('outcome', '=', 'error').execute())
    .length;
};

for (const dialect of testDialects()) {
  describe(`vault integrity (${dialect})`, () => {
    let t: TestApp;
    beforeAll(async () => {
      t = await createTestApp(dialect);
    });
    afterAll(async () => {
      await t?.close();
    });

    it('fails to decrypt a ciphertext moved to another agent or another version', async () => {
      const a = await seedAgent(t, 'Owner A', ['vault:write', 'vault:reveal']);
      const b = await seedAgent(t, 'Owner B', ['vault:write', 'vault:reveal']);
      await t.call('PUT', '/v1/vault/secrets/portal', a.agentKey, { kind: 'password', value: 'secret-of-agent-a' });
      await t.call('PUT', '/v1/vault/secrets/portal', b.agentKey, { kind: 'password', value: 'secret-of-agent-b' });
      const db = t.c.store.db;
      const rowA = await db.selectFrom('vault_secret_versions').selectAll().where('agent_id', '=', a.agent.id).executeTakeFirstOrThrow();
      await db.updateTable('vault_secret_versions').set({ sealed: rowA.sealed }).where('agent_id', '=', b.agent.id).execute();
      const before = await errorEvents(t, 'vault.secret.revealed');
      const moved = await t.call('GET', '/v1/vault/secrets/portal', b.agentKey);
      expect(moved.status).toBe(500);
      expect(moved.body.code).toBe('secret_integrity_failed');
      expect(JSON.stringify(moved.body)).not.toContain('secret-of-agent');
      expect(await errorEvents(t, 'vault.secret.revealed')).toBe(before + 1);

      // Version 1's ciphertext placed in version 2 of the same secret.
      await t.call('PUT', '/v1/vault/secrets/portal', a.agentKey, { kind: 'password', value: 'second-version' });
      const rows = await db.selectFrom('vault_secret_versions').selectAll().where('agent_id', '=', a.agent.id).orderBy('version').execute();
      await db.updateTable('vault_secret_versions').set({ sealed: rows[0]!.sealed }).where('id', '=', rows[1]!.id).execute();
      const old = await t.call('GET', '/v1/vault/secrets/portal', a.agentKey);
      expect(old.status).toBe(500);
      expect(old.body.code).toBe('secret_integrity_failed');
    });

    it('fails with a clear error and an audit event for a flipped byte anywhere in a stored version', async () => {
      const a = await seedAgent(t, 'Flip Agent');
      await t.call('PUT', '/v1/vault/secrets/otp', a.agentKey, { kind: 'totp', value: SEED, metadata: { portal: 'lab' } });
      const db = t.c.store.db;
      const row = await db.selectFrom('vault_secret_versions').selectAll().where('agent_id', '=', a.agent.id).executeTakeFirstOrThrow();
      const flip = (s: string, i: number) => s.slice(0, i) + String.fromCharCode(s.charCodeAt(i) ^ 1) + s.slice(i + 1);
      const flipByte = (b: Buffer, i: number) => {
        const c = Buffer.from(b);
        c[i]! ^= 1;
        return c;
      };
      const tampered: Record<string, unknown>[] = [];
      expect(Buffer.isBuffer(row.sealed)).toBe(true);
      const sealed = row.sealed as Buffer;
      for (let i = 0; i < sealed.length; i++) tampered.push({ sealed: flipByte(sealed, i) });
      for (let i = 0; i < row.metadata.length; i++) tampered.push({ metadata: flip(row.metadata, i) });
      tampered.push(
        { kind: 'note' },
        { version: 2 },
        { name: 'otq' },
        { agent_id: flip(row.agent_id, 5) },
        { org_id: flip(row.org_id, 5) },
      );
      const before = await errorEvents(t, 'vault.totp.generated');
      for (const change of tampered) {
        await db.updateTable('vault_secret_versions').set(change).where('id', '=', row.id).execute();
        const r = await t.call('POST', '/v1/vault/secrets/otp/totp', a.agentKey);
        expect([change, r.status, r.body.code]).toEqual([change, 500, 'secret_integrity_failed']);
        expect(r.body.detail).toMatch(/integrity check/);
        await db.updateTable('vault_secret_versions').set(row).where('id', '=', row.id).execute();
      }
      expect(await errorEvents(t, 'vault.totp.generated')).toBe(before + tampered.length);
      expect((await t.call('POST', '/v1/vault/secrets/otp/totp', a.agentKey)).status).toBe(200);
    });
  });

  describe(`start-up with the wrong master key (${dialect})`, () => {
    it('refuses a different MAILWARD_MASTER_KEY and a removed key file with a clear error and changes no rows', async () => {
      const t = await createTestApp(dialect);
      try {
        const a = await seedAgent(t, 'Key Agent');
        await t.call('PUT', '/v1/vault/secrets/p', a.agentKey, { kind: 'password', value: 'keep-me-sealed' });
        const before = await snapshot(t);
        const wrong = randomBytes(32).toString('base64');
        for (const createMasterKey of [false, true]) {
          await expect(
            createContainer(loadConfig({ ...t.env, MAILWARD_MASTER_KEY: wrong }), {
              createMasterKey,
              logger: createLogger({ level: 'silent' }),
            }),
          ).rejects.toMatchObject({
            code: 'master_key_mismatch',
            detail: expect.stringMatching(/not the key this store was initialised with.*no data was touched/),
          });
        }
        const file = path.join(t.dataDir, 'master.key');
        const saved = fs.readFileSync(file);
        fs.rmSync(file);
        for (const createMasterKey of [false, true]) {
          await expect(
            createContainer(loadConfig(t.env), { createMasterKey, logger: createLogger({ level: 'silent' }) }),
          ).rejects.toMatchObject({
            code: 'master_key_missing',
            detail: expect.stringContaining('master.key'),
          });
          // Start-up never generates a new key over sealed data.
          expect(fs.existsSync(file)).toBe(false);
        }
        fs.writeFileSync(file, saved, { mode: 0o600 });
        expect(await snapshot(t)).toBe(before);
      } finally {
        await t.close();
      }
    });
  });

  describe(`logs of a full run (${dialect})`, () => {
    let drop: (() => Promise<void>) | undefined;
    afterAll(async () => {
      await drop?.();
    });

    it('never contain a stored secret, TOTP seed or code', async () => {
      const fresh = await freshDatabase(dialect as Dialect);
      drop = fresh.drop;
      const lines: string[] = [];
      const sink = new Writable({
        write(chunk, _enc, cb) {
          lines.push(chunk.toString());
          cb();
        },
      });
      const env = { ...fresh.env, MAILWARD_LOG_LEVEL: 'trace' };
      const config = loadConfig(env);
      const c = await createContainer(config, { createMasterKey: true, logger: createLogger({ level: 'trace', destination: sink }) });
      const init = (await c.init({ orgName: 'Log Hospital', domain: 'log.example' }))!;
      const app = await buildServer(c);
      const call = async (method: string, url: string, key: string, body?: unknown) => {
        const r = await app.inject({
          method: method as 'GET',
          url,
          headers: { authorization: `Bearer ${key}`, ...(body ? { 'content-type': 'application/json' } : {}) },
          ...(body ? { payload: JSON.stringify(body) } : {}),
        });
        return { status: r.statusCode, body: r.body ? r.json() : undefined };
      };
      const secrets = ['Pa55-word-for-log-test-9d1c', 'api-key-value-7f3b2a', 'note text with-marker-4e6d'];
      const seedB32 = 'KRSXG5CTMVRXEZLUKRSXG5CTMVRXEZLU';
      const dep = await call('POST', '/v1/departments', init.admin_api_key, { name: 'Lab' });
      const hum = await call('POST', '/v1/humans', init.admin_api_key, { name: 'R', email: 'r@log.example', roles: ['reviewer'] });
      const agent = await call('POST', '/v1/agents', init.admin_api_key, {
        name: 'Logger',
        department_id: dep.body.id,
        responsible_human_id: hum.body.id,
      });
      const key = (
        await call('POST', `/v1/agents/${agent.body.id}/api-keys`, init.admin_api_key, {
          scopes: ['vault:read', 'vault:write', 'vault:reveal', 'vault:totp'],
        })
      ).body.key;
      await call('PUT', '/v1/vault/secrets/pw', key, { kind: 'password', value: secrets[0], username: 'log-user-name-x1' });
      await call('PUT', '/v1/vault/secrets/api', key, { kind: 'api_key', value: secrets[1] });
      await call('PUT', '/v1/vault/secrets/note', key, { kind: 'note', value: secrets[2] });
      await call('PUT', '/v1/vault/secrets/otp', key, { kind: 'totp', otpauth_uri: `otpauth://totp/L:x?secret=${seedB32}&issuer=L` });
      await call('PUT', '/v1/vault/secrets/otp2', key, { kind: 'totp', value: seedB32.slice(0, 20), digits: 8 });
      // Refusals that carry the secret in their input.
      await call('PUT', '/v1/vault/secrets/bad', key, { kind: 'totp', value: `${seedB32}!!` });
      await call('PUT', '/v1/vault/secrets/bad', key, { kind: 'password', value: secrets[0], digits: 9 });
      await call('PUT', '/v1/vault/secrets/bad', key, { kind: 'password', value: secrets[0], unknown_field: secrets[1] });
      await call('PUT', '/v1/vault/secrets/bad', key, { kind: 'totp', otpauth_uri: `otpauth://hotp/x?secret=${seedB32}` });
      const codes: string[] = [];
      for (let i = 0; i < 3; i++) codes.push((await call('POST', '/v1/vault/secrets/otp/totp', key)).body.code);
      for (const n of ['pw', 'api', 'note', 'otp']) await call('GET', `/v1/vault/secrets/${n}`, key);
      // A tampered row and a rotation, whose errors are logged.
      await c.store.db.updateTable('vault_secret_versions').set({ metadata: '{"tampered":true}' }).where('name', '=', 'api').execute();
      expect((await call('GET', '/v1/vault/secrets/api', key)).status).toBe(500);
      await rotateKeys({
        store: c.store,
        keys: { masterKey: undefined, dataDir: fresh.dataDir },
        clock: c.clock,
        audit: c.audit,
        columns: SEALED_COLUMNS,
      });
      await app.close();
      await c.close();

      const log = lines.join('');
      expect(log.length).toBeGreaterThan(0);
      const masterKey = fs.readFileSync(path.join(fresh.dataDir, 'master.key'), 'utf8');
      const needles = [
        ...secrets,
        seedB32,
        seedB32.slice(0, 20),
        'log-user-name-x1',
        ...codes,
        ...Object.values(JSON.parse(masterKey).keys as Record<string, string>),
        key.split('_').at(-1),
      ];
      for (const n of needles) expect([n, log.includes(n)]).toEqual([n, false]);
    });
  });
}
