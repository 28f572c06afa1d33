import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixedClock } from '../src/kernel/clock.js';
import { testDialects } from './support/dialects.js';
import { createTestApp, seedAgent, type TestApp } from './support/test-app.js';

// RFC 6238 Appendix B SHA1 seed "12345678901234567890" in base32.
const RFC_SEED_B32 = 'GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ';
const RFC_SEED_HEX = Buffer.from('12345678901234567890').toString('hex');
const oathtool = (hex: string, at: Date, algo = 'sha1', digits = 6, period = 30) =>
  execFileSync(
    'oathtool',
    [`--totp=${algo}`, '-d', String(digits), '-s', `${period}s`, '-N', `${at.toISOString().replace('T', ' ').slice(0, 19)} UTC`, hex],
    { encoding: 'utf8' },
  ).trim();

const events = async (t: TestApp, action: string) =>
  (await t.call('GET', `/v1/audit/events?action=${action}&limit=500`, t.adminKey)).body.events as any[];

for (const dialect of testDialects()) {
  describe(`agent vault over REST (${dialect})`, () => {
    let t: TestApp;
    const clock = fixedClock('2009-02-13T23:31:30Z');
    beforeAll(async () => {
      t = await createTestApp(dialect, { clock });
    });
    afterAll(async () => {
      await t?.close();
    });

    it('stores a portal password and a TOTP seed, gives codes that match oathtool, and never returns the seed', async () => {
      const a = await seedAgent(t, 'Portal Agent');
      const pw = await t.call('PUT', '/v1/vault/secrets/epic-portal', a.agentKey, {
        kind: 'password',
        value: 'Tr0ub4dor&3-portal',
        username: 'svc-epic',
        metadata: { url: 'https://epic.example' },
      });
      expect(pw.status).toBe(200);
      expect(pw.body).toEqual({ name: 'epic-portal', kind: 'password', version: 1, agent_id: a.agent.id });
      const otp = await t.call('PUT', '/v1/vault/secrets/epic-2fa', a.agentKey, { kind: 'totp', value: RFC_SEED_B32 });
      expect(otp.status).toBe(200);

      const code = await t.call('POST', '/v1/vault/secrets/epic-2fa/totp', a.agentKey);
      expect(code.status).toBe(200);
      expect(code.body.code).toBe(oathtool(RFC_SEED_HEX, clock.now()));
      expect(code.body).toEqual({ code: code.body.code, period: 30, digits: 6, expires_at: '2009-02-13T23:32:00.000Z' });

      const list = await t.call('GET', '/v1/vault/secrets', a.agentKey);
      expect(list.status).toBe(200);
      expect(list.body.secrets.map((s: any) => [s.name, s.kind, s.version])).toEqual([
        ['epic-2fa', 'totp', 1],
        ['epic-portal', 'password', 1],
      ]);
      expect(JSON.stringify(list.body)).not.toContain('Tr0ub4dor');
      expect(JSON.stringify(list.body)).not.toContain(RFC_SEED_B32);

      // No vault:reveal by default; and a key that has it still cannot read a TOTP seed.
      const denied = await t.call('GET', '/v1/vault/secrets/epic-portal', a.agentKey);
      expect(denied.status).toBe(403);
      expect(denied.body.code).toBe('scope_required');
      const revealKey = await t.call('POST', `/v1/agents/${a.agent.id}/api-keys`, t.adminKey, {
        scopes: ['vault:read', 'vault:reveal', 'vault:totp'],
      });
      const revealed = await t.call('GET', '/v1/vault/secrets/epic-portal', revealKey.body.key);
      expect(revealed.status).toBe(200);
      expect(revealed.body).toMatchObject({
        name: 'epic-portal',
        kind: 'password',
        version: 1,
        value: 'Tr0ub4dor&3-portal',
        username: 'svc-epic',
      });
      const seed = await t.call('GET', '/v1/vault/secrets/epic-2fa', revealKey.body.key);
      expect(seed.status).toBe(422);
      expect(seed.body.code).toBe('totp_not_revealable');
      expect(JSON.stringify(seed.body)).not.toContain(RFC_SEED_B32);
      // An admin cannot read values or codes either.
      const adminTotp = await t.call('POST', '/v1/vault/secrets/epic-2fa/totp', t.adminKey);
      expect(adminTotp.status).toBe(403);
    });

    it('imports otpauth URIs with SHA256 and SHA512 and 8 digits, matching oathtool', async () => {
      const a = await seedAgent(t, 'Uri Agent');
      const seeds = {
        sha256: '12345678901234567890123456789012',
        sha512: '1234567890123456789012345678901234567890123456789012345678901234',
      };
      for (const [algo, ascii] of Object.entries(seeds)) {
        const b32 = base32(Buffer.from(ascii));
        const uri = `otpauth://totp/Lab:agent?secret=${b32}&issuer=Lab&algorithm=${algo.toUpperCase()}&digits=8&period=60`;
        const put = await t.call('PUT', `/v1/vault/secrets/lab-${algo}`, a.agentKey, { kind: 'totp', otpauth_uri: uri });
        expect(put.status).toBe(200);
        const r = await t.call('POST', `/v1/vault/secrets/lab-${algo}/totp`, a.agentKey);
        expect(r.status).toBe(200);
        expect(r.body.digits).toBe(8);
        expect(r.body.period).toBe(60);
        expect(r.body.code).toBe(oathtool(Buffer.from(ascii).toString('hex'), clock.now(), algo, 8, 60));
      }
      const hotp = await t.call('PUT', '/v1/vault/secrets/h', a.agentKey, {
        kind: 'totp',
        otpauth_uri: `otpauth://hotp/x?secret=${RFC_SEED_B32}&counter=1`,
      });
      expect(hotp.status).toBe(422);
      const bad = await t.call('PUT', '/v1/vault/secrets/h', a.agentKey, { kind: 'totp', value: 'not base32 !!' });
      expect(bad.status).toBe(422);
      expect(bad.body.detail).not.toContain('base32 !!');
    });

    it('makes a new version on every write and keeps old versions after delete', async () => {
      const a = await seedAgent(t, 'Version Agent');
      for (const v of ['one', 'two', 'three'])
        await t.call('PUT', '/v1/vault/secrets/lab-api', a.agentKey, { kind: 'api_key', value: `key-${v}` });
      const list = await t.call('GET', '/v1/vault/secrets', a.agentKey);
      expect(list.body.secrets).toEqual([expect.objectContaining({ name: 'lab-api', version: 3 })]);
      const del = await t.call('DELETE', '/v1/vault/secrets/lab-api', a.agentKey);
      expect(del.status).toBe(200);
      expect((await t.call('GET', '/v1/vault/secrets', a.agentKey)).body.secrets).toEqual([]);
      expect((await t.call('DELETE', '/v1/vault/secrets/lab-api', a.agentKey)).status).toBe(404);
      const rows = await t.c.store.db
        .selectFrom('vault_secret_versions')
        .select(['version', 'deleted_at'])
        .where('agent_id', '=', a.agent.id)
        .orderBy('version')
        .execute();
      expect(rows.map((r) => Number(r.version))).toEqual([1, 2, 3]);
      expect(rows.every((r) => r.deleted_at !== null)).toBe(true);
      const again = await t.call('PUT', '/v1/vault/secrets/lab-api', a.agentKey, { kind: 'api_key', value: 'key-four' });
      expect(again.body.version).toBe(4);
    });

    it("never lets one agent reach another's vault and audits every access with the delegation chain", async () => {
      const a = await seedAgent(t, 'Vault A');
      const b = await seedAgent(t, 'Vault B');
      await t.call('PUT', '/v1/vault/secrets/shared-name', a.agentKey, { kind: 'token', value: 'a-token-value' });
      expect((await t.call('POST', '/v1/vault/secrets/shared-name/totp', b.agentKey)).status).toBe(404);
      expect((await t.call('GET', `/v1/vault/secrets?agent_id=${a.agent.id}`, b.agentKey)).status).toBe(404);
      expect((await t.call('DELETE', `/v1/vault/secrets/shared-name?agent_id=${a.agent.id}`, b.agentKey)).status).toBe(404);
      const stored = (await events(t, 'vault.secret.stored')).filter((e) => e.actor.id === a.agent.id);
      expect(stored.at(-1).delegation_chain.map((c: any) => c.type)).toEqual(['organization', 'department', 'agent']);
      expect(stored.at(-1).details).toMatchObject({ name: 'shared-name', kind: 'token', version: 1 });
      const deniedList = (await events(t, 'vault.secret.listed')).filter((e) => e.actor.id === b.agent.id && e.outcome === 'denied');
      expect(deniedList.length).toBe(1);
      const deniedDelete = (await events(t, 'vault.secret.deleted')).filter((e) => e.actor.id === b.agent.id && e.outcome === 'denied');
      expect(deniedDelete.length).toBe(1);
      // The secret of A is untouched.
      expect((await t.call('GET', '/v1/vault/secrets', a.agentKey)).body.secrets).toHaveLength(1);
    });

    it('lets an admin provision and list an agent vault but not read values', async () => {
      const a = await seedAgent(t, 'Provisioned Agent');
      const put = await t.call('PUT', `/v1/vault/secrets/pharmacy?agent_id=${a.agent.id}`, t.adminKey, {
        kind: 'password',
        value: 'ph-pass-123',
        username: 'rx',
      });
      expect(put.status).toBe(200);
      expect((await t.call('PUT', '/v1/vault/secrets/pharmacy', t.adminKey, { kind: 'password', value: 'x' })).body.code).toBe(
        'agent_id_required',
      );
      const list = await t.call('GET', `/v1/vault/secrets?agent_id=${a.agent.id}`, t.adminKey);
      expect(list.body.secrets.map((s: any) => s.name)).toEqual(['pharmacy']);
      expect((await t.call('GET', '/v1/vault/secrets/pharmacy', t.adminKey)).status).toBe(403);
      const mine = await t.call('GET', '/v1/vault/secrets', a.agentKey);
      expect(mine.body.secrets.map((s: any) => s.name)).toEqual(['pharmacy']);
    });

    it('refuses bad input with 4xx and stable codes', async () => {
      const a = await seedAgent(t, 'Input Agent');
      const cases: [string, unknown, number, string][] = [
        ['bad|name', { kind: 'password', value: 'x' }, 400, 'validation_failed'],
        ['ok', { kind: 'password' }, 422, 'value_required'],
        ['ok', { kind: 'secretish', value: 'x' }, 400, 'validation_failed'],
        ['ok', { kind: 'password', value: 'x', digits: 8 }, 422, 'totp_fields_not_allowed'],
        ['ok', { kind: 'totp', value: RFC_SEED_B32, digits: 9 }, 400, 'validation_failed'],
        ['ok', { kind: 'totp', value: 'GEZDGNBV' }, 422, 'invalid_totp'],
        ['ok', { kind: 'password', value: 'x', extra: 1 }, 400, 'validation_failed'],
      ];
      for (const [name, body, status, code] of cases) {
        const r = await t.call('PUT', `/v1/vault/secrets/${encodeURIComponent(name)}`, a.agentKey, body);
        expect([name, r.status, r.body.code]).toEqual([name, status, code]);
      }
      const noWrite = await t.call('POST', `/v1/agents/${a.agent.id}/api-keys`, t.adminKey, { scopes: ['vault:read'] });
      const r = await t.call('PUT', '/v1/vault/secrets/ok', noWrite.body.key, { kind: 'password', value: 'x' });
      expect(r.status).toBe(403);
      expect(r.body.code).toBe('scope_required');
    });
  });
}

function base32(buf: Buffer): string {
  const A = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0;
  let value = 0;
  let out = '';
  for (const byte of buf) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += A[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += A[(value << (5 - bits)) & 31];
  return out;
}
