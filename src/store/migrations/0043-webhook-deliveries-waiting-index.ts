import { type Kysely, sql } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and must not depend on today's schema types
type AnyDb = Kysely<any>;

/**
 * Webhook delivery jobs by endpoint: only the waiting ones. 0018's `webhook_deliveries_endpoint_idx` held every
 * job ever made (endpoint, event seq), yet its one reader is the cancellation of an endpoint's waiting jobs
 * (disable, delete, auto-disable: `status = 'pending'`). A partial index of the waiting jobs serves it, and a
 * first attempt, whose job the dispatcher now inserts already leased (src/webhooks/webhook-worker.ts) and
 * which then succeeds, never enters it: one index entry fewer to write per delivered event.
 */
export const up = async (db: AnyDb): Promise<void> => {
  await db.schema.dropIndex('webhook_deliveries_endpoint_idx').execute();
  await db.schema
    .createIndex('webhook_deliveries_waiting_endpoint_idx')
    .on('webhook_deliveries')
    .column('endpoint_id')
    .where(sql.ref('status'), '=', sql.lit('pending'))
    .execute();
};
