import type { Kysely } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and must not depend on today's schema types
type AnyDb = Kysely<any>;

/**
 * The tags Mailward derived from inbound content up to this migration
 * (src/phi/inbound-classifier.ts rules, phi, part2, bounce, unparsed), frozen
 * here: agents could not tell them from their own and could erase them.
 */
const SYSTEM_TAGS = new Set([
  'urgent',
  'prescription',
  'billing',
  'insurance',
  'referral',
  'results',
  'appointment',
  'records_request',
  'phi',
  'part2',
  'bounce',
  'unparsed',
]);

/**
 * Inbound hardening:
 * - `messages.system_tags` (JSON array): tags derived from content (PHI,
 *   42 CFR Part 2, routing categories), kept apart from `tags`, which become
 *   the agent's own labels. Inbound rows move their system tags across.
 * - Mail failing DMARC is quarantined by default: mailboxes on the old
 *   implicit `flag` default become `quarantine` (fail closed; `flag` is now an
 *   explicit opt-in an admin sets again). The column default stays `flag`
 *   (SQLite cannot change it in place); the mailbox service always writes the value.
 */
export const up = async (db: AnyDb): Promise<void> => {
  await db.schema
    .alterTable('messages')
    .addColumn('system_tags', 'text', (c) => c.notNull().defaultTo('[]'))
    .execute();
  let after = '';
  for (;;) {
    const rows: { id: string; tags: string }[] = await db
      .selectFrom('messages')
      .select(['id', 'tags'])
      .where('direction', '=', 'inbound')
      .where('tags', '<>', '[]')
      .where('id', '>', after)
      .orderBy('id')
      .limit(500)
      .execute();
    if (rows.length === 0) break;
    for (const r of rows) {
      const tags = JSON.parse(r.tags) as string[];
      const system = tags.filter((t) => SYSTEM_TAGS.has(t));
      if (system.length === 0) continue;
      await db
        .updateTable('messages')
        .set({ tags: JSON.stringify(tags.filter((t) => !SYSTEM_TAGS.has(t))), system_tags: JSON.stringify(system) })
        .where('id', '=', r.id)
        .execute();
    }
    after = rows.at(-1)!.id;
  }
  await db.updateTable('mailboxes').set({ dmarc_failure: 'quarantine' }).where('dmarc_failure', '=', 'flag').execute();
};
