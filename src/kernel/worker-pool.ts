import { parentPort, Worker } from 'node:worker_threads';
import type { AppError } from './errors.js';
import type { Logger } from './log.js';

/**
 * The URL of a worker module next to `base` (a module's import.meta.url):
 * `.ts` when running from TypeScript sources (tsx), `.js` from the build.
 */
export const workerModuleUrl = (base: string, name: string) => new URL(`./${name}${base.endsWith('.ts') ? '.ts' : '.js'}`, base);

type Pending<I, O> = { resolve: (o: O) => void; reject: (e: unknown) => void; input: I; worker: Worker };

export type WorkerPoolOptions<I, O> = {
  /** What the workers do, for the log line when they fail ("signing", "analysis"). */
  name: string;
  size: number;
  /** The worker module (see workerModuleUrl); it calls serveWorkerRequests. */
  url: URL;
  workerData?: unknown;
  /** The same work in this thread: used when workers cannot start or die. */
  inThread: (input: I) => Promise<O>;
  /** Rebuilds the result after the structured clone (e.g. a Uint8Array back into a Buffer). */
  decode?: (result: unknown) => O;
  /** The error a caller gets when the worker reports a failure (its error code, never content). */
  failure: (code: string | undefined) => AppError;
  logger?: Logger;
};

/**
 * CPU-heavy work (DKIM signing, message analysis) on worker threads, so the
 * event loop keeps to requests, SMTP sessions and the store. Falls back to
 * `inThread` when workers cannot start (TypeScript sources under a test
 * runner) or die: the work never stops, it only gets slower.
 */
export const createWorkerPool = <I, O>(o: WorkerPoolOptions<I, O>) => {
  const workers: { w: Worker; busy: number }[] = [];
  const pending = new Map<number, Pending<I, O>>();
  let nextId = 1;
  let broken = o.size === 0;
  let closing = false;

  const fail = (w: Worker) => {
    // Finish what this worker held in this thread; stop using workers from now on.
    broken = true;
    o.logger?.warn(`${o.name} workers unavailable; running in the main thread`);
    for (const [id, p] of pending) {
      if (p.worker !== w) continue;
      pending.delete(id);
      o.inThread(p.input).then(p.resolve, p.reject);
    }
  };

  const spawn = () => {
    try {
      // From TypeScript sources (tsx), the worker registers tsx itself before loading the module.
      const w = o.url.pathname.endsWith('.ts')
        ? new Worker(`import('tsx/esm/api').then((m) => m.register()).then(() => import(${JSON.stringify(o.url.href)}))`, {
            eval: true,
            workerData: o.workerData,
            name: o.name,
          })
        : new Worker(o.url, { workerData: o.workerData, name: o.name });
      w.unref();
      w.on('message', (m: { id: number; result?: unknown; failed?: true; code?: string }) => {
        const p = pending.get(m.id);
        if (!p) return;
        pending.delete(m.id);
        const slot = workers.find((x) => x.w === w);
        if (slot) slot.busy--;
        if (m.failed) p.reject(o.failure(m.code));
        else p.resolve(o.decode ? o.decode(m.result) : (m.result as O));
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

  // Requests accepted and not yet answered, on threads or in this one (the pool's queue depth in /metrics).
  let inFlight = 0;
  const run = (input: I): Promise<O> => {
    inFlight++;
    return dispatch(input).finally(() => {
      inFlight--;
    });
  };

  const dispatch = (input: I): Promise<O> => {
    if (!broken && workers.length === 0) for (let i = 0; i < o.size; i++) spawn();
    if (broken || workers.length === 0) return o.inThread(input);
    const slot = workers.reduce((a, b) => (b.busy < a.busy ? b : a));
    const id = nextId++;
    slot.busy++;
    return new Promise<O>((resolve, reject) => {
      pending.set(id, { resolve, reject, input, worker: slot.w });
      slot.w.postMessage({ id, input });
    });
  };

  const close = async () => {
    closing = true;
    await Promise.all(workers.map((x) => x.w.terminate()));
    workers.length = 0;
  };

  /** True while the work runs on worker threads (false after a fallback). */
  const usingThreads = () => !broken && workers.length > 0;

  return { run, close, usingThreads, queued: () => inFlight };
};

/** Worker-thread side of a pool: answers each request with `fn`'s result or its error code (never a message: it may hold content). */
export const serveWorkerRequests = <I>(fn: (input: I) => Promise<unknown>) => {
  parentPort?.on('message', async (m: { id: number; input: I }) => {
    try {
      parentPort?.postMessage({ id: m.id, result: await fn(m.input) });
    } catch (e) {
      const code = (e as { code?: unknown })?.code;
      parentPort?.postMessage({ id: m.id, failed: true, code: typeof code === 'string' ? code : undefined });
    }
  });
};
