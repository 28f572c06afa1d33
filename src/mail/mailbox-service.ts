import type { z } from 'zod';
import type { Guard } from '../identity/guard.js';
import type { IdentityRepo } from '../identity/identity-repo.js';
import { hasRole, type RequestContext } from '../identity/principal.js';
import type { Clock } from '../kernel/clock.js';
import { conflict, forbidden, notFound, unprocessable } from '../kernel/errors.js';
import { newId } from '../kernel/ids.js';
import { DEFAULT_OVERSIGHT_MODE, isLoosening } from '../oversight/oversight-modes.js';
import { isPhiPolicyLoosening, parsePhiPolicy } from '../phi/outbound-screen.js';
import type { Db, Executor } from '../store/db.js';
import { isUniqueViolation } from '../store/errors.js';
import type { MailboxesTable } from '../store/schema.js';
import { type createMailboxBody, DEFAULT_DMARC_FAILURE, type updateMailboxBody } from './mail-schemas.js';

type Deps = { db: Db; repo: IdentityRepo; guard: Guard; clock: Clock };

export const mailboxView = (m: MailboxesTable) => ({
  id: m.id,
  agent_id: m.agent_id,
  address: m.address,
  display_name: m.display_name,
  oversight_mode: m.oversight_mode,
  forward_to: m.forward_to,
  phi_policy: parsePhiPolicy(m.phi_policy),
  dmarc_failure: m.dmarc_failure,
  allow_templates: m.allow_templates === 1,
  created_at: m.created_at,
  updated_at: m.updated_at,
});

/**
 * A mailbox the caller may see, or 404: an agent sees only its own mailboxes;
 * humans with admin or reviewer see those of their organisation
 * (CONTRACT.md: another tenant's or agent's resource answers 404).
 */
export const visibleMailbox = async (ex: Executor, ctx: RequestContext, id: string): Promise<MailboxesTable> => {
  const p = ctx.principal;
  const m = await ex.selectFrom('mailboxes').selectAll().where('id', '=', id).where('org_id', '=', p.orgId).executeTakeFirst();
  if (!m) throw notFound('mailbox');
  if (p.type === 'agent' && m.agent_id !== p.id) throw notFound('mailbox');
  if (p.type === 'human' && !hasRole(p, 'admin') && !hasRole(p, 'reviewer')) throw notFound('mailbox');
  return m;
};

const requireAdmin = (ctx: RequestContext) => {
  if (ctx.principal.type !== 'human') throw notFound('mailbox');
  if (!hasRole(ctx.principal, 'admin')) throw forbidden('admin_required', 'This action needs an admin.');
};

/** The PHI policy is the privacy officer's as much as the admin's (45 CFR 164.530(a): the privacy official sets privacy policy). */
const requirePhiPolicyWriter = (ctx: RequestContext) => {
  if (ctx.principal.type !== 'human') throw notFound('mailbox');
  if (!hasRole(ctx.principal, 'admin') && !hasRole(ctx.principal, 'privacy_officer')) {
    throw forbidden('role_required', 'Changing the PHI policy needs one of the roles: admin, privacy_officer.');
  }
};

/**
 * The mailbox for a PHI policy change: a privacy officer (who cannot read
 * mail, so visibleMailbox hides mailboxes from them) finds those of the
 * organisation; everyone else as visibleMailbox says.
 */
const mailboxForUpdate = async (ex: Executor, ctx: RequestContext, id: string, phiOnly: boolean): Promise<MailboxesTable> => {
  const p = ctx.principal;
  if (phiOnly && hasRole(p, 'privacy_officer')) {
    const m = await ex.selectFrom('mailboxes').selectAll().where('id', '=', id).where('org_id', '=', p.orgId).executeTakeFirst();
    if (!m) throw notFound('mailbox');
    return m;
  }
  return visibleMailbox(ex, ctx, id);
};

