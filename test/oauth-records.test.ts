import Provider from 'oidc-provider';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixedClock } from '../src/kernel/clock.js';
import { createIdentityRepo } from '../src/identity/identity-repo.js';
import { createOauthAuditHook } from '../src/oauth/oauth-audit.js';
import { type OauthAuditHook, type OauthChange, createOauthRecordsRepo } from '../src/oauth/oauth-records-repo.js';
import { testDialects } from './support/dialects.js';
import { createTestApp, type TestApp } from './support/test-app.js';
import { textIds } from './support/audit-rows.js';

const CLIENT = { client_id: 'mcp-client', token_endpoint_auth_method: 'none', redirect_uris: ['http://127.0.0.1:1/cb'] } as const;

// The authorization server's storage, driven through the real oidc-provider (its models call the adapter), on both dialects.
for (const dialect of testDialects()) {
  describe(`OAuth records in the store (${dialect})`, () => {
    let t: TestApp;
    const clock = fixedClock('2026-12-01T10:00:00.000Z');
    const hook = (): OauthAuditHook => createOauthAuditHook({ audit: t.c.audit, identity: createIdentityRepo() });
    const providerOn = (audit: OauthAuditHook = hook()) => {
      const repo = createOauthRecordsRepo({ db: t.c.store.db, clock, audit });
      return new Provider('http://127.0.0.1:1', {
        clients: [{ ...CLIENT, grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'] }],
        adapter: class {
          constructor(name: string) {
            // biome-ignore lint/correctness/noConstructorReturn: oidc-provider instantiates the adapter class per model
            return repo.adapterFor(name);
          }
        } as never,
        cookies: { keys: ['test-only-cookie-key-0123456789abcdef'] },
        features: { devInteractions: { enabled: false } },
      });
    };

    beforeAll(async () => {
      t = await createTestApp(dialect);
    });
    afterAll(async () => {
      await t?.close();
    });

    const rawRows = async () => JSON.stringify(await t.c.store.db.selectFrom('oauth_records').selectAll().execute());

    it('keeps an access token only as a hash, and another provider instance on the same store finds it', async () => {
      const a = providerOn();
      const client = await a.Client.find(CLIENT.client_id);
      const token = new a.AccessToken({
        client,
        accountId: 'agt_one',
        grantId: 'grant-1',
        scope: 'mail:read',
        gty: 'authorization_code',
      } as never);
      const value = await token.save();
      expect(value.length).toBeGreaterThan(30);
      expect(await rawRows()).not.toContain(value);
      const found = await providerOn().AccessToken.find(value);
      expect(found?.accountId).toBe('agt_one');
      expect(found?.jti).toBe(value);
      expect(await providerOn().AccessToken.find(`${value}x`)).toBeUndefined();
    });

    it('marks a code consumed across instances, so a replay is seen', async () => {
      const a = providerOn();
      const client = await a.Client.find(CLIENT.client_id);
      const code = new a.AuthorizationCode({
        client,
        accountId: 'agt_one',
        grantId: 'grant-2',
        scope: 'mail:read',
        redirectUri: CLIENT.redirect_uris[0],
        codeChallenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM',
        codeChallengeMethod: 'S256',
      } as never);
      const value = await code.save();
      expect(await rawRows()).not.toContain(value);
      const first = await providerOn().AuthorizationCode.find(value);
      expect((first as { consumed?: unknown } | undefined)?.consumed).toBeFalsy();
      await first?.consume();
      expect(((await providerOn().AuthorizationCode.find(value)) as { consumed?: unknown } | undefined)?.consumed).toBeTruthy();
    });

    it('forgets every token of a revoked grant, and tokens past their expiry', async () => {
      const a = providerOn();
      const client = await a.Client.find(CLIENT.client_id);
      const access = await new a.AccessToken({ client, accountId: 'agt_two', grantId: 'grant-3', scope: 'mail:read' } as never).save();
      const refresh = await new a.RefreshToken({ client, accountId: 'agt_two', grantId: 'grant-3', scope: 'mail:read' } as never).save();
      const other = await new a.AccessToken({ client, accountId: 'agt_two', grantId: 'grant-4', scope: 'mail:read' } as never).save();
      const b = providerOn();
      expect(await b.RefreshToken.find(refresh)).toBeDefined();
      const repo = createOauthRecordsRepo({ db: t.c.store.db, clock, audit: hook() });
      for (const m of ['AccessToken', 'RefreshToken']) await repo.adapterFor(m).revokeByGrantId('grant-3');
      expect(await b.AccessToken.find(access)).toBeUndefined();
      expect(await b.RefreshToken.find(refresh)).toBeUndefined();
      expect(await b.AccessToken.find(other)).toBeDefined();
      // oidc-provider's default access-token lifetime is one hour.
      clock.advance(3601 * 1000);
      expect(await b.AccessToken.find(other)).toBeUndefined();
    });

    const eventsOf = async (action: string) => {
      await t.c.audit.sync();
      return textIds(await t.c.store.db.selectFrom('audit_events').selectAll().where('action', '=', action).orderBy('seq').execute());
    };

    it('writes the audit event of each issue, redemption, rotation and revocation, with hashes and ids, never a token', async () => {
      const a = providerOn();
      const client = await a.Client.find(CLIENT.client_id);
      const grant = new a.Grant({ accountId: 'agt_nobody:hum_nobody', clientId: CLIENT.client_id });
      grant.addResourceScope('http://127.0.0.1:1/mcp', 'mail:read');
      const grantId = await grant.save();
      const code = await new a.AuthorizationCode({
        client,
        accountId: 'agt_nobody:hum_nobody',
        grantId,
        scope: 'mail:read',
        redirectUri: CLIENT.redirect_uris[0],
        codeChallenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM',
        codeChallengeMethod: 'S256',
      } as never).save();
      const issuedBy = { client, accountId: 'agt_nobody:hum_nobody', grantId, scope: 'mail:read', gty: 'authorization_code' };
      const access = await new a.AccessToken(issuedBy as never).save();
      const refresh = await new a.RefreshToken(issuedBy as never).save();
      await (await a.AuthorizationCode.find(code))!.consume();
      // A second consume changes nothing (compare-and-set) and records nothing.
      await (await a.AuthorizationCode.find(code))!.consume();
      await (await a.RefreshToken.find(refresh))!.consume();
      await (await a.AccessToken.find(access))!.destroy();
      await a.RefreshToken.adapter.revokeByGrantId(grantId);
      await a.Grant.adapter.destroy(grantId);

      const saved = await eventsOf('oauth.grant.saved');
      expect(saved.map((e) => e.target_id)).toContain(grantId);
      expect(JSON.parse(saved.at(-1)!.details)).toMatchObject({
        client_id: CLIENT.client_id,
        resources: ['http://127.0.0.1:1/mcp'],
        scope: 'mail:read',
      });
      expect((await eventsOf('oauth.code.issued')).filter((e) => e.target_id === grantId)).toHaveLength(1);
      expect((await eventsOf('oauth.code.redeemed')).filter((e) => e.target_id === grantId)).toHaveLength(1);
      const issued = (await eventsOf('oauth.token.issued')).filter((e) => e.target_id === grantId).map((e) => JSON.parse(e.details));
      expect(issued.map((d) => d.token_type).sort()).toEqual(['access_token', 'refresh_token']);
      expect(issued[0]).toMatchObject({ client_id: CLIENT.client_id, grant_type: 'authorization_code', scope: 'mail:read' });
      expect(issued[0].token_hash).toMatch(/^[0-9a-f]{64}$/);
      expect((await eventsOf('oauth.token.rotated')).filter((e) => e.target_id === grantId)).toHaveLength(1);
      const revoked = (await eventsOf('oauth.token.revoked')).filter((e) => e.target_id === grantId).map((e) => JSON.parse(e.details));
      expect(revoked.map((d) => `${d.token_type}/${d.reason}`).sort()).toEqual(['access_token/destroyed', 'refresh_token/grant_revoked']);
      expect((await eventsOf('oauth.grant.revoked')).map((e) => e.target_id)).toContain(grantId);
      const all = JSON.stringify(textIds(await t.c.store.db.selectFrom('audit_events').selectAll().execute()));
      for (const secret of [code, access, refresh]) expect(all).not.toContain(secret);
    });

    it('fails the write when its audit event cannot be written: no token, grant or redemption is kept', async () => {
      const good = providerOn();
      const client = await good.Client.find(CLIENT.client_id);
      const code = await new good.AuthorizationCode({
        client,
        accountId: 'agt_one',
        grantId: 'grant-5',
        scope: 'mail:read',
        redirectUri: CLIENT.redirect_uris[0],
        codeChallenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM',
        codeChallengeMethod: 'S256',
      } as never).save();
      const kept = await new good.AccessToken({ client, accountId: 'agt_one', grantId: 'grant-5', scope: 'mail:read' } as never).save();
      const before = await t.c.store.db.selectFrom('oauth_records').select(['model', 'id_hash', 'consumed_at']).execute();
      // The real audit service's write fails (as a full or unreachable store would make it): every change rolls back.
      const original = t.c.audit.record;
      (t.c.audit as { record: unknown }).record = async () => {
        throw new Error('audit store unavailable');
      };
      try {
        const bad = providerOn();
        await expect(
          new bad.AccessToken({ client, accountId: 'agt_one', grantId: 'grant-5', scope: 'mail:read' } as never).save(),
        ).rejects.toThrow('audit store unavailable');
        await expect(new bad.Grant({ accountId: 'agt_one:hum_one', clientId: CLIENT.client_id }).save()).rejects.toThrow(
          'audit store unavailable',
        );
        await expect((await bad.AuthorizationCode.find(code))!.consume()).rejects.toThrow('audit store unavailable');
        await expect((await bad.AccessToken.find(kept))!.destroy()).rejects.toThrow('audit store unavailable');
        await expect(bad.AccessToken.adapter.revokeByGrantId('grant-5')).rejects.toThrow('audit store unavailable');
      } finally {
        (t.c.audit as { record: unknown }).record = original;
      }
      expect(await t.c.store.db.selectFrom('oauth_records').select(['model', 'id_hash', 'consumed_at']).execute()).toEqual(before);
      expect((await providerOn().AuthorizationCode.find(code)) as { consumed?: unknown } | undefined).toMatchObject({ grantId: 'grant-5' });
      expect(((await providerOn().AuthorizationCode.find(code)) as { consumed?: unknown } | undefined)?.consumed).toBeFalsy();
      expect(await providerOn().AccessToken.find(kept)).toBeDefined();
    });

    it('writes in the caller’s transaction under within(): rolled back with it', async () => {
      const seen: OauthChange[] = [];
      const repo = createOauthRecordsRepo({ db: t.c.store.db, clock, audit: async (_tx, c) => void seen.push(c) });
      const before = (await t.c.store.db.selectFrom('oauth_records').select('id_hash').execute()).length;
      await expect(
        t.c.store.db.transaction().execute(async (tx) => {
          await repo.within(tx, () => repo.adapterFor('Grant').upsert('grant-tx', { jti: 'grant-tx', clientId: 'c' }, 60));
          // Seen inside the transaction, through the adapter too.
          expect(await repo.within(tx, () => repo.adapterFor('Grant').find('grant-tx'))).toMatchObject({ clientId: 'c' });
          throw new Error('the caller fails after the grant was written');
        }),
      ).rejects.toThrow('the caller fails');
      expect(seen.map((c) => `${c.op}/${c.model}`)).toEqual(['upsert/Grant']);
      expect(await t.c.store.db.selectFrom('oauth_records').select('id_hash').execute()).toHaveLength(before);
    });

    it('revokes the grants of one delegation (agent and human) in the caller’s transaction, or nothing if its audit fails', async () => {
      const a = providerOn();
      const client = await a.Client.find(CLIENT.client_id);
      const grantFor = async (accountId: string) => {
        const g = new a.Grant({ accountId, clientId: CLIENT.client_id });
        g.addResourceScope('http://127.0.0.1:1/mcp', 'mail:read');
        const grantId = await g.save();
        const access = await new a.AccessToken({ client, accountId, grantId, scope: 'mail:read' } as never).save();
        return { grantId, access };
      };
      const mine = await grantFor('agt_shared:hum_leaving');
      const theirs = await grantFor('agt_shared:hum_staying');
      const repo = createOauthRecordsRepo({ db: t.c.store.db, clock, audit: hook() });

      // The audit write fails: the caller's transaction (here, the identity change) fails and nothing is revoked.
      const original = t.c.audit.record;
      (t.c.audit as { record: unknown }).record = async () => {
        throw new Error('audit store unavailable');
      };
      try {
        await expect(
          t.c.store.db.transaction().execute((tx) => repo.revokeDelegation(tx, { agentId: 'agt_shared', humanId: 'hum_leaving' }, 'test')),
        ).rejects.toThrow('audit store unavailable');
      } finally {
        (t.c.audit as { record: unknown }).record = original;
      }
      expect(await providerOn().AccessToken.find(mine.access)).toBeDefined();

      const n = await t.c.store.db
        .transaction()
        .execute((tx) => repo.revokeDelegation(tx, { agentId: 'agt_shared', humanId: 'hum_leaving' }, 'agent_reassigned'));
      expect(n).toBe(1);
      expect(await providerOn().AccessToken.find(mine.access)).toBeUndefined();
      expect(await providerOn().Grant.find(mine.grantId)).toBeUndefined();
      expect(await providerOn().AccessToken.find(theirs.access)).toBeDefined();
      const ev = (await eventsOf('oauth.grant.revoked')).filter((e) => e.target_id === mine.grantId);
      expect(ev).toHaveLength(1);
      expect(JSON.parse(ev[0]!.details)).toMatchObject({ reason: 'agent_reassigned', client_id: CLIENT.client_id });
      expect(JSON.parse(ev[0]!.details).token_hashes).toHaveLength(1);
      // By agent alone: the rest of that agent's grants.
      expect(
        await t.c.store.db.transaction().execute((tx) => repo.revokeDelegation(tx, { agentId: 'agt_shared' }, 'agent_deactivated')),
      ).toBe(1);
      expect(await providerOn().AccessToken.find(theirs.access)).toBeUndefined();
    });
  });
}
