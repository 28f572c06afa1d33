import type { Kysely } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and must not depend on today's schema types
type AnyDb = Kysely<any>;

/**
 * `messages.submission_event_id`: the id of the outbound message's `email.submitted` audit event, written with the
 * message in the send's transaction. A delivery's receipt names that event by id (audit/integrator.ts resolves its
 * chain hash), so the delivery no longer looks the event up in `audit_pending` and `audit_events` by target. Null for
 * inbound mail and for messages stored before this migration (their receipts look the event up as before).
 */
export const up = async (db: AnyDb): Promise<void> => {
  await db.schema.alterTable('messages').addColumn('submission_event_id', 'text').execute();
};
