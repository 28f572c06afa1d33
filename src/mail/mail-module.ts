import type { AuditService } from '../audit/audit-service.js';
import type { Guard } from '../identity/guard.js';
import type { IdentityRepo } from '../identity/identity-repo.js';
import type { Clock } from '../kernel/clock.js';
import type { KeyRing } from '../kernel/crypto/keyring.js';
import type { Logger } from '../kernel/log.js';
import type { MetricsSink } from '../kernel/metrics.js';
import type { ConsentService } from '../phi/consent-service.js';
import { createOutboundScreen } from '../phi/outbound-screen.js';
import { createEventFeed } from '../events/event-feed.js';
import type { PhiModel } from '../phi/phi-model.js';
import type { Store } from '../store/db.js';
import { createDeliveryWorker } from './delivery-worker.js';
import { createMailResolver, type DnsLookups, loadDnsOverrides } from './dns-overrides.js';
import { createDnsRecordsService } from './dns-records.js';
import { createHeldMail } from './held-mail.js';
import { createMailRetention } from './mail-retention.js';
import { createSearchBackfill, createSearchCompactor } from './search-index.js';
import { createIdentityVerifier } from './identity-verifier.js';
import type { MailConfig } from './mail-config.js';
import { createMailboxService } from './mailbox-service.js';
import { createOutboundPipeline } from './outbound-pipeline.js';
import { DEFAULT_RETRY_SCHEDULE_SECONDS } from './retry-schedule.js';
import { createReadService } from './read-service.js';
import { createSendService } from './send-service.js';
import { createSigningPool } from './signing-pool.js';
import { createSmtpSender } from './smtp-deliver.js';
import { createTemplatesRepo } from '../templates/templates-repo.js';
import { createTemplatesService } from '../templates/templates-service.js';
import { createBulkSend } from './bulk-send.js';

type Deps = {
  config: MailConfig;
  store: Store;
  ring: KeyRing;
  clock: Clock;
  logger: Logger;
  audit: AuditService;
  guard: Guard;
  repo: IdentityRepo;
  consent: Pick<ConsentService, 'consentFor'>;
  dns?: DnsLookups;
  /** Chores of the delivery worker's `runOnce` (the container passes the approvals' expiry; `serve` runs its own sweeper). */
  sweep?: () => Promise<unknown>;
  metrics?: MetricsSink;
  /** The local PHI model (MAILWARD_PHI_MODEL), loaded at start; null: rules only. */
  phiModel?: PhiModel | null;
};

/**
 * Wires outbound mail: mailboxes, send, reading, the delivery worker, PHI holds and consent, and mail's side of
 * reviewers' decisions (`held`, the approvals port); the container builds the approvals service over it.
 */
export const createMailModule = ({
  config,
  store,
  ring,
  clock,
  logger,
  audit,
  guard,
  repo,
  consent,
  dns,
  sweep,
  metrics,
  phiModel = null,
}: Deps) => {
  const db = store.db;
  // The domain-event log's wake-ups: mail committed by any process sharing the store.
  const events = createEventFeed(store);
  const resolver = createMailResolver(loadDnsOverrides(config.dnsOverridesFile), dns);
  const signer = createSigningPool({ size: config.delivery.signingThreads, logger });
  const pipeline = createOutboundPipeline({ ring, clock, config, signer });
  // The worker is created below; senders wake it after each commit that queued mail.
  let kick = () => {};
  const onQueued = () => kick();
  const mailboxes = createMailboxService({ db, repo, guard, clock });
  const screen = createOutboundScreen({ consent, model: phiModel });
  // Pre-approved templates: written and approved by humans, rendered and screened for the send path.
  const templates = createTemplatesService({ db, guard, clock, repo: createTemplatesRepo(), screen });
  const mail = createSendService({ db, ring, guard, repo, clock, pipeline, screen, audit, config, onQueued, templates });
  const bulk = createBulkSend({ db, guard, mail, templates });
  // Get, list, thread, tags, search and attachments of both directions.
  const reader = createReadService({ db, dialect: store.dialect, ring, guard, clock, audit });
  const held = createHeldMail({ ring, pipeline });
  const retention = createMailRetention({ db, ring, clock, guard, audit });
  // Messages stored before the blind search index are indexed in the background by `serve`.
  const searchBackfill = createSearchBackfill({ store, ring, clock, audit });
  // New messages' entries wait in one row each until the compactor folds them into segments (search-index.ts).
  const searchCompactor = createSearchCompactor({ store, clock });
  const sender = createSmtpSender(config, resolver, () => config.bootstrap.domain);
  const delivery = createDeliveryWorker({
    db,
    dialect: store.dialect,
    ring,
    clock,
    audit,
    sender,
    pipeline,
    logger,
    retrySchedule: config.delivery.retryScheduleSeconds ?? DEFAULT_RETRY_SCHEDULE_SECONDS,
    concurrency: config.delivery.concurrency,
    pollMs: config.delivery.pollMs,
    leaseMs: config.delivery.leaseSeconds * 1000,
    sweep,
    events,
    metrics,
  });
  kick = delivery.kick;
  const dnsRecords = createDnsRecordsService({ db });
  const identityVerifier = createIdentityVerifier({ db });
  return {
    mailboxes,
    mail,
    bulk,
    templates,
    reader,
    held,
    screen,
    onQueued,
    retention,
    searchBackfill,
    searchCompactor,
    delivery,
    resolver,
    signer,
    events,
    dnsRecords,
    identityVerifier,
  };
};

export type MailModule = ReturnType<typeof createMailModule>;
