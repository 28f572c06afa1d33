import { Worker } from 'node:worker_threads';
import { AppError } from '../kernel/errors.js';
import type { Logger } from '../kernel/log.js';
import type { InboundAnalysis, InboundEnvelope } from './analyze-message.js';

type Analyze = (raw: Buffer, env: InboundEnvelope, domains: string[]) => Promise<InboundAnalysis>;
type Pending = { resolve: (a: InboundAnalysis) => void; reject: (e: unknown) => void; raw: Buffer; env: InboundEnvelope; domains: string[]; worker: Worker };

/**
 * Runs message analysis (DKIM/SPF/DMARC/ARC, MIME parsing, PHI scan) on
 * worker threads, so the event loop keeps to SMTP sessions, sealing and the
 * store. Falls back to `inThread` when workers cannot start (TypeScript
 * sources under a test runner) or die: receiving never stops, it only gets slower.
 */
export const createAnalysisPool = (opts: { size: number; dnsOverridesFile: string | undefined; mta: string; inThread: Analyze; logger?: Logger }) => {
  const fromSource = import.meta.url.endsWith('.ts');
  const url = new URL(fromSource ? './analysis-worker.ts' : './analysis-worker.js', import.meta.url);
  const workers: { w: Worker; busy: number }[] = [];
  const pending = new Map<number, Pending>();
  let nextId = 1;
  let broken = opts.size === 0;
  let closing = false;

  const fail = (w: Worker) => {
    broken = true;
    opts.logger?.warn('analysis workers unavailable; analysing in the main thread');
    for (const [id, p] of pending) {
      if (p.worker !== w) continue;
      pending.delete(id);
      opts.inThread(p.raw, p.env, p.domains).then(p.resolve, p.reject);
    }
  };

  const spawn = () => {
    try {
      const workerData = { dnsOverridesFile: opts.dnsOverridesFile, mta: opts.mta };
      const w = fromSource
        ? new Worker(`import('tsx/esm/api').then((m) => m.register()).then(() => import(${JSON.stringify(url.href)}))`, { eval: true, workerData })
        : new Worker(url, { workerData });
      w.unref();
      w.on('message', (m: { id: number; analysis?: InboundAnalysis; error?: string }) => {
        const p = pending.get(m.id);
        if (!p) return;
        pending.delete(m.id);
        const slot = workers.find((x) => x.w === w);
        if (slot) slot.busy--;
        if (m.analysis) p.resolve(m.analysis);
        else p.reject(new AppError('analysis_failed', 503, 'The message could not be analysed.', { temporary: true }));
      });
      w.on('error', () => fail(w));
      w.on('exit', (code) => {
        if (code !== 0 && !closing) fail(w);
      });
      workers.push({ w, busy: 0 });
    } catch {
      broken = true;
    }
  };

  const analyze: Analyze = (raw, env, domains) => {
    if (!broken && workers.length === 0) for (let i = 0; i < opts.size; i++) spawn();
    if (broken || workers.length === 0) return opts.inThread(raw, env, domains);
    const slot = workers.reduce((a, b) => (b.busy < a.busy ? b : a));
    const id = nextId++;
    slot.busy++;
    return new Promise<InboundAnalysis>((resolve, reject) => {
      pending.set(id, { resolve, reject, raw, env, domains, worker: slot.w });
      slot.w.postMessage({ id, raw, env, domains });
    });
  };

  const close = async () => {
    closing = true;
    await Promise.all(workers.map((x) => x.w.terminate()));
    workers.length = 0;
  };

  return { analyze, close, usingThreads: () => !broken && workers.length > 0 };
};

export type AnalysisPool = ReturnType<typeof createAnalysisPool>;
