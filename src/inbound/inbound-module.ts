import os from 'node:os';
import type { AuditService } from '../audit/audit-service.js';
import type { IdentityRepo } from '../identity/identity-repo.js';
import type { Clock } from '../kernel/clock.js';
import type { KeyRing } from '../kernel/crypto/keyring.js';
import type { Logger } from '../kernel/log.js';
import type { MetricsSink } from '../kernel/metrics.js';
import { loadDnsOverrides } from '../mail/dns-overrides.js';
import type { ScanOptions } from '../phi/phi-types.js';
import type { Store } from '../store/db.js';
import { createAnalysisPool } from './analysis-pool.js';
import { analyzeMessage } from './analyze-message.js';
import { createCommitBatcher } from './commit-batcher.js';
import type { InboundConfig } from './inbound-config.js';
import { createAuthResolver } from './inbound-resolver.js';
import { createReceiveService } from './receive-service.js';

type Deps = {
  config: InboundConfig;
  store: Store;
  ring: KeyRing;
  clock: Clock;
  logger: Logger;
  audit: AuditService;
  repo: IdentityRepo;
  identityGeneration?: () => number;
  metrics?: MetricsSink;
};

/** Wires inbound mail: sender authentication, analysis and the receive service. The SMTP listener is started by `serve`. */
export const createInboundModule = ({ config, store, ring, clock, logger, audit, repo, identityGeneration, metrics }: Deps) => {
  const resolver = createAuthResolver(loadDnsOverrides(config.dnsOverridesFile));
  const mta = config.inbound.hostname ?? os.hostname();
  // One options object per set of organisation domains: the scanner caches its compiled form per object.
  const scanOptions = new Map<string, ScanOptions>();
  const optionsFor = (domains: string[]) => {
    const k = [...domains].sort().join(',');
    let o = scanOptions.get(k);
    if (!o) {
      o = { orgDomains: domains };
      scanOptions.set(k, o);
    }
    return o;
  };
  const pool = createAnalysisPool({
    size: config.inbound.analysisThreads,
    dnsOverridesFile: config.dnsOverridesFile,
    mta,
    logger,
    inThread: (raw, env, domains) => analyzeMessage(raw, env, { resolver, mta, scanOptions: optionsFor(domains) }),
  });
  // Messages arriving together share a transaction; each is acknowledged only after its commit. The batcher waits
  // up to MAILWARD_INBOUND_GATHER_MS for messages still in analysis (receiver.arriving), so they share one too.
  let arriving = () => 0;
  const commit = createCommitBatcher(store.db, { arriving: () => arriving(), gatherMs: config.inbound.gatherMs ?? 5 });
  const receiver = createReceiveService({
    db: store.db,
    ring,
    clock,
    audit,
    repo,
    logger,
    approvalTtlSeconds: config.approvalTtlSeconds,
    identityGeneration,
    analyze: pool.analyze,
    commit,
    metrics,
  });
  arriving = receiver.arriving;
  return { receiver, resolver, pool, close: () => pool.close() };
};

export type InboundModule = ReturnType<typeof createInboundModule>;
