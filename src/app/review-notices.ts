import type { AuditService } from '../audit/audit-service.js';
import type { IdentityRepo } from '../identity/identity-repo.js';
import { type Principal, systemActor } from '../identity/principal.js';
import type { Clock } from '../kernel/clock.js';
import { newId } from '../kernel/ids.js';
import type { SendInput } from '../mail/mail-schemas.js';
import type { ReviewNotice } from '../oversight/review-notifications.js';
import type { Db } from '../store/db.js';
import { systemMailboxRow, systemSender } from './system-mail.js';

type Deps = {
  db: Db;
  repo: IdentityRepo;
  audit: Pick<AuditService, 'record'>;
  clock: Clock;
  send: (ctx: { principal: Principal; requestId: null; clientIp: null }, mailboxId: string, body: SendInput) => Promise<unknown>;
};

/**
 * Reviewer notices go out through Mailward's own outbound path (signed, queued, audited like any mail)
 * from the organisation's `notifications@` system mailbox, an `autonomous` mailbox of its Postmaster
 * agent created on first use (audited as mailbox.created, system). The PHI screen still scans each
 * notice; it carries counts only.
 */
export const createReviewNoticeSender = ({ db, repo, audit, clock, send }: Deps) => {
  const mailboxOf = async (orgId: string) => {
    const org = await repo.org(db, orgId);
    if (!org) throw new Error('review notice: no such organisation');
    const address = `notifications@${org.domain}`;
    const postmaster = await db
      .selectFrom('agents')
      .selectAll()
      .where('org_id', '=', orgId)
      .where('address', '=', `postmaster@${org.domain}`)
      .executeTakeFirst();
    if (!postmaster) throw new Error('review notice: the organisation has no Postmaster agent');
    let mbx = await db.selectFrom('mailboxes').selectAll().where('org_id', '=', orgId).where('address', '=', address).executeTakeFirst();
    if (!mbx) {
      const at = clock.now().toISOString();
      const row = systemMailboxRow({
        id: newId('mailbox'),
        orgId,
        agentId: postmaster.id,
        address,
        displayName: 'Mailward notifications',
        at,
      });
      await db.transaction().execute(async (tx) => {
        await tx
          .insertInto('mailboxes')
          .values(row)
          .onConflict((oc) => oc.doNothing())
          .execute();
        await audit.record(tx, {
          action: 'mailbox.created',
          actor: { ...systemActor(), orgId },
          target: { type: 'mailbox', id: row.id },
          details: { agent_id: postmaster.id, oversight_mode: 'autonomous', has_forward_to: false, system: true, purpose: 'notifications' },
        });
      });
      mbx = await db
        .selectFrom('mailboxes')
        .selectAll()
        .where('org_id', '=', orgId)
        .where('address', '=', address)
        .executeTakeFirstOrThrow();
    }
    const principal = await systemSender(db, repo, postmaster, org);
    return { mailboxId: mbx.id, principal };
  };

  return async (n: ReviewNotice) => {
    const { mailboxId, principal } = await mailboxOf(n.orgId);
    await send({ principal, requestId: null, clientIp: null }, mailboxId, { to: [n.to], subject: n.subject, text: n.text });
  };
};
