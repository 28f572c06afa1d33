import fs from 'node:fs';
import { createAccountsModule } from '../accounts/accounts-module.js';
import { createAuditLog } from '../audit/audit-log.js';
import { createKeyDirectory } from '../identity/key-directory.js';
import { createAuditService } from '../audit/audit-service.js';
import { createApiKeysService } from '../identity/api-keys-service.js';
import { createAuditReader } from '../compliance/audit-reader.js';
import { createBreachService } from '../compliance/breach-service.js';
import { createComplianceReport } from '../compliance/compliance-report.js';
import { createDisclosures } from '../compliance/disclosures.js';
import { createAuthCache } from '../identity/auth-cache.js';
import { createPart2Consents } from '../phi/part2-consents.js';
import { loadOauthKeys } from '../oauth/oauth-keys.js';
import { createOauthRecordsRepo } from '../oauth/oauth-records-repo.js';
import { createOauthAuditHook } from '../oauth/oauth-audit.js';
import { createOauthConsent } from '../oauth/oauth-consent.js';
import { createOauthServer } from '../oauth/oauth-server.js';
import { createGrantsService } from '../identity/grants-service.js';
import { createApprovalQueue } from '../oversight/approval-queue.js';
import { createReviewNotifications } from '../oversight/review-notifications.js';
import { createBreachNoticeSender } from './breach-notices.js';
import { createReviewNoticeSender } from './review-notices.js';
import { startWebhookDisabledNotices } from './webhook-disabled-notices.js';
import { createApprovalsService } from '../oversight/approvals-service.js';
import { createGuard } from '../identity/guard.js';
import { createIdentityRepo } from '../identity/identity-repo.js';
import { createIdentityService } from '../identity/identity-service.js';
import { createRateLimiter } from '../identity/rate-limiter.js';
import { activeSigningKey, openPrivateKey } from '../identity/signing-keys.js';
import { type Clock, offsetFileClock, systemClock } from '../kernel/clock.js';
import type { KeyRing } from '../kernel/crypto/keyring.js';
import { AppError } from '../kernel/errors.js';
import { createLogger, type Logger } from '../kernel/log.js';
import { ensurePrivateDir } from '../kernel/private-files.js';
import { openStore, type Store } from '../store/db.js';
import { createInboundModule } from '../inbound/inbound-module.js';
import { type DnsLookups, loadDnsOverrides } from '../mail/dns-overrides.js';
import { createMailModule } from '../mail/mail-module.js';
import { createMetrics } from '../http/metrics.js';
import { createConsentService } from '../phi/consent-service.js';
import { loadPhiModel } from '../phi/phi-model.js';
import { migrateToLatest } from '../store/migrate.js';
import { createVaultRepo } from '../vault/vault-repo.js';
import { createVaultService } from '../vault/vault-service.js';
import { type HostLookup, overridingLookup } from '../webhooks/url-safety.js';
import { createWebhooksModule } from '../webhooks/webhooks-module.js';
import type { Config } from './config.js';
import { initOrganization, type InitInput } from './init.js';
import { createOpsSnapshot } from './ops-metrics.js';
import { assertRingOpensStore, keyVersionsInUse } from './key-rotation.js';
import { checkKeyRing, loadKeyRing, masterKeyPath, registerKeyRing, storeHasSealedData } from './master-key.js';
import { SEALED_COLUMNS } from './sealed-columns.js';

export type ContainerOptions = {
  clock?: Clock;
  logger?: Logger;
  /** Generate <data dir>/master.key if it is missing (init and first start). */
  createMasterKey?: boolean;
  store?: Store;
  /** DNS look-ups of outbound delivery (tests inject fakes); node:dns by default. */
  dns?: DnsLookups;
  /** Address look-ups of webhook hosts (tests inject fakes); MAILWARD_DNS_OVERRIDES A/AAAA, then node:dns. */
  hostLookup?: HostLookup;
};

/**
 * Wires every module. Order matters for safety: the master key is checked
 * against the store before migrations or anything else touch data.
 */
