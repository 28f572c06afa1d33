import Provider from 'oidc-provider';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixedClock } from '../src/kernel/clock.js';
import { createOauthRecordsRepo } from '../src/oauth/oauth-records-repo.js';
import { testDialects } from './support/dialects.js';
import { createTestApp, type TestApp } from './support/test-app.js';

const CLIENT = { client_id: 'mcp-client', token_endpoint_auth_method: 'none', redirect_uris: ['http://127.0.0.1:1/cb'] } as const;

// The authorization server's storage, driven through the real oidc-provider (its models call the adapter), on both dialects.
for (const dialect of testDialects()) {
  describe(`OAuth records in the store (${dialect})`, () => {
    let t: TestApp;
    const clock = fixedClock('2026-12-01T10:00:00.000Z');
    const providerOn = () => {
      const repo = createOauthRecordsRepo({ db: t.c.store.db, clock });
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
      await createOauthRecordsRepo({ db: t.c.store.db, clock }).adapterFor('AccessToken').revokeByGrantId('grant-3');
      expect(await b.AccessToken.find(access)).toBeUndefined();
      expect(await b.RefreshToken.find(refresh)).toBeUndefined();
      expect(await b.AccessToken.find(other)).toBeDefined();
      // oidc-provider's default access-token lifetime is one hour.
      clock.advance(3601 * 1000);
      expect(await b.AccessToken.find(other)).toBeUndefined();
    });
  });
}
