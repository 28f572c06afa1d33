import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RotationProgress, rotateKeys } from '../src/app/key-rotation.js';
import { loadKeyRing } from '../src/app/master-key.js';
import { SEALED_COLUMNS } from '../src/app/sealed-columns.js';
import { ssoSecretAad } from '../src/accounts/sso-service.js';
import { fixedClock } from '../src/kernel/clock.js';
import { open, parseSealed } from '../src/kernel/crypto/envelope.js';
import { consoleClient, oathtoolCode } from './support/console-client.js';
import { testDialects } from './support/dialects.js';
import { createTestApp, type TestApp } from './support/test-app.js';

const PASSWORD = 'quarry lilac ember tidewater';

for (const dialect of testDialects()) {
  describe(`key rotation covers sign-in secrets (${dialect})`, () => {
    let t: TestApp;
    const clock = fixedClock('2026-03-03T08:00:00.000Z');
    beforeAll(async () => {
      t = await createTestApp(dialect, { clock });
    }, 60_000);
    afterAll(async () => {
      await t?.close();
    });

    it('re-wraps TOTP seeds and the SSO client secret; the reviewer still signs in with a code after rotation', async () => {
      const h = await t.call('POST', '/v1/humans', t.adminKey, { name: 'Dr. Park', email: 'park@hospital.example', roles: ['reviewer'] });
      const inv = await t.call('POST', `/v1/humans/${h.body.id}/invitations`, t.adminKey);
      const path = new URL(inv.body.url).pathname;
      const b = consoleClient(t.app);
      await b.request('GET', path);
      await b.request('POST', path, { form: { csrf: b.csrf(), password: PASSWORD, password_confirm: PASSWORD } });
      const secret = /id="totp-secret">([A-Z2-7]+)</.exec((await b.request('GET', '/console/enrol')).body)![1]!;
      expect(
        (await b.request('POST', '/console/enrol/totp', { form: { csrf: b.csrf(), code: oathtoolCode(secret, clock.now()) } })).status,
      ).toBe(200);
      expect(
        (
          await t.call('PUT', '/v1/sso', t.adminKey, {
            issuer: 'https://login.hospital.example',
            client_id: 'mailward',
            client_secret: 'the-secret',
          })
        ).status,
      ).toBe(200);

      const progress: RotationProgress[] = [];
      const r = await rotateKeys({
        store: t.c.store,
        keys: { masterKey: undefined, masterKeys: undefined, dataDir: t.dataDir },
        clock: t.c.clock,
        audit: t.c.audit,
        columns: SEALED_COLUMNS,
        onProgress: (p) => progress.push(p),
      });
      expect(r.failed).toEqual([]);
      expect(r.retired).toEqual(['1']);
      expect(progress.filter((p) => p.label === 'human TOTP seeds').at(-1)).toMatchObject({ done: 1, total: 1 });
      expect(progress.filter((p) => p.label === 'SSO client secrets').at(-1)).toMatchObject({ done: 1, total: 1 });
      const cred = await t.c.store.db
        .selectFrom('human_credentials')
        .selectAll()
        .where('human_id', '=', h.body.id)
        .executeTakeFirstOrThrow();
      expect(parseSealed(cred.totp_sealed!).dk.kv).toBe('2');
      const sso = await t.c.store.db.selectFrom('sso_configs').selectAll().executeTakeFirstOrThrow();
      expect(parseSealed(sso.client_secret_sealed).dk.kv).toBe('2');

      // A ring loaded from the rotated key file opens the secret; the running server still verifies the reviewer's codes.
      const ring = loadKeyRing({ masterKey: undefined, masterKeys: undefined, dataDir: t.dataDir, create: false });
      expect(open(ring, sso.client_secret_sealed, ssoSecretAad(t.orgId)).toString()).toBe('the-secret');
      clock.advance(30_000);
      const c = consoleClient(t.app);
      await c.request('GET', '/console/sign-in');
      await c.request('POST', '/console/sign-in', { form: { csrf: c.csrf(), email: 'park@hospital.example', password: PASSWORD } });
      await c.request('GET', '/console/second-factor');
      expect(
        (await c.request('POST', '/console/second-factor', { form: { csrf: c.csrf(), code: oathtoolCode(secret, clock.now()) } })).location,
      ).toBe('/console');
    });
  });
}
