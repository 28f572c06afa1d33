/**
 * Row types of every table, shared by both dialects. Timestamps are ISO-8601
 * UTC text; booleans are 0/1 integers; JSON is text. One shape, one set of queries.
 */
export type OrganizationsTable = { id: string; name: string; domain: string; created_at: string };

export type DepartmentsTable = {
  id: string;
  org_id: string;
  name: string;
  parent_id: string | null;
  created_at: string;
};

export type HumansTable = {
  id: string;
  org_id: string;
  name: string;
  email: string;
  roles: string; // JSON array
  is_active: number;
  created_at: string;
  deactivated_at: string | null;
};

export type AgentsTable = {
  id: string;
  org_id: string;
  department_id: string;
  responsible_human_id: string;
  name: string;
  address: string;
  is_active: number;
  created_at: string;
  deactivated_at: string | null;
};

export type ApiKeysTable = {
  id: string;
  org_id: string;
  principal_type: 'human' | 'agent';
  principal_id: string;
  secret_hash: string;
  scopes: string; // JSON array: roles for humans, scopes for agents
  created_at: string;
  created_by: string | null;
  revoked_at: string | null;
  last_used_at: string | null;
};

export type SigningKeysTable = {
  id: string;
  org_id: string | null;
  purpose: 'dkim-ed25519' | 'dkim-rsa' | 'identity-es256' | 'audit-ed25519';
  kid: string;
  public_key: string;
  private_key_sealed: string;
  created_at: string;
  retired_at: string | null;
};

export type KeyRingTable = { version: string; fingerprint: string; created_at: string; retired_at: string | null };

export type SettingsTable = { key: string; value: string };

export type RateLimitBucketsTable = { bucket: string; count: number; expires_at: string };

export type AuditEventsTable = {
  seq: number;
  id: string;
  at: string;
  org_id: string | null;
  action: string;
  actor_type: string;
  actor_id: string | null;
  delegation_chain: string; // JSON
  target_type: string | null;
  target_id: string | null;
  outcome: 'success' | 'denied' | 'error';
  request_id: string | null;
  client_ip: string | null;
  content_hash: string | null;
  details: string; // JSON
  prev_hash: string;
  hash: string;
};

export type AuditHeadTable = { id: number; seq: number; hash: string };

export type Database = {
  organizations: OrganizationsTable;
  departments: DepartmentsTable;
  humans: HumansTable;
  agents: AgentsTable;
  api_keys: ApiKeysTable;
  signing_keys: SigningKeysTable;
  key_ring: KeyRingTable;
  settings: SettingsTable;
  rate_limit_buckets: RateLimitBucketsTable;
  audit_events: AuditEventsTable;
  audit_head: AuditHeadTable;
};
