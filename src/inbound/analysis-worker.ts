import { workerData } from 'node:worker_threads';
import { serveWorkerRequests } from '../kernel/worker-pool.js';
import { loadDnsOverrides } from '../mail/dns-overrides.js';
import type { ScanOptions } from '../phi/phi-types.js';
import type { AnalysisRequest } from './analysis-pool.js';
import { analyzeMessage } from './analyze-message.js';
import { createAuthResolver } from './inbound-resolver.js';

/** Worker-thread side of the analysis pool: authenticates, parses, scans and tags one message per request. */
const { dnsOverridesFile, mta } = workerData as { dnsOverridesFile: string | undefined; mta: string };
const resolver = createAuthResolver(loadDnsOverrides(dnsOverridesFile));
const scanOptions = new Map<string, ScanOptions>();

serveWorkerRequests<AnalysisRequest>((m) => {
  const k = m.domains.join(',');
  let o = scanOptions.get(k);
  if (!o) {
    o = { orgDomains: m.domains };
    scanOptions.set(k, o);
  }
  return analyzeMessage(Buffer.from(m.raw.buffer, m.raw.byteOffset, m.raw.byteLength), m.env, { resolver, mta, scanOptions: o });
});
