/**
 * The domain events of the lifecycle log, as data. Each carries ids, a type and non-PHI facts only (statuses,
 * reason codes, counts): never addresses, subjects, bodies or findings' text (45 CFR 164.502(b), minimum
 * necessary). Consumers fetch content with their own key, which is audited.
 */
export const DOMAIN_EVENT_TYPES = {
  'email.submitted': 'an agent submitted an outbound message (data: oversight_mode, recipients)',
  'email.received': 'an inbound message was stored (data: status: received, pending_approval or quarantined)',
  'email.held': 'a message waits for a reviewer (data: reasons, expires_at)',
  'email.approved': 'a reviewer approved a held outbound message (data: edited)',
  'email.rejected': 'a reviewer rejected a held outbound message',
  'email.expired': 'a held message expired unreviewed (data: direction)',
  'email.queued': 'an outbound message entered the delivery queue',
  'email.deferred': 'a delivery attempt failed temporarily (data: smtp_code, category)',
  'email.delivered': 'every recipient route accepted the message',
  'email.bounced': 'delivery failed permanently (data: smtp_code, category)',
  'email.failed': 'delivery gave up (data: code)',
  'email.released': 'a reviewer released a held or quarantined inbound message to its agent',
  'email.quarantined': 'an inbound message was quarantined, at receipt or by a reviewer (data: reasons)',
  'email.cancelled': 'the sender cancelled a message before it was handed to SMTP',
  'approval.opened': 'an approval was opened (data: direction, reasons)',
  'approval.decided': 'an approval was decided (data: outcome: approved, rejected, expired, cancelled, released, withheld)',
  'consent.changed': "a contact's consent was recorded (data: contact_hash, electronic, categories, version; never the address)",
  'webhook.disabled':
    'a webhook endpoint was disabled after its deliveries failed for a whole retry schedule (data: webhook_id, reason, failures)',
} as const;

export type DomainEventType = keyof typeof DOMAIN_EVENT_TYPES;
export const DOMAIN_EVENT_TYPE_NAMES = Object.keys(DOMAIN_EVENT_TYPES) as DomainEventType[];
