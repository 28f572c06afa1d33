import { type Kysely, sql } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and must not depend on today's schema types
type AnyDb = Kysely<any>;

const sqlIn = (col: string, values: string[]) => sql`${sql.ref(col)} in (${sql.join(values.map((v) => sql.lit(v)))})`;

/**
 * Outbound mail: mailboxes with their oversight mode, messages (content sealed
 * with the envelope scheme), the approval queue, per-message events, the
 * idempotency keys of `send`, and the durable outbox the delivery workers claim.
 */
export const up = async (db: AnyDb): Promise<void> => {
  await db.schema
    .createTable('mailboxes')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('org_id', 'text', (c) => c.notNull().references('organizations.id'))
    .addColumn('agent_id', 'text', (c) => c.notNull().references('agents.id'))
    .addColumn('address', 'text', (c) => c.notNull().unique())
    .addColumn('display_name', 'text', (c) => c.notNull())
    .addColumn('oversight_mode', 'text', (c) =>
      c.notNull().check(sqlIn('oversight_mode', ['autonomous', 'monitored', 'gated_send', 'gated_all', 'read_only'])),
    )
    .addColumn('forward_to', 'text')
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'text', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('mailboxes_org_idx').on('mailboxes').columns(['org_id', 'id']).execute();
  await db.schema.createIndex('mailboxes_agent_idx').on('mailboxes').columns(['agent_id']).execute();

  await db.schema
    .createTable('messages')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('org_id', 'text', (c) => c.notNull().references('organizations.id'))
    .addColumn('mailbox_id', 'text', (c) => c.notNull().references('mailboxes.id'))
    .addColumn('direction', 'text', (c) => c.notNull().check(sqlIn('direction', ['inbound', 'outbound'])))
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('thread_id', 'text', (c) => c.notNull())
    .addColumn('message_id', 'text', (c) => c.notNull())
    .addColumn('in_reply_to', 'text')
    .addColumn('references_ids', 'text', (c) => c.notNull())
    .addColumn('created_by_type', 'text', (c) => c.notNull())
    .addColumn('created_by_id', 'text')
    .addColumn('content_sealed', 'text', (c) => c.notNull())
    .addColumn('original_sealed', 'text')
    .addColumn('raw_sealed', 'text')
    .addColumn('content_hash', 'text', (c) => c.notNull())
    .addColumn('raw_hash', 'text')
    .addColumn('size_bytes', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('tags', 'text', (c) => c.notNull())
    .addColumn('status_reason', 'text')
    .addColumn('approval_id', 'text')
    .addColumn('oversight_mode', 'text', (c) => c.notNull())
    .addColumn('is_read', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'text', (c) => c.notNull())
    .addColumn('delivered_at', 'text')
    .execute();
  await db.schema.createIndex('messages_mailbox_idx').on('messages').columns(['mailbox_id', 'id']).execute();
  await db.schema.createIndex('messages_thread_idx').on('messages').columns(['thread_id', 'id']).execute();
  await db.schema.createIndex('messages_message_id_idx').on('messages').columns(['org_id', 'message_id']).execute();

  await db.schema
    .createTable('message_events')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('message_id', 'text', (c) => c.notNull().references('messages.id'))
    .addColumn('at', 'text', (c) => c.notNull())
    .addColumn('type', 'text', (c) => c.notNull())
    .addColumn('details', 'text', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('message_events_message_idx').on('message_events').columns(['message_id', 'id']).execute();

  // Idempotency-Key: the primary key makes concurrent duplicates collide, so one request wins.
  await db.schema
    .createTable('idempotency_keys')
    .addColumn('scope', 'text', (c) => c.notNull())
    .addColumn('key', 'text', (c) => c.notNull())
    .addColumn('request_hash', 'text', (c) => c.notNull())
    .addColumn('message_id', 'text', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('expires_at', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('idempotency_keys_pk', ['scope', 'key'])
    .execute();

  await db.schema
    .createTable('approvals')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('org_id', 'text', (c) => c.notNull().references('organizations.id'))
    .addColumn('message_id', 'text', (c) => c.notNull().unique().references('messages.id'))
    .addColumn('mailbox_id', 'text', (c) => c.notNull())
    .addColumn('direction', 'text', (c) => c.notNull())
    .addColumn('status', 'text', (c) => c.notNull().check(sqlIn('status', ['pending', 'approved', 'rejected'])))
    .addColumn('reasons', 'text', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('expires_at', 'text', (c) => c.notNull())
    .addColumn('decided_at', 'text')
    .addColumn('decided_by', 'text')
    .addColumn('decision_reason', 'text')
    .addColumn('comment_sealed', 'text')
    .addColumn('edits', 'text')
    .execute();
  await db.schema.createIndex('approvals_org_status_idx').on('approvals').columns(['org_id', 'status', 'id']).execute();
  await db.schema.createIndex('approvals_expiry_idx').on('approvals').columns(['status', 'expires_at']).execute();

  await db.schema
    .createTable('outbox')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('org_id', 'text', (c) => c.notNull())
    .addColumn('message_id', 'text', (c) => c.notNull().references('messages.id'))
    .addColumn('kind', 'text', (c) => c.notNull().check(sqlIn('kind', ['deliver', 'copy'])))
    .addColumn('route', 'text', (c) => c.notNull())
    .addColumn('envelope_sealed', 'text', (c) => c.notNull())
    // The delegation chain the message was sent under, for the delivery audit events.
    .addColumn('actor_chain', 'text', (c) => c.notNull())
    .addColumn('status', 'text', (c) => c.notNull().check(sqlIn('status', ['pending', 'sending', 'done', 'bounced', 'failed'])))
    .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('next_attempt_at', 'text', (c) => c.notNull())
    .addColumn('lease_until', 'text')
    .addColumn('claimed_by', 'text')
    .addColumn('last_code', 'text')
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'text', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('outbox_due_idx').on('outbox').columns(['status', 'next_attempt_at']).execute();
  await db.schema.createIndex('outbox_message_idx').on('outbox').columns(['message_id']).execute();
};
