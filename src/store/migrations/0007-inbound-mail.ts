import { type Kysely, sql } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and must not depend on today's schema types
type AnyDb = Kysely<any>;

/**
 * Inbound mail: per message, the sender-authentication results
 * (SPF, DKIM, DMARC, ARC from mailauth; JSON, no message content), and per
 * mailbox what happens to mail failing DMARC: `flag` (delivered with a flag,
 * the default) or `quarantine` (status `quarantined`, still listed).
 */
export const up = async (db: AnyDb): Promise<void> => {
  await db.schema.alterTable('messages').addColumn('auth_results', 'text').execute();
  await db.schema
    .alterTable('mailboxes')
    .addColumn('dmarc_failure', 'text', (c) => c.notNull().defaultTo('flag').check(sql`dmarc_failure in ('flag', 'quarantine')`))
    .execute();
};
