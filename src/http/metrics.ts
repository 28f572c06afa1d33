import { Counter, collectDefaultMetrics, Histogram, Registry } from 'prom-client';

/** Prometheus metrics of one server instance (its own registry: tests run several in one process). */
export const createHttpMetrics = () => {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'mailward_' });
  const requests = new Counter({
    name: 'mailward_http_requests_total',
    help: 'HTTP requests by route pattern and status',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [registry],
  });
  const duration = new Histogram({
    name: 'mailward_http_request_duration_seconds',
    help: 'HTTP request duration by route pattern',
    labelNames: ['method', 'route'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [registry],
  });
  return { registry, requests, duration };
};

export type HttpMetrics = ReturnType<typeof createHttpMetrics>;
