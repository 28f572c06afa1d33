import type { AuditService } from '../audit/audit-service.js';
import type { Clock } from '../kernel/clock.js';
import { conflict } from '../kernel/errors.js';
import type { KeyRing } from '../kernel/crypto/keyring.js';
import { newId } from '../kernel/ids.js';
import { dmarcReportAddress, dnsRecordsFor, type DnsRecord } from '../mail/dns-records.js';
import { type ApiKeysService, mintApiKey } from '../identity/api-keys-service.js';
import { systemActor } from '../identity/principal.js';
import { activeSigningKey, createSigningKey } from '../identity/signing-keys.js';
import type { Db, Tx } from '../store/db.js';
import { isUniqueViolation } from '../store/errors.js';

export type InitResult = {
  org_id: string;
  domain: string;
  admin_human_id: string;
  admin_api_key: string;
  dns_records: DnsRecord[];
};

type Deps = { db: Db; ring: KeyRing; clock: Clock; audit: Pick<AuditService, 'record'> };

export type InitInput = { orgName: string; domain: string; adminName?: string; adminEmail?: string };

/** The addresses every mail domain must accept (RFC 5321 4.5.1) and the DMARC report address `mailward dns` publishes (rua=). */
export const postmasterAddresses = (domain: string) => [`postmaster@${domain}`, dmarcReportAddress(domain)];

/**
 * The organisation's postmaster: a system agent in a `Mail administration`
 * department, answered for by the first admin, with `read_only` mailboxes for
 * postmaster@ (RFC 5321 4.5.1: every domain accepts it) and the DMARC report
 * address, so bounces, abuse reports and aggregate reports land where admins
 * and reviewers read them (`GET /v1/mailboxes/{id}/messages`) and nothing can
 * be sent from them. The agent gets no API key. Audited like any creation.
 */
const createPostmaster = async (
  tx: Tx,
  audit: Pick<AuditService, 'record'>,
  o: { orgId: string; domain: string; responsibleHumanId: string; at: string },
) => {
  const actor = { ...systemActor(), orgId: o.orgId };
  const dep = { id: newId('department'), org_id: o.orgId, name: 'Mail administration', parent_id: null, created_at: o.at };
  await tx.insertInto('departments').values(dep).execute();
  await audit.record(tx, {
    action: 'department.created',
    actor,
    target: { type: 'department', id: dep.id },
    details: { parent_id: null, system: true },
  });
  const [postmaster, reports] = postmasterAddresses(o.domain) as [string, string];
  const agent = {
    id: newId('agent'),
    org_id: o.orgId,
    department_id: dep.id,
    responsible_human_id: o.responsibleHumanId,
    name: 'Postmaster',
    address: postmaster,
    is_active: 1,
    created_at: o.at,
    deactivated_at: null,
  };
  await tx.insertInto('agents').values(agent).execute();
  await audit.record(tx, {
    action: 'agent.created',
    actor,
    target: { type: 'agent', id: agent.id },
    details: { department_id: dep.id, responsible_human_id: o.responsibleHumanId, system: true },
  });
  for (const [address, display] of [
    [postmaster, 'Postmaster'],
    [reports, 'DMARC reports'],
  ] as const) {
    const mbx = {
      id: newId('mailbox'),
      org_id: o.orgId,
      agent_id: agent.id,
      address,
      display_name: display,
      oversight_mode: 'read_only' as const,
      forward_to: null,
      created_at: o.at,
      updated_at: o.at,
      phi_policy: null,
      dmarc_failure: 'quarantine' as const,
    };
    await tx.insertInto('mailboxes').values(mbx).execute();
    await audit.record(tx, {
      action: 'mailbox.created',
      actor,
      target: { type: 'mailbox', id: mbx.id },
      details: { agent_id: agent.id, oversight_mode: 'read_only', dmarc_failure: 'quarantine', has_forward_to: false, system: true },
    });
  }
};

/**
 * Gives organisations created before the postmaster existed their Postmaster
 * agent and mailboxes (`mailward serve` runs it at start). Skipped for an
 * organisation where either address is already taken (an operator set one up
 * by hand) or that has no active admin to answer for the agent. One
 * transaction per organisation, audited as the system. Returns the domains it
 * provisioned.
 */
export const ensurePostmasters = async ({ db, clock, audit }: Pick<Deps, 'db' | 'clock' | 'audit'>): Promise<string[]> => {
  const done: string[] = [];
  for (const org of await db.selectFrom('organizations').select(['id', 'domain']).orderBy('created_at').execute()) {
    const addresses = postmasterAddresses(org.domain);
    const created = await db.transaction().execute(async (tx) => {
      const taken =
        (await tx.selectFrom('mailboxes').select('id').where('address', 'in', addresses).executeTakeFirst()) ??
        (await tx.selectFrom('agents').select('id').where('address', 'in', addresses).executeTakeFirst());
      if (taken) return false;
      const admins = await tx
        .selectFrom('humans')
        .select(['id', 'roles'])
        .where('org_id', '=', org.id)
        .where('is_active', '=', 1)
        .orderBy('created_at')
        .execute();
      const admin = admins.find((h) => (JSON.parse(h.roles) as string[]).includes('admin'));
      if (!admin) return false;
      try {
        await createPostmaster(tx, audit, {
          orgId: org.id,
          domain: org.domain,
          responsibleHumanId: admin.id,
          at: clock.now().toISOString(),
        });
      } catch (e) {
        // Another process starting at the same moment made them first.
        if (isUniqueViolation(e)) return false;
        throw e;
      }
      return true;
    });
    if (created) done.push(org.domain);
  }
  return done;
};

