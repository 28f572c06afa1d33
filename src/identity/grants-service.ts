import type { Clock } from '../kernel/clock.js';
import { forbidden, notFound, unprocessable, conflict } from '../kernel/errors.js';
import { newId } from '../kernel/ids.js';
import type { Db, Executor } from '../store/db.js';
import type { GrantsTable, HumansTable } from '../store/schema.js';
import type { Guard } from './guard.js';
import { hasRole, type RequestContext } from './principal.js';

/** Longest a grant may run before the clinician renews it. */
const MAX_GRANT_DAYS = 366;

const view = (g: GrantsTable) => ({
  id: g.id,
  agent_id: g.agent_id,
  clinician_id: g.clinician_id,
  categories: JSON.parse(g.categories) as string[],
  created_by: g.created_by,
  created_at: g.created_at,
  expires_at: g.expires_at,
  revoked_at: g.revoked_at,
  revoked_by: g.revoked_by,
});

export type NewGrant = { agent_id: string; clinician_id: string; categories: string[]; expires_at: string };

/** The clinician a send names, with the live grant that lets this agent send for them in `category`, or null. */
export const liveGrant = async (ex: Executor, orgId: string, agentId: string, clinicianId: string, category: string, at: string) => {
  const clinician = await ex
    .selectFrom('humans')
    .selectAll()
    .where('id', '=', clinicianId)
    .where('org_id', '=', orgId)
    .where('is_active', '=', 1)
    .executeTakeFirst();
  if (!clinician || !(JSON.parse(clinician.roles) as string[]).includes('clinician')) return null;
  const grants = await ex
    .selectFrom('grants')
    .selectAll()
    .where('org_id', '=', orgId)
    .where('agent_id', '=', agentId)
    .where('clinician_id', '=', clinicianId)
    .where('revoked_at', 'is', null)
    .where('expires_at', '>', at)
    .orderBy('created_at')
    .execute();
  const grant = grants.find((g) => (JSON.parse(g.categories) as string[]).includes(category));
  return grant ? { grant, clinician: clinician as HumansTable } : null;
};

/**
 * Clinicians' grants of authority to agents (acting on behalf of a clinician: a refill request "verifying prescriber
 * authorization through the delegation chain"). A clinician grants for themself; an admin may grant for any
 * clinician of the organisation. Revoking stops new sends at once: the send path reads the grant in its transaction.
 */
export const createGrantsService = ({ db, guard, clock }: { db: Db; guard: Guard; clock: Clock }) => {
  const now = () => clock.now().toISOString();
  /** The caller may act for this clinician: an admin, or the clinician themself. Others get 404, as for anything not theirs. */
  const mayManage = (ctx: RequestContext, clinicianId: string) =>
    ctx.principal.type === 'human' &&
    (hasRole(ctx.principal, 'admin') || (ctx.principal.id === clinicianId && hasRole(ctx.principal, 'clinician')));

  /** Throws 404 (agent, clinician or caller not allowed), 422 not_a_clinician / grant_expiry. Audits grant.created. */
  const create = (ctx: RequestContext, body: NewGrant) =>
    guard.change(ctx, 'grant.created', null, async (tx) => {
      if (!mayManage(ctx, body.clinician_id)) throw notFound('clinician');
      const orgId = ctx.principal.orgId;
      const agent = await tx
        .selectFrom('agents')
        .select(['id', 'is_active'])
        .where('id', '=', body.agent_id)
        .where('org_id', '=', orgId)
        .executeTakeFirst();
      if (agent?.is_active !== 1) throw notFound('agent');
      const clinician = await tx
        .selectFrom('humans')
        .selectAll()
        .where('id', '=', body.clinician_id)
        .where('org_id', '=', orgId)
        .executeTakeFirst();
      if (clinician?.is_active !== 1) throw notFound('clinician');
      if (!(JSON.parse(clinician.roles) as string[]).includes('clinician'))
        throw unprocessable('not_a_clinician', 'Only a human with the clinician role can grant authority to send on their behalf.');
      const at = now();
      const expires = new Date(body.expires_at).toISOString();
      if (expires <= at || Date.parse(expires) - Date.parse(at) > MAX_GRANT_DAYS * 86_400_000)
        throw unprocessable('grant_expiry', `expires_at must be in the future and at most ${MAX_GRANT_DAYS} days away.`);
      const row: GrantsTable = {
        id: newId('grant'),
        org_id: orgId,
        agent_id: agent.id,
        clinician_id: clinician.id,
        categories: JSON.stringify([...new Set(body.categories)].sort()),
        created_by: ctx.principal.id,
        created_at: at,
        expires_at: expires,
        revoked_at: null,
        revoked_by: null,
      };
      await tx.insertInto('grants').values(row).execute();
      await guard.recordIn(
        tx,
        ctx,
        'grant.created',
        { type: 'grant', id: row.id },
        {
          agent_id: row.agent_id,
          clinician_id: row.clinician_id,
          categories: JSON.parse(row.categories),
          expires_at: row.expires_at,
        },
      );
      return view(row);
    });

  /** Grants the caller may see: all of the organisation (admin), one's own (clinician), those given to it (agent). */
  const list = (ctx: RequestContext) =>
    guard.read(ctx, 'grant.list', null, async () => {
      let q = db.selectFrom('grants').selectAll().where('org_id', '=', ctx.principal.orgId);
      if (ctx.principal.type === 'agent') q = q.where('agent_id', '=', ctx.principal.id);
      else if (!hasRole(ctx.principal, 'admin')) {
        if (!hasRole(ctx.principal, 'clinician')) throw forbidden('role_required', 'Only admins and clinicians manage grants.');
        q = q.where('clinician_id', '=', ctx.principal.id);
      }
      return (await q.orderBy('id').execute()).map(view);
    });

  /** Revokes a grant (admin or its clinician): no new send under it from this commit on. 409 grant_revoked. */
  const revoke = (ctx: RequestContext, id: string) =>
    guard.change(ctx, 'grant.revoked', { type: 'grant', id }, async (tx) => {
      const g = await tx.selectFrom('grants').selectAll().where('id', '=', id).where('org_id', '=', ctx.principal.orgId).executeTakeFirst();
      if (!g || !mayManage(ctx, g.clinician_id)) throw notFound('grant');
      const at = now();
      const u = await tx
        .updateTable('grants')
        .set({ revoked_at: at, revoked_by: ctx.principal.id })
        .where('id', '=', id)
        .where('revoked_at', 'is', null)
        .executeTakeFirst();
      if (Number(u.numUpdatedRows) !== 1) throw conflict('grant_revoked', 'This grant was revoked already.');
      await guard.recordIn(tx, ctx, 'grant.revoked', { type: 'grant', id }, { agent_id: g.agent_id, clinician_id: g.clinician_id });
      return view({ ...g, revoked_at: at, revoked_by: ctx.principal.id });
    });

  return { create, list, revoke };
};

export type GrantsService = ReturnType<typeof createGrantsService>;
