import type { AuditService } from '../audit/audit-service.js';
import type { Clock } from '../kernel/clock.js';
import { conflict } from '../kernel/errors.js';
import type { KeyRing } from '../kernel/crypto/keyring.js';
import { newId } from '../kernel/ids.js';
import { dnsRecordsFor, type DnsRecord } from '../mail/dns-records.js';
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
      const org = { id: newId('org'), name: input.orgName, domain, created_at: now, message_retention_days: 2190 };
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
