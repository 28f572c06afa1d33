import type { Kysely } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and must not depend on today's schema types
type AnyDb = Kysely<any>;

const ACCOUNT_RE = /^(agt_[0-9A-Za-z]+):(hum_[0-9A-Za-z]+)$/;

/**
 * `oauth_records.agent_id` and `.human_id`: whom a grant, code or token acts for (the agent) and who granted it (the
 * human), from the payload's `accountId` (`<agent id>:<human id>`), so the grants of an agent or a human can be
 * revoked in the transaction that deactivates them or hands the agent to someone else. Existing rows are filled in.
 */
export const up = async (db: AnyDb): Promise<void> => {
  await db.schema.alterTable('oauth_records').addColumn('agent_id', 'text').execute();
  await db.schema.alterTable('oauth_records').addColumn('human_id', 'text').execute();
  await db.schema.createIndex('oauth_records_agent_idx').on('oauth_records').column('agent_id').execute();
  await db.schema.createIndex('oauth_records_human_idx').on('oauth_records').column('human_id').execute();
  const rows = await db
    .selectFrom('oauth_records')
    .select(['model', 'id_hash', 'payload'])
    .where('payload', 'like', '%accountId%')
    .execute();
  for (const r of rows as { model: string; id_hash: string; payload: string }[]) {
    const m = ACCOUNT_RE.exec(String((JSON.parse(r.payload) as { accountId?: unknown }).accountId ?? ''));
    if (!m) continue;
    await db
      .updateTable('oauth_records')
      .set({ agent_id: m[1], human_id: m[2] })
      .where('model', '=', r.model)
      .where('id_hash', '=', r.id_hash)
      .execute();
  }
};
