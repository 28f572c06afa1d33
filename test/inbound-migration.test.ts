import { afterEach, describe, expect, it } from 'vitest';
import { migrateToLatest } from '../src/store/migrate.js';
import { testDialects } from './support/dialects.js';
import { storeMigratedTo } from './support/migration-store.js';

for (const dialect of testDialects()) {
  describe(`inbound migration 0010 (${dialect})`, () => {
    const cleanups: (() => Promise<void>)[] = [];
    afterEach(async () => {
      for (const c of cleanups.splice(0).reverse()) await c();
    });

    it('moves the content-derived tags of stored inbound mail apart from the agent tags, and quarantines where the old implicit flag default was', async () => {
      const { store, old: db, close } = await storeMigratedTo(dialect, '0007-inbound-mail');
      cleanups.push(close);

      // Rows of the schema as it was before 0010 (today's types have system_tags).
      const at = '2026-01-01T00:00:00.000Z';
      await db
        .insertInto('organizations')
        .values({ id: 'org_1', name: 'General Hospital', domain: 'hospital.example', created_at: at })
        .execute();
      await db
        .insertInto('departments')
        .values({ id: 'dep_1', org_id: 'org_1', name: 'Clinic', parent_id: null, created_at: at })
        .execute();
      await db
        .insertInto('humans')
        .values({ id: 'hum_1', org_id: 'org_1', name: 'Dr. Chen', email: 'chen@hospital.example', roles: '["admin"]', created_at: at })
        .execute();
      await db
        .insertInto('agents')
        .values({
          id: 'agt_1',
          org_id: 'org_1',
          department_id: 'dep_1',
          responsible_human_id: 'hum_1',
          name: 'Assistant',
          address: 'assistant@hospital.example',
          created_at: at,
        })
        .execute();
      await db
        .insertInto('mailboxes')
        .values({
          id: 'mbx_1',
          org_id: 'org_1',
          agent_id: 'agt_1',
          address: 'assistant@hospital.example',
          display_name: 'Assistant',
          oversight_mode: 'autonomous',
          created_at: at,
          updated_at: at,
        })
        .execute();
      const message = (id: string, direction: string, tags: string[]) => ({
        id,
        org_id: 'org_1',
        mailbox_id: 'mbx_1',
        direction,
        status: direction === 'inbound' ? 'received' : 'delivered',
        thread_id: 'thr_1',
        message_id: `<${id}@lab.example>`,
        references_ids: '[]',
        created_by_type: 'system',
        content_sealed: 'sealed',
        content_hash: 'h',
        tags: JSON.stringify(tags),
        oversight_mode: 'autonomous',
        created_at: at,
        updated_at: at,
      });
      await db
        .insertInto('messages')
        .values([
          message('msg_1', 'inbound', ['prescription', 'phi', 'part2', 'triaged']),
          message('msg_2', 'inbound', []),
          message('msg_3', 'outbound', ['phi', 'followup']),
        ])
        .execute();
      expect((await db.selectFrom('mailboxes').select('dmarc_failure').executeTakeFirstOrThrow()).dmarc_failure).toBe('flag');

      expect(await migrateToLatest(store)).toContain('0010-inbound-tags-and-dmarc');
      const rows = await store.db.selectFrom('messages').select(['id', 'tags', 'system_tags']).orderBy('id').execute();
      expect(rows.map((r) => [r.id, JSON.parse(r.tags), JSON.parse(r.system_tags)])).toEqual([
        ['msg_1', ['triaged'], ['prescription', 'phi', 'part2']],
        ['msg_2', [], []],
        // Outbound tags were the agent's own (given at send): left as they are.
        ['msg_3', ['phi', 'followup'], []],
      ]);
      expect((await store.db.selectFrom('mailboxes').select('dmarc_failure').executeTakeFirstOrThrow()).dmarc_failure).toBe('quarantine');
    });
  });
}