export const createMailboxService = ({ db, repo, guard, clock }: Deps) => {
  const now = () => clock.now().toISOString();

  /**
   * Creates a mailbox for an agent of the caller's organisation; the address
   * defaults to the agent's own and must be on the organisation's domain.
   * Throws 403 admin_required, 404 agent, 409 address_taken, 422
   * address_off_domain / forward_to_required. Audits mailbox.created.
   */
  const create = (ctx: RequestContext, body: z.infer<typeof createMailboxBody>) =>
    guard.change(ctx, 'mailbox.created', null, async (tx) => {
      requireAdmin(ctx);
      const orgId = ctx.principal.orgId;
      const org = await repo.org(tx, orgId);
      const agent = await repo.agent(tx, orgId, body.agent_id);
      if (!org || !agent) throw notFound('agent');
      const address = (body.address ?? agent.address).toLowerCase();
      if (!address.endsWith(`@${org.domain}`))
        throw unprocessable('address_off_domain', "A mailbox address must be on the organization's domain.");
      const mode = body.oversight_mode ?? DEFAULT_OVERSIGHT_MODE;
      if (mode === 'monitored' && !body.forward_to) throw unprocessable('forward_to_required', 'A monitored mailbox needs forward_to.');
      const at = now();
      const row: MailboxesTable = {
        id: newId('mailbox'),
        org_id: orgId,
        agent_id: agent.id,
        address,
        display_name: body.display_name,
        oversight_mode: mode,
        forward_to: body.forward_to?.toLowerCase() ?? null,
        created_at: at,
        updated_at: at,
        phi_policy: body.phi_policy ? JSON.stringify(body.phi_policy) : null,
        // Fail closed: DMARC failures are quarantined unless an admin opts into `flag`.
        dmarc_failure: body.dmarc_failure ?? DEFAULT_DMARC_FAILURE,
        // Templates flow without per-message approval only where an admin allowed it (default: never).
        allow_templates: body.allow_templates ? 1 : 0,
      };
      try {
        await tx.insertInto('mailboxes').values(row).execute();
      } catch (e) {
        if (isUniqueViolation(e)) throw conflict('address_taken', 'That address already has a mailbox.');
        throw e;
      }
      await guard.recordIn(
        tx,
        ctx,
        'mailbox.created',
        { type: 'mailbox', id: row.id },
        {
          agent_id: agent.id,
          oversight_mode: mode,
          dmarc_failure: row.dmarc_failure,
          allow_templates: row.allow_templates === 1,
          has_forward_to: row.forward_to !== null,
          phi_policy: body.phi_policy ?? null,
          phi_policy_loosened: isPhiPolicyLoosening(null, body.phi_policy ?? null),
        },
      );
      return mailboxView(row);
    });

  /**
   * Changes mode, display name, forward_to or the PHI policy. A reviewer or
   * admin may tighten oversight; loosening it needs an admin human and the
   * audit event says `loosened: true` with that human as actor. The
   * PHI policy is set by an admin or privacy officer; loosening it is audited
   * as `phi_policy_loosened: true` with both policies.
   * Throws 403 admin_required / role_required, 404, 422 forward_to_required. Audits mailbox.updated.
   */
  const update = (ctx: RequestContext, id: string, body: z.infer<typeof updateMailboxBody>) =>
    guard.change(ctx, 'mailbox.updated', { type: 'mailbox', id }, async (tx) => {
      const otherChange =
        body.oversight_mode !== undefined ||
        body.display_name !== undefined ||
        body.forward_to !== undefined ||
        body.dmarc_failure !== undefined ||
        body.allow_templates !== undefined;
      const phiChange = body.phi_policy !== undefined;
      const m = await mailboxForUpdate(tx, ctx, id, phiChange && !otherChange);
      const mode = body.oversight_mode ?? m.oversight_mode;
      const forwardTo = body.forward_to === undefined ? m.forward_to : (body.forward_to?.toLowerCase() ?? null);
      const loosened = isLoosening(m.oversight_mode, mode);
      if (otherChange || !phiChange) {
        // A reviewer may tighten oversight and nothing else; every other change needs an admin human.
        const onlyTightens =
          !loosened &&
          body.display_name === undefined &&
          body.forward_to === undefined &&
          body.dmarc_failure === undefined &&
          body.allow_templates !== true;
        if (!(onlyTightens && hasRole(ctx.principal, 'reviewer'))) requireAdmin(ctx);
      }
      if (phiChange) requirePhiPolicyWriter(ctx);
      if (mode === 'monitored' && !forwardTo) throw unprocessable('forward_to_required', 'A monitored mailbox needs forward_to.');
      const policyBefore = parsePhiPolicy(m.phi_policy);
      const policyAfter = body.phi_policy === undefined ? policyBefore : body.phi_policy;
      const changes = {
        oversight_mode: mode,
        forward_to: forwardTo,
        display_name: body.display_name ?? m.display_name,
        phi_policy: policyAfter ? JSON.stringify(policyAfter) : null,
        dmarc_failure: body.dmarc_failure ?? m.dmarc_failure,
        allow_templates: body.allow_templates === undefined ? (m.allow_templates ?? 0) : body.allow_templates ? 1 : 0,
        updated_at: now(),
      };
      await tx.updateTable('mailboxes').set(changes).where('id', '=', id).execute();
      await guard.recordIn(
        tx,
        ctx,
        'mailbox.updated',
        { type: 'mailbox', id },
        {
          before: { oversight_mode: m.oversight_mode },
          after: { oversight_mode: mode },
          loosened,
          forward_to_changed: forwardTo !== m.forward_to,
          display_name_changed: changes.display_name !== m.display_name,
          ...(changes.allow_templates !== (m.allow_templates ?? 0)
            ? { allow_templates: { before: m.allow_templates === 1, after: changes.allow_templates === 1 } }
            : {}),
          ...(changes.dmarc_failure !== m.dmarc_failure
            ? { dmarc_failure: { before: m.dmarc_failure, after: changes.dmarc_failure } }
            : {}),
          ...(phiChange
            ? {
                phi_policy: { before: policyBefore, after: policyAfter },
                phi_policy_loosened: isPhiPolicyLoosening(policyBefore, policyAfter),
              }
            : {}),
        },
      );
      return mailboxView({ ...m, ...changes });
    });

  const get = (ctx: RequestContext, id: string) =>
    guard.read(ctx, 'mailbox.read', { type: 'mailbox', id }, async () => mailboxView(await visibleMailbox(db, ctx, id)));

  /** Agents list their own mailboxes; admins and reviewers those of the organisation. */
  const list = (ctx: RequestContext) =>
    guard.read(ctx, 'mailbox.list', null, async () => {
      const p = ctx.principal;
      let q = db.selectFrom('mailboxes').selectAll().where('org_id', '=', p.orgId).orderBy('id');
      if (p.type === 'agent') q = q.where('agent_id', '=', p.id);
      else if (!hasRole(p, 'admin') && !hasRole(p, 'reviewer')) return [];
      return (await q.execute()).map(mailboxView);
    });

  return { create, update, get, list };
};

export type MailboxService = ReturnType<typeof createMailboxService>;
