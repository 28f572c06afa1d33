import { afterEach, describe, expect, it } from 'vitest';
import { migrateToLatest } from '../src/store/migrate.js';
import { testDialects } from './support/dialects.js';
import { storeMigratedTo } from './support/migration-store.js';

for (const dialect of testDialects()) {
  describe(`OAuth records migration 0039 (${dialect})`, () => {
    const cleanups: (() => Promise<void>)[] = [];
    afterEach(async () => {
      for (const c of cleanups.splice(0).reverse()) await c();
    });

    it('fills agent_id and human_id of stored grants and tokens from their accountId, and leaves other rows empty', async () => {
      const { store, old: db, close } = await storeMigratedTo(dialect, '0038-sealed-binary');
      cleanups.push(close);
      // Rows as the store had them before 0039 (today's types have agent_id and human_id).
      const row = (model: string, idHash: string, payload: Record<string, unknown>) => ({
        model,
        id_hash: idHash,
        payload: JSON.stringify(payload),
        grant_id: null,
        uid_hash: null,
        user_code_hash: null,
        expires_at: null,
        consumed_at: null,
      });
      await db
        .insertInto('oauth_records')
        .values([
          row('Grant', 'h1', { jti: 'g1', accountId: 'agt_01abc:hum_01def', clientId: 'c' }),
          row('AccessToken', 'h2', { accountId: 'agt_01abc:hum_01def', grantId: 'g1' }),
          row('Session', 'h3', { jti: 's1', accountId: 'agt_01abc:hum_01def' }),
          row('Client', 'h4', { client_id: 'c' }),
          row('Grant', 'h5', { jti: 'g2', accountId: 'not-an-account' }),
        ])
        .execute();
      expect(await migrateToLatest(store)).toContain('0039-oauth-records-account');
      const after = await store.db.selectFrom('oauth_records').select(['id_hash', 'agent_id', 'human_id']).orderBy('id_hash').execute();
      expect(after).toEqual([
        { id_hash: 'h1', agent_id: 'agt_01abc', human_id: 'hum_01def' },
        { id_hash: 'h2', agent_id: 'agt_01abc', human_id: 'hum_01def' },
        { id_hash: 'h3', agent_id: 'agt_01abc', human_id: 'hum_01def' },
        { id_hash: 'h4', agent_id: null, human_id: null },
        { id_hash: 'h5', agent_id: null, human_id: null },
      ]);
    });
  });
}
