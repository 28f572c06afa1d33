import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { sendProblem } from './problem.js';

/** MAILWARD_HTTP_MAX_IN_FLIGHT, MAILWARD_HTTP_QUEUE_LIMIT, MAILWARD_HTTP_QUEUE_WAIT_MS (0 in flight: no admission control). */
export type AdmissionConfig = { maxInFlight: number; queueLimit: number; queueWaitMs: number };

/**
 * Routes that never wait and are never refused: liveness and metrics must answer when the server is saturated (that
 * is when they are read), and long-lived streams would hold a slot for as long as they stay open.
 */
export const ADMISSION_EXEMPT_ROUTES: ReadonlySet<string> = new Set(['/healthz', '/metrics', '/v1/events/stream', '/console/queue/stream']);

type Waiter = { admit: () => void; timer: NodeJS.Timeout; done: boolean };

/** Observers of the queue, for /metrics (closed labels: no route, key or address). */
export type AdmissionObserver = { rejected: (reason: 'queue_full' | 'wait_expired') => void };

/**
 * A bounded admission queue in front of every request handler: at most `maxInFlight` requests run at once, at most
 * `queueLimit` more wait first come, first served, each at most `queueWaitMs`; past either bound the request is
 * answered 503 `server_busy` with `Retry-After` before any work is done for it (no key check, no body read).
 * Shedding at the edge keeps every admitted request's wait bounded instead of letting all of them slow down together.
 *
 * Written here rather than taken from a library: @fastify/under-pressure sheds on event-loop delay and memory but has
 * no queue, and the general-purpose promise queues (p-limit, p-queue) neither bound the wait nor know when a fastify
 * response has ended; what is needed is a counter and a FIFO tied to the response's `close` event.
 */
export const createAdmission = (cfg: AdmissionConfig, observer?: AdmissionObserver) => {
  const waiters: Waiter[] = [];
  let head = 0;
  let inFlight = 0;
  // Waiters that left (timed out, client gone) stay in the array until reached, so the live count is kept apart.
  let live = 0;
  const waiting = () => live;
  // As store_busy: a slot frees within a request's time, so one second is a fair first back-off.
  const retryAfter = 1;

  const next = () => {
    while (head < waiters.length) {
      const w = waiters[head++]!;
      if (head > 1024 && head * 2 > waiters.length) {
        waiters.splice(0, head);
        head = 0;
      }
      if (w.done) continue;
      w.done = true;
      live--;
      clearTimeout(w.timer);
      w.admit();
      return;
    }
    waiters.length = 0;
    head = 0;
    inFlight--;
  };

  const refuse = (req: FastifyRequest, reply: FastifyReply, reason: 'queue_full' | 'wait_expired') => {
    observer?.rejected(reason);
    reply.header('retry-after', String(retryAfter));
    return sendProblem(reply, req, 503, 'server_busy', 'The server has too many requests in progress; retry after Retry-After seconds.', {
      temporary: true,
      retry_after: retryAfter,
    });
  };

  /** The root onRequest hook (registered before every other hook, so a refused request costs no key check). */
  const hook = async (req: FastifyRequest, reply: FastifyReply) => {
    if (cfg.maxInFlight === 0) return;
    const route = req.routeOptions.url;
    if (route !== undefined && ADMISSION_EXEMPT_ROUTES.has(route)) return;
    // The slot is given back when the response is done or the connection is gone (`close` fires in both cases),
    // exactly once, so an aborted request can neither leak a slot nor free two.
    const holdSlot = () => {
      let held = true;
      reply.raw.once('close', () => {
        if (held) {
          held = false;
          next();
        }
      });
    };
    if (inFlight < cfg.maxInFlight) {
      inFlight++;
      holdSlot();
      return;
    }
    if (waiting() >= cfg.queueLimit) return refuse(req, reply, 'queue_full');
    const admitted = await new Promise<boolean>((resolve) => {
      const w: Waiter = {
        done: false,
        // The slot passes from the finished request to this one directly: inFlight stays as it was.
        admit: () => resolve(true),
        timer: setTimeout(() => {
          w.done = true;
          live--;
          resolve(false);
        }, cfg.queueWaitMs),
      };
      waiters.push(w);
      live++;
      // A client that goes away while waiting leaves the queue at once.
      reply.raw.once('close', () => {
        if (!w.done) {
          w.done = true;
          live--;
          clearTimeout(w.timer);
          resolve(false);
        }
      });
    });
    if (!admitted) {
      if (!reply.raw.destroyed) return refuse(req, reply, 'wait_expired');
      // The client left while waiting: nothing is left to answer, and the handler must not run.
      reply.hijack();
      return;
    }
    if (reply.raw.destroyed) {
      // Admitted just as the client left: hand the slot on at once and do no work for it.
      next();
      reply.hijack();
      return;
    }
    holdSlot();
  };

  return { hook, inFlight: () => inFlight, waiting };
};

export type Admission = ReturnType<typeof createAdmission>;

/** Mounts `admission` as the first onRequest hook of `app` (the root instance, so it covers every route). */
export const mountAdmission = (app: FastifyInstance, admission: Admission) => {
  app.addHook('onRequest', admission.hook);
};
