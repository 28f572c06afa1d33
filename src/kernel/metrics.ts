/**
 * What domain code tells the operator's metrics, without importing a metrics
 * library (STYLE.md, dependency direction: prom-client lives at the edge,
 * `http/metrics.ts`, wired by `app/`). Label values are small closed sets:
 * never addresses, ids or anything that could identify a patient (45 CFR
 * 164.514: metrics leave the PHI boundary).
 */
export type DeliveryResult = 'delivered' | 'deferred' | 'bounced' | 'failed';
/** The reply class of an attempt: RFC 5321 4.2.1 (2yz, 4yz, 5yz), or `network` when no SMTP reply came (DNS, TCP, TLS). */
export type SmtpClass = '2xx' | '4xx' | '5xx' | 'network';
/** What one inbound SMTP transaction or session ended with: accepted, or the reply code that refused it. */
export type InboundVerdict = 'accepted' | 'none' | '421' | '450' | '451' | '452' | '530' | '550' | '552' | '554';

export type MetricsSink = {
  deliveryAttempt: (result: DeliveryResult, smtpClass: SmtpClass) => void;
  /** Seconds from queueing to the receiving server's 250. */
  deliveryLatency: (seconds: number) => void;
  inboundSession: (verdict: InboundVerdict) => void;
  inboundMessage: (verdict: InboundVerdict) => void;
  /** One sender-authentication verdict of a stored message (method spf, dkim, dmarc, arc; result pass, fail, none...). */
  authResult: (method: 'spf' | 'dkim' | 'dmarc' | 'arc', result: string) => void;
  approvalDecided: (outcome: 'approved' | 'rejected' | 'released' | 'expired') => void;
  /** One webhook attempt: `delivered` (2xx), `retrying`, or `failed` (schedule exhausted). */
  webhookAttempt?: (outcome: 'delivered' | 'retrying' | 'failed') => void;
};

export const noopMetrics: MetricsSink = {
  deliveryAttempt: () => {},
  deliveryLatency: () => {},
  inboundSession: () => {},
  inboundMessage: () => {},
  authResult: () => {},
  approvalDecided: () => {},
};

/** The class of an SMTP reply code; null (no reply) is `network`. */
export const smtpClassOf = (code: number | null | undefined): SmtpClass =>
  typeof code !== 'number' ? 'network' : code >= 500 ? '5xx' : code >= 400 ? '4xx' : '2xx';

/** Known authentication results pass through; anything else is `other`, so a peer cannot grow the label set. */
const AUTH_RESULTS = new Set(['pass', 'fail', 'softfail', 'neutral', 'none', 'temperror', 'permerror', 'policy']);
export const authResultLabel = (r: string | null | undefined) => (r && AUTH_RESULTS.has(r) ? r : 'other');
