import { type Kysely, sql } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and must not depend on today's schema types
type AnyDb = Kysely<any>;

/**
 * First attempts from a lease on a range of an endpoint's cursor (src/webhooks/webhook-worker.ts): a running worker
 * leases the events past an endpoint's `cursor` with a compare-and-set on the endpoint's row, POSTs them, and
 * records only their outcomes (a success is a delivery-log row, a failure a waiting job), no job row per event.
 * - `leased_by`, `lease_until`: the worker holding the endpoint's first attempts, and until when (renewed like a
 *   job's lease; an expired one is taken over by another worker).
 * - `leased_to`: the highest `seq` ever handed out for a first attempt. Events in (`cursor`, `leased_to`] may
 *   already have an outcome recorded (a dead holder's): a new holder looks before sending them again.
 * - `webhook_attempts_delivery_attempt_uq`: one row per attempt number of a delivery. A first attempt's delivery id
 *   is derived from the endpoint and the event, so that look is one index probe, and the delivery log can never
 *   hold a second first attempt (nor a second success) of the same event for the same endpoint.
 * - `webhook_endpoints_leased_idx`: the once-a-second look for expired leases reads only leased endpoints.
 */
export const up = async (db: AnyDb): Promise<void> => {
  await db.schema
    .alterTable('webhook_endpoints')
    .addColumn('leased_to', 'bigint', (c) => c.notNull().defaultTo(0))
    .execute();
  await db.schema.alterTable('webhook_endpoints').addColumn('leased_by', 'text').execute();
  await db.schema.alterTable('webhook_endpoints').addColumn('lease_until', 'text').execute();
  await db.schema
    .createIndex('webhook_endpoints_leased_idx')
    .on('webhook_endpoints')
    .column('lease_until')
    .where(sql.ref('leased_by'), 'is not', null)
    .execute();
  await db.schema
    .createIndex('webhook_attempts_delivery_attempt_uq')
    .unique()
    .on('webhook_attempts')
    .columns(['delivery_id', 'attempt'])
    .execute();
};
