import os from 'node:os';
import { Worker } from 'node:worker_threads';
import { AppError } from '../kernel/errors.js';
import type { Logger } from '../kernel/log.js';
import { type SignInput, signMessage } from './sign-message.js';

type Pending = { resolve: (b: Buffer) => void; reject: (e: unknown) => void; input: SignInput };

/**
 * Signs messages on worker threads, so DKIM and JWS signing use the other
 * cores and leave the event loop to requests and SMTP. Falls back to signing
 * in this thread when workers cannot start (e.g. TypeScript sources under a
 * test runner) or die: signing never stops, it only gets slower.
 */
export const createSigningPool = (opts: { size?: number; logger?: Logger } = {}) => {
  const size = opts.size ?? Math.max(1, Math.min(4, os.availableParallelism() - 1));
  const fromSource = import.meta.url.endsWith('.ts');
  const url = new URL(fromSource ? './signing-worker.ts' : './signing-worker.js', import.meta.url);
  const workers: { w: Worker; busy: number }[] = [];
  const pending = new Map<number, Pending & { worker: Worker }>();
  let nextId = 1;
  let broken = size === 0;
  let closing = false;

  const fail = (w: Worker) => {
    // Finish what this worker held in this thread; stop using workers from now on.
    broken = true;
    opts.logger?.warn('signing workers unavailable; signing in the main thread');
    for (const [id, p] of pending) {
      if (p.worker !== w) continue;
      pending.delete(id);
      signMessage(p.input).then(p.resolve, p.reject);
    }
  };

  const spawn = () => {
    try {
      // From TypeScript sources (tsx), the worker registers tsx itself before loading the module.
      const w = fromSource
        ? new Worker(`import('tsx/esm/api').then((m) => m.register()).then(() => import(${JSON.stringify(url.href)}))`, { eval: true })
        : new Worker(url);
      w.unref();
      w.on('message', (m: { id: number; raw?: Uint8Array; error?: string }) => {
        const p = pending.get(m.id);
        if (!p) return;
        pending.delete(m.id);
        const slot = workers.find((x) => x.w === w);
        if (slot) slot.busy--;
        if (m.raw) p.resolve(Buffer.from(m.raw.buffer, m.raw.byteOffset, m.raw.byteLength));
        else p.reject(new AppError(m.error ?? 'sign_failed', 500, 'Signing the message failed.'));
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

  const sign = (input: SignInput): Promise<Buffer> => {
    if (!broken && workers.length === 0) for (let i = 0; i < size; i++) spawn();
    if (broken || workers.length === 0) return signMessage(input);
    const slot = workers.reduce((a, b) => (b.busy < a.busy ? b : a));
    const id = nextId++;
    slot.busy++;
    return new Promise<Buffer>((resolve, reject) => {
      pending.set(id, { resolve, reject, input, worker: slot.w });
      slot.w.postMessage({ id, input });
    });
  };

  const close = async () => {
    closing = true;
    await Promise.all(workers.map((x) => x.w.terminate()));
    workers.length = 0;
  };

  /** True while signing runs on worker threads (false after a fallback). */
  const usingThreads = () => !broken && workers.length > 0;

  return { sign, close, usingThreads };
};

export type SigningPool = ReturnType<typeof createSigningPool>;
