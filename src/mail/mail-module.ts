import type { AuditService } from '../audit/audit-service.js';
import type { Guard } from '../identity/guard.js';
import type { IdentityRepo } from '../identity/identity-repo.js';
import type { Clock } from '../kernel/clock.js';
import type { KeyRing } from '../kernel/crypto/keyring.js';
import type { Logger } from '../kernel/log.js';
import { createApprovalsService } from '../oversight/approvals-service.js';
import type { ConsentService } from '../phi/consent-service.js';
import { createOutboundScreen } from '../phi/outbound-screen.js';
import type { Store } from '../store/db.js';
import { createDeliveryWorker } from './delivery-worker.js';
import { createMailResolver, type DnsLookups, loadDnsOverrides } from './dns-overrides.js';
import { createDnsRecordsService } from './dns-records.js';
import { createIdentityVerifier } from './identity-verifier.js';
import { createMailEvents } from './mail-events.js';
import type { MailConfig } from './mail-config.js';
import { createMailboxService } from './mailbox-service.js';
import { createOutboundPipeline } from './outbound-pipeline.js';
import { DEFAULT_RETRY_SCHEDULE_SECONDS } from './retry-schedule.js';
import { createReadService } from './read-service.js';
import { createSendService } from './send-service.js';
import { createSigningPool } from './signing-pool.js';
import { createSmtpSender } from './smtp-deliver.js';

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
};

/** Wires outbound mail: mailboxes, send, the approval queue and the delivery worker, PHI holds and consent. */
export const createMailModule = ({ config, store, ring, clock, logger, audit, guard, repo, consent, dns }: Deps) => {
  const db = store.db;
  const events = createMailEvents();
  const resolver = createMailResolver(loadDnsOverrides(config.dnsOverridesFile), dns);
  const signer = createSigningPool({ size: config.delivery.signingThreads, logger });
  const pipeline = createOutboundPipeline({ ring, clock, config, signer });
  // The worker is created below; senders wake it after each commit that queued mail.
  let kick = () => {};
  const onQueued = () => kick();
  const mailboxes = createMailboxService({ db, repo, guard, clock });
  const screen = createOutboundScreen({ consent });
  const mail = createSendService({ db, ring, guard, repo, clock, pipeline, screen, audit, config, onQueued });
  // Get, list, thread, tags, search and attachments of both directions.
  const reader = createReadService({ db, dialect: store.dialect, ring, guard, clock, audit });
  const approvals = createApprovalsService({
    db,
    ring,
    guard,
    audit,
    repo,
    clock,
    pipeline,
    screen,
    onQueued,
    events,
    stepUpSeconds: config.accounts?.stepUpSeconds ?? 300,
  });
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
    sweep: () => approvals.expireDue(),
  });
  kick = delivery.kick;
  const dnsRecords = createDnsRecordsService({ db });
  const identityVerifier = createIdentityVerifier({ db });
  return { mailboxes, mail, reader, approvals, delivery, resolver, signer, events, dnsRecords, identityVerifier };
};

export type MailModule = ReturnType<typeof createMailModule>;
