import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Secret, TOTP } from 'otpauth';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/app/config.js';
import { createContainer } from '../src/app/container.js';
import { type RotationProgress, rotateKeys } from '../src/app/key-rotation.js';
import { SEALED_COLUMNS } from '../src/app/sealed-columns.js';
import { buildServer } from '../src/app/http-server.js';
import { openPrivateKey } from '../src/identity/signing-keys.js';
import { parseSealed } from '../src/kernel/crypto/envelope.js';
import { createLogger } from '../src/kernel/log.js';
import { testDialects } from './support/dialects.js';
import { createTestApp, seedAgent, type TestApp } from './support/test-app.js';

const silent = createLogger({ level: 'silent' });
const SEED = 'GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ';

const kvs = async (t: TestApp) => {
  const a = await t.c.store.db.selectFrom('vault_secret_versions').select('sealed').execute();
  const b = await t.c.store.db.selectFrom('signing_keys').select('private_key_sealed as sealed').execute();
  return [...new Set([...a, ...b].map((r) => parseSealed(r.sealed).dk.kv))].sort();
};

const rotate = (t: TestApp, keys: { masterKey?: string; masterKeys?: string }, onProgress?: (p: RotationProgress) => void, batchSize = 5) =>
  rotateKeys({
    store: t.c.store,
    keys: { masterKey: keys.masterKey, masterKeys: keys.masterKeys, dataDir: t.dataDir },
    clock: t.c.clock,
    audit: t.c.audit,
    columns: SEALED_COLUMNS,
    onProgress,
    batchSize,
  });

