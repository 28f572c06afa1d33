import type { AuditEventsTable } from '../store/schema.js';

/**
 * The columns of an audit row, in one order: the prepared insert's parameters (audit-service) and the
 * verifier's select (verify-worker, which runs on worker threads and so imports only this).
 */
export const EVENT_COLUMNS = [
  'seq',
  'id',
  'at',
  'org_id',
  'action',
  'actor_type',
  'actor_id',
  'delegation_chain',
  'target_type',
  'target_id',
  'outcome',
  'request_id',
  'client_ip',
  'content_hash',
  'details',
  'prev_hash',
  'hash',
] as const satisfies readonly (keyof AuditEventsTable)[];
