import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { MetricsSink } from '../kernel/metrics.js';

/**
 * What the store holds right now, read by `app/ops-metrics.ts` at scrape time
 * (cached for a few seconds there, so scrapes cannot hammer the store).
 * Ages are seconds; null when nothing is waiting.
 */
export type OpsSnapshot = {
  outbox: { state: 'queued' | 'sending' | 'deferred'; count: number; oldestAgeSeconds: number | null }[];
  approvals: { reason: string; count: number; oldestAgeSeconds: number | null }[];
  auditEvents: number;
  lastCheckpointAgeSeconds: number | null;
  signingQueue: number;
  analysisQueue: number;
};

const OUTBOX_STATES = ['queued', 'sending', 'deferred'] as const;

/**
 * Prometheus metrics of one server instance (its own registry: tests run
 * several in one process). Names follow the Prometheus conventions (base
 * units, `_total` counters, `_seconds`) and all start with `mailward_`
 * (CONTRACT.md, metrics). Labels are closed sets: no addresses, ids or PHI.
 */
export const createMetrics = (opts: { snapshot?: () => Promise<OpsSnapshot> } = {}) => {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'mailward_' });
  const registers = [registry];
  // prom-client names three of its default gauges `..._total`, which Prometheus reserves for counters
  // (`promtool check metrics` flags them); `mailward_nodejs_active_resources{type}` says the same.
  for (const n of ['active_handles_total', 'active_requests_total', 'active_resources_total'])
    registry.removeSingleMetric(`mailward_nodejs_${n}`);
  const requests = new Counter({
    name: 'mailward_http_requests_total',
    help: 'HTTP requests by route pattern and status',
    labelNames: ['method', 'route', 'status'] as const,
    registers,
  });
  const duration = new Histogram({
    name: 'mailward_http_request_duration_seconds',
    help: 'HTTP request duration by route pattern',
    labelNames: ['method', 'route'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers,
  });
  const deliveryAttempts = new Counter({
    name: 'mailward_delivery_attempts_total',
    help: 'Outbound delivery attempts by result and SMTP reply class (network: no SMTP reply)',
    labelNames: ['result', 'smtp_class'] as const,
    registers,
  });
  const deliveryLatency = new Histogram({
    name: 'mailward_delivery_latency_seconds',
    help: 'Seconds from queueing a message to the receiving server accepting it',
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14_400, 86_400],
    registers,
  });
  const inboundSessions = new Counter({
    name: 'mailward_smtp_inbound_sessions_total',
    help: 'Inbound SMTP sessions by outcome: accepted (at least one message stored) or the last refusing reply code',
    labelNames: ['verdict'] as const,
    registers,
  });
  const inboundMessages = new Counter({
    name: 'mailward_smtp_inbound_messages_total',
    help: 'Inbound SMTP transactions by verdict: accepted or the reply code that refused them',
    labelNames: ['verdict'] as const,
    registers,
  });
  const authResults = new Counter({
    name: 'mailward_inbound_auth_results_total',
    help: 'Sender-authentication verdicts of stored inbound messages by method (spf, dkim, dmarc, arc) and result',
    labelNames: ['method', 'result'] as const,
    registers,
  });
  const webhookAttempts = new Counter({
    name: 'mailward_webhook_attempts_total',
    help: 'Webhook delivery attempts by outcome (delivered: 2xx; retrying; failed: retry schedule exhausted)',
    labelNames: ['outcome'] as const,
    registers,
  });
  const approvalsDecided = new Counter({
    name: 'mailward_approvals_decided_total',
    help: 'Approvals decided by outcome (approved, rejected, released, expired)',
    labelNames: ['outcome'] as const,
    registers,
  });
  // Pre-set the common series to 0, so rate() and alerts see them before the first event.
  for (const r of ['delivered', 'deferred', 'bounced', 'failed'])
    deliveryAttempts.inc({ result: r, smtp_class: r === 'delivered' ? '2xx' : 'network' }, 0);
  for (const v of ['accepted', '550', '451']) {
    inboundMessages.inc({ verdict: v }, 0);
    inboundSessions.inc({ verdict: v }, 0);
  }
  for (const o of ['approved', 'rejected', 'released', 'expired']) approvalsDecided.inc({ outcome: o }, 0);
  for (const o of ['delivered', 'retrying', 'failed']) webhookAttempts.inc({ outcome: o }, 0);

  // Gauges read the store's snapshot once per scrape: their collects run together and share the read in flight.
  let scrape: Promise<OpsSnapshot> | null = null;
  const snap = () => {
    if (!opts.snapshot) return null;
    if (!scrape) {
      scrape = opts.snapshot();
      const clear = () => {
        scrape = null;
      };
      scrape.then(clear, clear);
    }
    return scrape;
  };
  const gauge = <L extends string>(
    name: string,
    help: string,
    labelNames: readonly L[],
    set: (g: Gauge<L>, s: OpsSnapshot) => void,
  ): Gauge<L> =>
    new Gauge<L>({
      name,
      help,
      labelNames,
      registers,
      async collect() {
        const p = snap();
        if (!p) return;
        this.reset();
        set(this, await p);
      },
    });
  gauge('mailward_outbox_messages', 'Outbound delivery jobs waiting, by state (queued, sending, deferred)', ['state'], (g, s) => {
    for (const st of OUTBOX_STATES) g.set({ state: st }, s.outbox.find((o) => o.state === st)?.count ?? 0);
  });
  gauge('mailward_outbox_oldest_age_seconds', 'Age of the oldest waiting delivery job, by state (0 when none)', ['state'], (g, s) => {
    for (const st of OUTBOX_STATES) g.set({ state: st }, s.outbox.find((o) => o.state === st)?.oldestAgeSeconds ?? 0);
  });
  gauge(
    'mailward_approvals_pending',
    'Approvals waiting for a reviewer, by reason code (one approval may count under several)',
    ['reason'],
    (g, s) => {
      for (const a of s.approvals) g.set({ reason: a.reason }, a.count);
    },
  );
  gauge('mailward_approvals_oldest_age_seconds', 'Age of the oldest pending approval, by reason code', ['reason'], (g, s) => {
    for (const a of s.approvals) g.set({ reason: a.reason }, a.oldestAgeSeconds ?? 0);
  });
  gauge('mailward_audit_events', 'Events in the audit log (its head sequence number)', [], (g, s) => g.set(s.auditEvents));
  gauge('mailward_audit_checkpoint_age_seconds', 'Seconds since the last signed audit checkpoint (-1: none yet)', [], (g, s) =>
    g.set(s.lastCheckpointAgeSeconds ?? -1),
  );
  gauge('mailward_signing_queue', 'DKIM and identity signing requests waiting or running in the signing pool', [], (g, s) =>
    g.set(s.signingQueue),
  );
  gauge(
    'mailward_analysis_queue',
    'Inbound messages waiting or running in the analysis pool (authentication, parsing, PHI scan)',
    [],
    (g, s) => g.set(s.analysisQueue),
  );

  // The HTTP admission queue (admission.ts): requests running, requests waiting, and those refused with 503 server_busy.
  let admissionState: (() => { inFlight: number; waiting: number }) | null = null;
  new Gauge({
    name: 'mailward_http_requests_in_flight',
    help: 'HTTP requests admitted and not yet answered (liveness, metrics and event streams not counted)',
    registers,
    collect() {
      this.set(admissionState?.().inFlight ?? 0);
    },
  });
  new Gauge({
    name: 'mailward_http_queue_waiting',
    help: 'HTTP requests waiting in the admission queue for a slot',
    registers,
    collect() {
      this.set(admissionState?.().waiting ?? 0);
    },
  });
  const admissionRejected = new Counter({
    name: 'mailward_http_rejected_total',
    help: 'HTTP requests answered 503 server_busy by the admission queue, by reason (queue_full, wait_expired)',
    labelNames: ['reason'] as const,
    registers,
  });
  for (const r of ['queue_full', 'wait_expired']) admissionRejected.inc({ reason: r }, 0);
  const admission = {
    observe: (state: () => { inFlight: number; waiting: number }) => {
      admissionState = state;
    },
    rejected: (reason: 'queue_full' | 'wait_expired') => admissionRejected.inc({ reason }),
  };

  /** The sink domain code writes to (kernel/metrics.ts). */
  const sink: MetricsSink = {
    deliveryAttempt: (result, smtpClass) => deliveryAttempts.inc({ result, smtp_class: smtpClass }),
    deliveryLatency: (s) => deliveryLatency.observe(Math.max(0, s)),
    inboundSession: (verdict) => inboundSessions.inc({ verdict }),
    inboundMessage: (verdict) => inboundMessages.inc({ verdict }),
    authResult: (method, result) => authResults.inc({ method, result }),
    approvalDecided: (outcome) => approvalsDecided.inc({ outcome }),
    webhookAttempt: (outcome) => webhookAttempts.inc({ outcome }),
  };

  /** Sets the store snapshot source once the container has it (the registry is made before the modules). */
  const setSnapshot = (fn: () => Promise<OpsSnapshot>) => {
    opts.snapshot = fn;
  };

  return { registry, requests, duration, sink, setSnapshot, admission };
};

export type HttpMetrics = ReturnType<typeof createMetrics>;
