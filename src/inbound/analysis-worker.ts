import { parentPort, workerData } from 'node:worker_threads';
import { loadDnsOverrides } from '../mail/dns-overrides.js';
import type { ScanOptions } from '../phi/phi-types.js';
import { analyzeMessage, type InboundEnvelope } from './analyze-message.js';
import { createAuthResolver } from './inbound-resolver.js';

/** Worker-thread side of the analysis pool: authenticates, parses, scans and tags one message per request. */
const { dnsOverridesFile, mta } = workerData as { dnsOverridesFile: string | undefined; mta: string };
const resolver = createAuthResolver(loadDnsOverrides(dnsOverridesFile));
const scanOptions = new Map<string, ScanOptions>();

parentPort?.on('message', async (m: { id: number; raw: Uint8Array; env: InboundEnvelope; domains: string[] }) => {
  try {
    const k = m.domains.join(',');
    let o = scanOptions.get(k);
    if (!o) {
      o = { orgDomains: m.domains };
      scanOptions.set(k, o);
    }
    const raw = Buffer.from(m.raw.buffer, m.raw.byteOffset, m.raw.byteLength);
    parentPort?.postMessage({ id: m.id, analysis: await analyzeMessage(raw, m.env, { resolver, mta, scanOptions: o }) });
  } catch (e) {
    parentPort?.postMessage({ id: m.id, error: (e as Error)?.name ?? 'analysis_failed' });
  }
});