export const createContainer = async (config: Config, opts: ContainerOptions = {}) => {
  // MAILWARD_TEST_CLOCK_FILE moves time in tests that start server processes; ignored unless NODE_ENV=test.
  const testClockFile = process.env.NODE_ENV === 'test' ? process.env.MAILWARD_TEST_CLOCK_FILE : undefined;
  const clock = opts.clock ?? (testClockFile ? offsetFileClock(testClockFile, (f) => fs.readFileSync(f, 'utf8')) : systemClock);
  const logger = opts.logger ?? createLogger({ level: config.logLevel });
  // The data dir holds the store, master.key and TLS keys: the owner's alone (kernel/private-files.ts).
  if (fs.existsSync(config.dataDir) && ensurePrivateDir(config.dataDir)) {
    logger.warn({ path: config.dataDir }, 'data directory was readable by other users; its mode is now 0700');
  }
  // A configured local PHI model is loaded before anything else opens; a missing or broken one stops the start (fail closed).
  const phiModel = await loadPhiModel(config);
  // At trace level every statement is logged (its duration, never its text or values): operators and tests see
  // what a process asks of the store, e.g. that an idle wait_for_email asks nothing.
  const onQuery = logger.isLevelEnabled('trace') ? (ms: number) => logger.trace({ ms }, 'store query') : undefined;
  const store = opts.store ?? openStore({ ...config.database, ...(onQuery ? { onQuery } : {}) });
  let ring: KeyRing;
  try {
    const keyMissing = !config.masterKey && !config.masterKeys && !fs.existsSync(masterKeyPath(config.dataDir));
    // A missing key may only be generated for a store that has never sealed anything.
    if (keyMissing && opts.createMasterKey && (await storeHasSealedData(store))) {
      throw new AppError(
        'master_key_missing',
        500,
        `The store holds sealed data but ${masterKeyPath(config.dataDir)} is missing and MAILWARD_MASTER_KEY is not set.`,
      );
    }
    ring = loadKeyRing({
      masterKey: config.masterKey,
      masterKeys: config.masterKeys,
      dataDir: config.dataDir,
      create: !!opts.createMasterKey,
    });
    await checkKeyRing(store, ring);
  } catch (e) {
    await store.destroy();
    throw e;
  }
  try {
    await migrateToLatest(store);
    await checkKeyRing(store, ring);
    // A retired version may be dropped only once nothing is sealed under it: refuse a ring that cannot open every value.
    await assertRingOpensStore(store, ring, SEALED_COLUMNS);
  } catch (e) {
    await store.destroy();
    throw e;
  }
  await registerKeyRing(store, ring, clock);

  const db = store.db;
  const audit = createAuditService({
    db,
    dialect: store.dialect,
    clock,
    integrateMs: config.auditIntegrateMs,
    logger,
    ...(store.lead ? { lead: store.lead } : {}),
  });
  // Every process runs the integrator, woken by commits that wrote audit events in any process sharing the store;
  // the leader (one per installation, store.lead) integrates on wake-ups and the chain head's lock lets one
  // integrate at a time (integrator.ts).
  const stopAuditWakes = store.listen(audit.wakeIntegrator);
  audit.startIntegrator();
  const auditLog = createAuditLog({
    db,
    dialect: store.dialect,
    clock,
    audit,
    retentionDays: config.auditRetentionDays,
    checkpointDir: config.checkpointDir,
    witnesses: config.witnesses,
    logger,
    verifySource:
      config.database.kind === 'sqlite' ? { kind: 'sqlite', file: config.database.file } : { kind: 'postgres', url: config.database.url },
    keys: {
      active: () => activeSigningKey(db, 'audit-ed25519', null),
      byKid: (kid) =>
        db.selectFrom('signing_keys').selectAll().where('kid', '=', kid).where('purpose', '=', 'audit-ed25519').executeTakeFirst(),
      openPrivate: (row) => openPrivateKey(ring, row),
      all: () => db.selectFrom('signing_keys').selectAll().where('purpose', '=', 'audit-ed25519').execute(),
    },
  });
  const keyDirectory = createKeyDirectory({ db, ring, clock, audit, logVerifierKeys: () => auditLog.checkpoints.verifierKeys() });
  const authCache = createAuthCache({ db, pollMs: config.authCachePollMs, listen: store.listen });
  await authCache.start();
  const guard = createGuard({ db, audit, authCache });
  const repo = createIdentityRepo();
  // The OAuth 2.1 authorization server's store (codes and tokens hashed), each write with its audit event; identity
  // changes that end a delegation revoke its grants there, in their own transaction.
  const oauthRecords = createOauthRecordsRepo({ db, clock, audit: createOauthAuditHook({ audit, identity: repo }) });
  const identity = createIdentityService({ db, repo, guard, clock, revokeOauth: oauthRecords.revokeDelegation });
  // The OAuth 2.1 authorization server of /mcp: its codes and tokens in the store (hashed), its secret sealed there.
  const oauth = createOauthServer({
    db,
    records: oauthRecords,
    identity: repo,
    audit,
    keys: await loadOauthKeys(db, ring),
    logger,
    config: { publicUrl: config.accounts.publicUrl, ...config.oauth },
  });
  const oauthConsent = createOauthConsent({ db, identity: repo, guard, clock });
  const apiKeys = createApiKeysService({ db, repo, guard, audit, clock, authCache, oauthLive: oauth.isLive });
  const rateLimiter = createRateLimiter({ db, clock, limitPerMinute: config.rateLimitPerMinute, syncMs: config.rateLimitSyncMs });
  rateLimiter.start();
  const vault = createVaultService({
    db,
    repo: createVaultRepo({ dialect: store.dialect }),
    guard,
    audit,
    ring,
    clock,
    retentionDays: config.auditRetentionDays,
  });

  // Human sign-in: sessions, factors, SSO (the console and session-authenticated REST calls).
  const accounts = createAccountsModule({ db, identity: repo, guard, audit, ring, clock, config: config.accounts });

  const consent = createConsentService({ db, guard, clock });
  // 42 CFR 2.31 consents and the organisation's category-mismatch rule.
  const part2Consents = createPart2Consents({ db, guard, clock });
  // Clinicians' grants to agents (sending on behalf of a clinician).
  const grants = createGrantsService({ db, guard, clock });
  // Reading the audit log for people (roles, audited reads, proofs, legal holds): above audit, which stays a sink.
  const auditReader = createAuditReader({ audit, auditLog, guard });
  // Accounting of disclosures (45 CFR 164.528), through the recipient index.
  const disclosures = createDisclosures({ audit, auditLog, guard, ring });
  // The evidence pack (`mailward compliance report`, `GET /v1/compliance/report`, the console).
  const complianceReport = createComplianceReport({
    db,
    audit,
    auditLog,
    clock,
    guard,
    sealedByVersion: async () =>
      (await keyVersionsInUse(store, SEALED_COLUMNS)).map((u) => ({ version: u.version, label: u.label, count: u.count })),
  });
  // One registry per container: tests run several servers in one process.
  const metrics = createMetrics();
  const mailModule = createMailModule({
    config,
    store,
    ring,
    clock,
    logger,
    audit,
    guard,
    repo,
    consent,
    dns: opts.dns,
    phiModel,
    sweep: () => approvals.expireDue(),
    metrics: metrics.sink,
  });
  // Oversight decides, mail moves messages: the approvals service sees mail only through its port (`held`).
  const approvals = createApprovalsService({
    db,
    ring,
    guard,
    audit,
    repo,
    clock,
    held: mailModule.held,
    screen: mailModule.screen,
    onQueued: mailModule.onQueued,
    metrics: metrics.sink,
    // 21 CFR 11.200: a decision made with a session needs a recent second factor.
    stepUpSeconds: config.accounts.stepUpSeconds,
  });
  const mail = { ...mailModule, approvals };
  // The reviewer console's queue: the approvals with what a reviewer triages by (subject, recipients, agent).
  const approvalQueue = createApprovalQueue({ db, guard, held: mailModule.held, clock });
  // Reviewers are told when something waits: count-only digests and escalations, sent as mail from notifications@.
  const noticeSender = createReviewNoticeSender({ db, repo, audit, clock, send: (ctx, id, body) => mailModule.mail.send(ctx, id, body) });
  // The breach workbench (45 CFR 164.400-414): notices from breach-notices@, deadline reminders from notifications@.
  const breaches = createBreachService({
    db,
    guard,
    ring,
    clock,
    consent,
    sendNotice: createBreachNoticeSender({ db, repo, audit, clock, send: (ctx, id, body) => mailModule.mail.send(ctx, id, body) }),
    remind: noticeSender,
  });
  const reviewNotifications = createReviewNotifications({
    db,
    guard,
    audit,
    clock,
    send: noticeSender,
    consoleUrl: config.accounts.publicUrl ?? null,
    defaultBatchMinutes: config.notifyBatchMinutes,
    escalateSeconds: config.approvalEscalateSeconds,
  });
  // Inbound SMTP: `serve` starts the listener over inbound.receiver.
  const inbound = createInboundModule({
    config,
    store,
    ring,
    clock,
    logger,
    audit,
    repo,
    identityGeneration: authCache.generation,
    metrics: metrics.sink,
  });
  metrics.setSnapshot(
    createOpsSnapshot({
      db,
      clock,
      signingQueue: mail.signer.queued,
      analysisQueue: inbound.pool.queued,
      cacheMs: config.metricsCacheMs,
    }),
  );

  // Events out: the events API, webhooks and the stream, over the same event feed as mail.
  const webhooks = createWebhooksModule({
    config: config.webhooks,
    store,
    ring,
    clock,
    logger,
    audit,
    guard,
    feed: mail.events,
    lookup: opts.hostLookup ?? overridingLookup(loadDnsOverrides(config.dnsOverridesFile)),
    metrics: metrics.sink,
  });

  const init = (input: InitInput, o: { onlyIfEmpty?: boolean } = {}) => initOrganization({ db, ring, clock, audit }, input, o);

  return {
    config,
    clock,
    logger,
    store,
    ring,
    audit,
    auditLog,
    auditReader,
    disclosures,
    breaches,
    complianceReport,
    part2Consents,
    grants,
    keyDirectory,
    guard,
    identity,
    apiKeys,
    oauth,
    oauthConsent,
    rateLimiter,
    vault,
    mail,
    approvalQueue,
    reviewNotifications,
    /** `serve`: mails admins when a webhook endpoint is disabled (webhook-disabled-notices.ts). */
    startWebhookDisabledNotices: () =>
      startWebhookDisabledNotices({ db, feed: mail.events, send: noticeSender, logger, consoleUrl: config.accounts.publicUrl ?? null }),
    inbound,
    consent,
    metrics,
    accounts,
    webhooks,
    init,
    close: async () => {
      await webhooks.worker.stop();
      await mail.delivery.stop();
      await mail.signer.close();
      await inbound.close();
      authCache.stop();
      vault.clearKeyCache();
      await rateLimiter.stop();
      stopAuditWakes();
      await audit.stopIntegrator();
      await store.destroy();
      await phiModel?.release();
    },
  };
};

export type Container = Awaited<ReturnType<typeof createContainer>>;
