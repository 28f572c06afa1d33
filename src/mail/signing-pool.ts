import os from 'node:os';
import { AppError } from '../kernel/errors.js';
import type { Logger } from '../kernel/log.js';
import { createWorkerPool, workerModuleUrl } from '../kernel/worker-pool.js';
import { type SignInput, signMessage } from './sign-message.js';

/**
 * Signs messages on worker threads, so DKIM and JWS signing use the other
 * cores and leave the event loop to requests and SMTP (falls back to this
 * thread when workers cannot start or die: signing never stops).
 */
export const createSigningPool = (opts: { size?: number; logger?: Logger } = {}) => {
  const pool = createWorkerPool<SignInput, Buffer>({
    name: 'signing',
    size: opts.size ?? Math.max(1, Math.min(4, os.availableParallelism() - 1)),
    url: workerModuleUrl(import.meta.url, 'signing-worker'),
    inThread: signMessage,
    decode: (r) => {
      const raw = r as Uint8Array;
      return Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
    },
    failure: (code) => new AppError(code ?? 'sign_failed', 500, 'Signing the message failed.'),
    logger: opts.logger,
  });
  return { sign: pool.run, close: pool.close, usingThreads: pool.usingThreads, queued: pool.queued };
};

export type SigningPool = ReturnType<typeof createSigningPool>;