/**
 * Creates an organisation with its DKIM keys (ed25519 + rsa-2048), its
 * identity-signing key (ES256), its first admin and that admin's API key; and
 * the installation's audit-checkpoint key if there is none. One transaction,
 * every step audited as the system. Throws 409 org_exists.
 */
export const initOrganization = async (
  { db, ring, clock, audit }: Deps,
  input: InitInput,
  opts: { onlyIfEmpty?: boolean } = {},
): Promise<InitResult | null> => {
  const now = clock.now().toISOString();
  const domain = input.domain.toLowerCase();
  try {
    return await db.transaction().execute(async (tx: Tx) => {
      if (opts.onlyIfEmpty) {
        // First start on an empty store: exactly one of several starting processes wins this row.
        await tx.insertInto('settings').values({ key: 'bootstrap', value: now }).execute();
        const any = await tx.selectFrom('organizations').select('id').limit(1).executeTakeFirst();
        if (any) return null;
      }
      const existing = await tx.selectFrom('organizations').select('id').where('domain', '=', domain).executeTakeFirst();
      if (existing) throw conflict('org_exists', `An organization with domain ${domain} already exists.`);
      const system = systemActor();
      const org = {
        id: newId('org'),
        name: input.orgName,
        domain,
        created_at: now,
        message_retention_days: 2190,
        consent_category_mismatch: 'hold' as const,
      };
      await tx.insertInto('organizations').values(org).execute();
      await audit.record(tx, {
        action: 'organization.created',
        actor: { ...system, orgId: org.id },
        target: { type: 'organization', id: org.id },
        details: { domain },
      });

      const dkimEd = await createSigningKey(tx, ring, clock, 'dkim-ed25519', org);
      const dkimRsa = await createSigningKey(tx, ring, clock, 'dkim-rsa', org);
      const identity = await createSigningKey(tx, ring, clock, 'identity-es256', org);
      for (const k of [dkimEd, dkimRsa, identity]) {
        await audit.record(tx, {
          action: 'signing_key.created',
          actor: { ...system, orgId: org.id },
          target: { type: 'signing_key', id: k.id },
          details: { purpose: k.purpose, kid: k.kid },
        });
      }
      if (!(await activeSigningKey(tx, 'audit-ed25519', null))) {
        const k = await createSigningKey(tx, ring, clock, 'audit-ed25519', null);
        await audit.record(tx, {
          action: 'signing_key.created',
          actor: system,
          orgId: null,
          target: { type: 'signing_key', id: k.id },
          details: { purpose: k.purpose, kid: k.kid },
        });
      }

      const admin = {
        id: newId('human'),
        org_id: org.id,
        name: input.adminName ?? 'Administrator',
        email: (input.adminEmail ?? `admin@${domain}`).toLowerCase(),
        roles: JSON.stringify(['admin']),
        is_active: 1,
        created_at: now,
        deactivated_at: null,
      };
      await tx.insertInto('humans').values(admin).execute();
      await audit.record(tx, {
        action: 'human.created',
        actor: { ...system, orgId: org.id },
        target: { type: 'human', id: admin.id },
        details: { roles: ['admin'] },
      });

      await createPostmaster(tx, audit, { orgId: org.id, domain, responsibleHumanId: admin.id, at: now });

      const { id: keyId, secretHash, key } = mintApiKey();
      await tx
        .insertInto('api_keys')
        .values({
          id: keyId,
          org_id: org.id,
          principal_type: 'human',
          principal_id: admin.id,
          secret_hash: secretHash,
          scopes: JSON.stringify(['admin']),
          created_at: now,
          created_by: null,
          revoked_at: null,
          last_used_at: null,
        })
        .execute();
      await audit.record(tx, {
        action: 'api_key.created',
        actor: { ...system, orgId: org.id },
        target: { type: 'api_key', id: keyId },
        details: { principal: { type: 'human', id: admin.id }, scopes: ['admin'] },
      });

      return {
        org_id: org.id,
        domain,
        admin_human_id: admin.id,
        admin_api_key: key,
        dns_records: dnsRecordsFor(domain, [dkimEd, dkimRsa]),
      };
    });
  } catch (e) {
    if (opts.onlyIfEmpty && isUniqueViolation(e)) return null;
    throw e;
  }
};

export type { ApiKeysService };