for (const dialect of testDialects()) {
  describe(`key rotation (${dialect})`, () => {
    let t: TestApp | undefined;
    afterEach(async () => {
      await t?.close();
      t = undefined;
    });

    it('re-wraps every sealed value under a new key, keeps every secret readable during and after, and retires the old key', async () => {
      t = await createTestApp(dialect);
      const app = t;
      const a = await seedAgent(app, 'Rotation Agent', ['vault:read', 'vault:write', 'vault:reveal', 'vault:totp']);
      const values: Record<string, string> = {};
      for (let i = 0; i < 23; i++) {
        values[`pw-${i}`] = `password-number-${i}-${randomBytes(4).toString('hex')}`;
        expect(
          (await app.call('PUT', `/v1/vault/secrets/pw-${i}`, a.agentKey, { kind: 'password', value: values[`pw-${i}`] })).status,
        ).toBe(200);
      }
      await app.call('PUT', '/v1/vault/secrets/otp', a.agentKey, { kind: 'totp', value: SEED });
      // The seed must still give the right code after rotation; computed independently (otpauth) for the moment of each call.
      const expectedCode = () => new TOTP({ secret: Secret.fromBase32(SEED) }).generate();
      const codeBefore = (await app.call('POST', '/v1/vault/secrets/otp/totp', a.agentKey)).body.code;
      expect([expectedCode(), new TOTP({ secret: Secret.fromBase32(SEED) }).generate({ timestamp: Date.now() - 30_000 })]).toContain(
        codeBefore,
      );
      expect(await kvs(app)).toEqual(['1']);

      // Reads through the running server between batches: it has only version 1 in memory at the start.
      const during: Promise<{ status: number; body: any }>[] = [];
      const progress: RotationProgress[] = [];
      const r = await rotate(app, {}, (p) => {
        progress.push(p);
        during.push(app.call('GET', `/v1/vault/secrets/pw-${progress.length % 23}`, a.agentKey));
      });
      expect(r.failed).toEqual([]);
      expect(r.to).toBe('2');
      expect(r.retired).toEqual(['1']);
      expect(r.rewrapped).toBeGreaterThanOrEqual(24 + 4);
      expect(progress.filter((p) => p.label === 'vault secret versions').at(-1)).toMatchObject({ done: 24, total: 24 });
      for (const d of await Promise.all(during)) expect(d.status).toBe(200);

      expect(await kvs(app)).toEqual(['2']);
      for (const [name, value] of Object.entries(values)) {
        expect((await app.call('GET', `/v1/vault/secrets/${name}`, a.agentKey)).body.value).toBe(value);
      }
      const before = expectedCode();
      const codeAfter = (await app.call('POST', '/v1/vault/secrets/otp/totp', a.agentKey)).body.code;
      // A 30 s window may end between the two readings of the clock: the code is one of the two.
      expect([before, expectedCode()]).toContain(codeAfter);
      // Signing keys are re-wrapped too and still open.
      for (const row of await app.c.store.db.selectFrom('signing_keys').selectAll().execute()) {
        expect(openPrivateKey(app.c.ring, row)).toContain('PRIVATE KEY');
      }
      // New writes use the new key at once.
      await app.call('PUT', '/v1/vault/secrets/after', a.agentKey, { kind: 'note', value: 'written after rotation' });
      expect(await kvs(app)).toEqual(['2']);
      const ringRows = await app.c.store.db.selectFrom('key_ring').selectAll().orderBy('version').execute();
      expect(ringRows.map((k) => [k.version, k.retired_at !== null])).toEqual([
        ['1', true],
        ['2', false],
      ]);
      await app.c.audit.sync();
      const audit = await app.c.store.db.selectFrom('audit_events').selectAll().where('action', '=', 'key_ring.rotated').execute();
      expect(audit).toHaveLength(1);
      expect(audit[0]!.outcome).toBe('success');

      // The operator drops the retired key from the file; a fresh start still reads everything.
      const file = path.join(app.dataDir, 'master.key');
      const set = JSON.parse(fs.readFileSync(file, 'utf8'));
      delete set.keys['1'];
      fs.writeFileSync(file, JSON.stringify(set));
      const c2 = await createContainer(loadConfig(app.env), { logger: silent });
      const s2 = await buildServer(c2);
      try {
        const res = await s2.inject({ method: 'GET', url: '/v1/vault/secrets/pw-3', headers: { authorization: `Bearer ${a.agentKey}` } });
        expect(res.statusCode).toBe(200);
        expect(res.json().value).toBe(values['pw-3']);
      } finally {
        await s2.close();
        await c2.close();
      }
    });

    it('refuses to retire anything when a value fails to re-wrap, and audits the failure', async () => {
      t = await createTestApp(dialect);
      const a = await seedAgent(t, 'Tamper Agent');
      await t.call('PUT', '/v1/vault/secrets/good', a.agentKey, { kind: 'token', value: 'good-token' });
      await t.call('PUT', '/v1/vault/secrets/bad', a.agentKey, { kind: 'token', value: 'bad-token' });
      await t.c.store.db.updateTable('vault_secret_versions').set({ metadata: '{"x":1}' }).where('name', '=', 'bad').execute();
      const r = await rotate(t, {});
      expect(r.failed).toEqual([{ table: 'vault_secret_versions', id: expect.any(String), code: 'decrypt_failed' }]);
      expect(r.retired).toEqual([]);
      const k1 = await t.c.store.db.selectFrom('key_ring').selectAll().where('version', '=', '1').executeTakeFirstOrThrow();
      expect(k1.retired_at).toBeNull();
      await t.c.audit.sync();
      const ev = await t.c.store.db
        .selectFrom('audit_events')
        .selectAll()
        .where('action', '=', 'key_ring.rotated')
        .executeTakeFirstOrThrow();
      expect(ev.outcome).toBe('error');
    });

    it('rotates a key given in the environment through MAILWARD_MASTER_KEYS and refuses a lone MAILWARD_MASTER_KEY with instructions', async () => {
      const k1 = randomBytes(32).toString('base64');
      const k2 = randomBytes(32).toString('base64');
      t = await createTestApp(dialect, { env: { MAILWARD_MASTER_KEY: k1 } });
      expect(fs.existsSync(path.join(t.dataDir, 'master.key'))).toBe(false);
      const a = await seedAgent(t, 'Env Agent', ['vault:write', 'vault:reveal']);
      await t.call('PUT', '/v1/vault/secrets/p', a.agentKey, { kind: 'password', value: 'env-secret-value' });

      await expect(rotate(t, { masterKey: k1 })).rejects.toMatchObject({
        code: 'master_key_from_env',
        detail: expect.stringContaining('MAILWARD_MASTER_KEYS'),
      });

      const both = JSON.stringify({ active: '2', keys: { '1': k1, '2': k2 } });
      const r = await rotate(t, { masterKeys: both });
      expect(r.failed).toEqual([]);
      expect(r.retired).toEqual(['1']);
      expect(await kvs(t)).toEqual(['2']);

      // Version 1 dropped from the environment: start-up accepts it (retired) and reads work.
      const env = { ...t.env, MAILWARD_MASTER_KEY: '', MAILWARD_MASTER_KEYS: JSON.stringify({ active: '2', keys: { '2': k2 } }) };
      const c2 = await createContainer(loadConfig(env), { logger: silent });
      const s2 = await buildServer(c2);
      try {
        const res = await s2.inject({ method: 'GET', url: '/v1/vault/secrets/p', headers: { authorization: `Bearer ${a.agentKey}` } });
        expect(res.json().value).toBe('env-secret-value');
      } finally {
        await s2.close();
        await c2.close();
      }
      // The old lone key no longer matches an active version of the store.
      await expect(createContainer(loadConfig({ ...t.env, MAILWARD_MASTER_KEY: k2 }), { logger: silent })).rejects.toMatchObject({
        code: 'master_key_mismatch',
      });
    });
  });
}
