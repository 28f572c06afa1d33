import type { IdentityRepo } from '../identity/identity-repo.js';
import type { Principal } from '../identity/principal.js';
import type { Db } from '../store/db.js';
import type { AgentsTable, MailboxesTable, OrganizationsTable } from '../store/schema.js';

/**
 * What Mailward's own notices (reviewer digests, breach notices) share: an `autonomous` system mailbox row and the
 * sending principal of its system agent, so that notices go through the normal send path (PHI screen, consent,
 * DKIM, queue, audit) like any mail.
 */
export const systemMailboxRow = (m: {
  id: string;
  orgId: string;
  agentId: string;
  address: string;
  displayName: string;
  at: string;
}): MailboxesTable => ({
  id: m.id,
  org_id: m.orgId,
  agent_id: m.agentId,
  address: m.address,
  display_name: m.displayName,
  oversight_mode: 'autonomous',
  forward_to: null,
  created_at: m.at,
  updated_at: m.at,
  phi_policy: null,
  dmarc_failure: 'quarantine',
});

/** The principal a system agent sends as (scope `mail:send` only, its chain as the store has it now). */
export const systemSender = async (
  db: Db,
  repo: IdentityRepo,
  agent: AgentsTable,
  org: Pick<OrganizationsTable, 'id' | 'name' | 'domain'>,
  extra: Partial<Principal> = {},
): Promise<Principal> =>
  ({
    type: 'agent',
    id: agent.id,
    orgId: org.id,
    name: agent.name,
    keyId: 'system',
    roles: [],
    scopes: ['mail:send'],
    chain: await repo.agentChain(db, agent, org.name),
    org: { id: org.id, name: org.name, domain: org.domain },
    address: agent.address,
    ...extra,
  }) as Principal;
