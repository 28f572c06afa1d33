import { AppError } from '../kernel/errors.js';
import type { Logger } from '../kernel/log.js';
import { createWorkerPool, workerModuleUrl } from '../kernel/worker-pool.js';
import type { InboundAnalysis, InboundEnvelope } from './analyze-message.js';

type Analyze = (raw: Buffer, env: InboundEnvelope, domains: string[]) => Promise<InboundAnalysis>;
export type AnalysisRequest = { raw: Uint8Array; env: InboundEnvelope; domains: string[] };

/**
 * Runs message analysis (DKIM/SPF/DMARC/ARC, MIME parsing, PHI scan) on
 * worker threads, so the event loop keeps to SMTP sessions, sealing and the
 * store (falls back to `inThread` when workers cannot start or die).
 */
export const createAnalysisPool = (opts: {
  size: number;
  dnsOverridesFile: string | undefined;
  mta: string;
  inThread: Analyze;
  logger?: Logger;
}) => {
  const pool = createWorkerPool<AnalysisRequest, InboundAnalysis>({
    name: 'analysis',
    size: opts.size,
    url: workerModuleUrl(import.meta.url, 'analysis-worker'),
    workerData: { dnsOverridesFile: opts.dnsOverridesFile, mta: opts.mta },
    inThread: (r) => opts.inThread(Buffer.from(r.raw.buffer, r.raw.byteOffset, r.raw.byteLength), r.env, r.domains),
    failure: () => new AppError('analysis_failed', 503, 'The message could not be analysed.', { temporary: true }),
    logger: opts.logger,
  });
  const analyze: Analyze = (raw, env, domains) => pool.run({ raw, env, domains });
  return { analyze, close: pool.close, usingThreads: pool.usingThreads, queued: pool.queued };
};

export type AnalysisPool = ReturnType<typeof createAnalysisPool>;
