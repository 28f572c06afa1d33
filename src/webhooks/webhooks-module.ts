import type { MetricsSink } from '../kernel/metrics.js';
import type { AuditService } from '../audit/audit-service.js';
import type { EventFeed } from '../events/event-feed.js';
import type { Guard } from '../identity/guard.js';
import type { Clock } from '../kernel/clock.js';
import type { KeyRing } from '../kernel/crypto/keyring.js';
import type { Logger } from '../kernel/log.js';
import type { Store } from '../store/db.js';
import { createEventsService } from './events-service.js';
import type { HostLookup } from './url-safety.js';
import { retryScheduleFrom } from './webhook-retry.js';
import { createWebhookWorker } from './webhook-worker.js';
import type { WebhooksConfig } from './webhooks-config.js';
import { createWebhooksService } from './webhooks-service.js';

type Deps = {
  config: WebhooksConfig;
  store: Store;
  ring: KeyRing;
  clock: Clock;
  logger: Logger;
  audit: AuditService;
  guard: Guard;
  feed: EventFeed;
  lookup: HostLookup;
  metrics?: Pick<MetricsSink, 'webhookAttempt'>;
};

/** Wires events out: the events API, webhook endpoints, the dispatcher and the delivery worker (`serve` starts it). */
export const createWebhooksModule = ({ config, store, ring, clock, logger, audit, guard, feed, lookup, metrics }: Deps) => {
  const worker = createWebhookWorker({
    metrics,
    db: store.db,
    dialect: store.dialect,
    ring,
    clock,
    audit,
    logger,
    feed,
    lookup,
    allowHosts: config.allowHosts,
    schedule: retryScheduleFrom(config.retryScheduleSeconds),
    concurrency: config.concurrency,
    timeoutMs: config.timeoutMs,
    leaseMs: config.leaseSeconds * 1000,
    pollMs: config.pollMs,
  });
  const webhooks = createWebhooksService({
    db: store.db,
    ring,
    guard,
    clock,
    lookup,
    allowHosts: config.allowHosts,
    onChanged: (orgId) => {
      void worker.fanOut(orgId);
      worker.kick();
    },
  });
  const events = createEventsService({ db: store.db });
  return { webhooks, events, worker, feed, stream: { heartbeatMs: config.sseHeartbeatMs, maxPerKey: config.sseMaxPerKey } };
};

export type WebhooksModule = ReturnType<typeof createWebhooksModule>;
