import type { AuditService } from '../audit/audit-service.js';
import type { SendNotice } from '../compliance/breach-service.js';
import type { IdentityRepo } from '../identity/identity-repo.js';
import { actorOf, type Principal } from '../identity/principal.js';
import type { Clock } from '../kernel/clock.js';
import { newId } from '../kernel/ids.js';
import type { SendInput } from '../mail/mail-schemas.js';
import type { Db } from '../store/db.js';
import { systemMailboxRow, systemSender } from './system-mail.js';

type Deps = {
  db: Db;
  repo: IdentityRepo;
  audit: Pick<AuditService, 'record'>;
  clock: Clock;
  send: (ctx: { principal: Principal; requestId: null; clientIp: null }, mailboxId: string, body: SendInput) => Promise<{ id: string }>;
};

/**
 * Breach notices (45 CFR 164.404) go out through the normal outbound path (PHI screen, consent, DKIM, queue, audit)
 * from `breach-notices@<domain>`, an `autonomous` mailbox of a "Breach notifications" agent in the Postmaster's
 * department whose responsible human is the privacy officer who sends (re-assigned, audited, when another officer
 * sends): every notice is attributable to them in its delegation chain. Created on first use, audited as system.
 */
export const createBreachNoticeSender = ({ db, repo, audit, clock, send }: Deps): SendNotice => {
  const agentFor = async (orgId: string, officer: Principal) => {
    const org = await repo.org(db, orgId);
    if (!org) throw new Error('breach notice: no such organisation');
    const address = `breach-notices@${org.domain}`;
    await db.transaction().execute(async (tx) => {
      const at = clock.now().toISOString();
      let agent = await tx.selectFrom('agents').selectAll().where('org_id', '=', orgId).where('address', '=', address).executeTakeFirst();
      const actor = { ...actorOf({ principal: officer, requestId: null, clientIp: null }) };
      if (!agent) {
        const postmaster = await tx
          .selectFrom('agents')
          .selectAll()
          .where('org_id', '=', orgId)
          .where('address', '=', `postmaster@${org.domain}`)
          .executeTakeFirstOrThrow();
        agent = {
          id: newId('agent'),
          org_id: orgId,
          department_id: postmaster.department_id,
          responsible_human_id: officer.id,
          name: 'Breach notifications',
          address,
          is_active: 1,
          created_at: at,
          deactivated_at: null,
        };
        await tx.insertInto('agents').values(agent).execute();
        await audit.record(tx, {
          action: 'agent.created',
          actor,
          target: { type: 'agent', id: agent.id },
          details: { department_id: agent.department_id, responsible_human_id: officer.id, system: true, purpose: 'breach_notifications' },
        });
        const mbx = systemMailboxRow({
          id: newId('mailbox'),
          orgId,
          agentId: agent.id,
          address,
          displayName: `${org.name} privacy office`,
          at,
        });
        await tx.insertInto('mailboxes').values(mbx).execute();
        await audit.record(tx, {
          action: 'mailbox.created',
          actor,
          target: { type: 'mailbox', id: mbx.id },
          details: {
            agent_id: agent.id,
            oversight_mode: 'autonomous',
            has_forward_to: false,
            system: true,
            purpose: 'breach_notifications',
          },
        });
      } else if (agent.responsible_human_id !== officer.id) {
        await tx.updateTable('agents').set({ responsible_human_id: officer.id }).where('id', '=', agent.id).execute();
        await audit.record(tx, {
          action: 'agent.updated',
          actor,
          target: { type: 'agent', id: agent.id },
          details: { responsible_human_id: officer.id, system: true, purpose: 'breach_notifications' },
        });
      }
    });
    const agent = await db
      .selectFrom('agents')
      .selectAll()
      .where('org_id', '=', orgId)
      .where('address', '=', address)
      .executeTakeFirstOrThrow();
    const mbx = await db
      .selectFrom('mailboxes')
      .selectAll()
      .where('org_id', '=', orgId)
      .where('address', '=', address)
      .executeTakeFirstOrThrow();
    const principal = await systemSender(db, repo, agent, org, {
      responsibleHuman: { id: officer.id, name: officer.name },
    } as Partial<Principal>);
    return { principal, mailboxId: mbx.id };
  };

  return async (orgId, officer, to, subject, text) => {
    const { principal, mailboxId } = await agentFor(orgId, officer.principal);
    const r = await send({ principal, requestId: null, clientIp: null }, mailboxId, { to: [to], subject, text });
    return { id: r.id };
  };
};
