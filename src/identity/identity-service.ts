import type { z } from 'zod';
import { createAccountsRepo } from '../accounts/accounts-repo.js';
import type { Clock } from '../kernel/clock.js';
import { AppError, conflict, forbidden, notFound, unprocessable } from '../kernel/errors.js';
import { newId } from '../kernel/ids.js';
import type { Db, Executor } from '../store/db.js';
import { isUniqueViolation } from '../store/errors.js';
import type { AgentsTable, HumansTable } from '../store/schema.js';
import type { Guard } from './guard.js';
import type { IdentityRepo } from './identity-repo.js';
import type { createAgentBody, createDepartmentBody, createHumanBody, updateAgentBody } from './identity-schemas.js';
import { type ChainEntry, hasRole, type RequestContext, type Role } from './principal.js';

type Deps = {
  db: Db;
  repo: IdentityRepo;
  guard: Guard;
  clock: Clock;
  /**
   * Revokes, in the caller's transaction, the OAuth grants acting for an agent and/or granted by a human (the
   * authorization server's store, src/oauth/oauth-records-repo.ts revokeDelegation), when the delegation ends.
   */
  revokeOauth?: (tx: Executor, who: { agentId?: string; humanId?: string }, reason: string) => Promise<number>;
};

export type AgentView = {
  id: string;
  name: string;
  address: string;
  department_id: string;
  is_active: boolean;
  created_at: string;
  deactivated_at: string | null;
  delegation_chain: ChainEntry[];
  responsible_human: { id: string; name: string };
};

const humanView = (h: HumansTable) => ({
  id: h.id,
  name: h.name,
  email: h.email,
  roles: JSON.parse(h.roles) as Role[],
  npi: h.npi ?? null,
  is_active: h.is_active === 1,
  created_at: h.created_at,
  deactivated_at: h.deactivated_at,
});

const slugify = (name: string): string =>
  name
    .normalize('NFKD')
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 40)
    .replace(/-+$/g, '') || 'agent';

export const requireAdmin = (ctx: RequestContext) => {
  if (!hasRole(ctx.principal, 'admin')) throw forbidden('admin_required', 'This action needs an admin.');
};

/** Any active human of the organisation may read its directory; agents see only themselves. */
const requireHuman = (ctx: RequestContext) => {
  if (ctx.principal.type !== 'human') throw notFound();
};

export const createIdentityService = ({ db, repo, guard, clock, revokeOauth = async () => 0 }: Deps) => {
  const now = () => clock.now().toISOString();
  const accountsRepo = createAccountsRepo();

  const orgName = async (ex: Executor, orgId: string) => (await repo.org(ex, orgId))?.name ?? '';

  const agentView = async (ex: Executor, a: AgentsTable): Promise<AgentView> => {
    const h = await ex.selectFrom('humans').select(['id', 'name']).where('id', '=', a.responsible_human_id).executeTakeFirstOrThrow();
    return {
      id: a.id,
      name: a.name,
      address: a.address,
      department_id: a.department_id,
      is_active: a.is_active === 1,
      created_at: a.created_at,
      deactivated_at: a.deactivated_at,
      delegation_chain: await repo.agentChain(ex, a, await orgName(ex, a.org_id)),
      responsible_human: { id: h.id, name: h.name },
    };
  };

  /** Creates a department. Throws 403 admin_required, 404 for a parent not in the org. Audits department.created. */
  const createDepartment = (ctx: RequestContext, body: z.infer<typeof createDepartmentBody>) =>
    guard.change(ctx, 'department.created', null, async (tx) => {
      requireAdmin(ctx);
      const orgId = ctx.principal.orgId;
      if (body.parent_id && !(await repo.department(tx, orgId, body.parent_id))) throw notFound('parent department');
      const row = { id: newId('department'), org_id: orgId, name: body.name, parent_id: body.parent_id ?? null, created_at: now() };
      await tx.insertInto('departments').values(row).execute();
      await guard.recordIn(tx, ctx, 'department.created', { type: 'department', id: row.id }, { parent_id: row.parent_id });
      return { id: row.id, name: row.name, parent_id: row.parent_id, created_at: row.created_at };
    });

  const listDepartments = (ctx: RequestContext) =>
    guard.read(ctx, 'department.list', null, async () => {
      requireHuman(ctx);
      const rows = await db
        .selectFrom('departments')
        .select(['id', 'name', 'parent_id', 'created_at'])
        .where('org_id', '=', ctx.principal.orgId)
        .orderBy('id')
        .execute();
      return rows;
    });

  const getDepartment = (ctx: RequestContext, id: string) =>
    guard.read(ctx, 'department.read', { type: 'department', id }, async () => {
      requireHuman(ctx);
      const d = await repo.department(db, ctx.principal.orgId, id);
      if (!d) throw notFound('department');
      return { id: d.id, name: d.name, parent_id: d.parent_id, created_at: d.created_at };
    });

  /** Creates a human. Throws 403 admin_required, 409 email_taken. Audits human.created. */
  const createHuman = (ctx: RequestContext, body: z.infer<typeof createHumanBody>) =>
    guard.change(ctx, 'human.created', null, async (tx) => {
      requireAdmin(ctx);
      const row: HumansTable = {
        id: newId('human'),
        org_id: ctx.principal.orgId,
        name: body.name,
        email: body.email,
        roles: JSON.stringify([...new Set(body.roles)]),
        is_active: 1,
        created_at: now(),
        deactivated_at: null,
        npi: body.npi ?? null,
      };
      try {
        await tx.insertInto('humans').values(row).execute();
      } catch (e) {
        if (isUniqueViolation(e)) throw conflict('email_taken', 'A human with this email already exists in the organization.');
        throw e;
      }
      await guard.recordIn(tx, ctx, 'human.created', { type: 'human', id: row.id }, { roles: JSON.parse(row.roles) });
      return humanView(row);
    });

  const getHuman = (ctx: RequestContext, id: string) =>
    guard.read(ctx, 'human.read', { type: 'human', id }, async () => {
      requireHuman(ctx);
      const h = await repo.human(db, ctx.principal.orgId, id);
      if (!h) throw notFound('human');
      return humanView(h);
    });

  const listHumans = (ctx: RequestContext) =>
    guard.read(ctx, 'human.list', null, async () => {
      requireHuman(ctx);
      const rows = await db.selectFrom('humans').selectAll().where('org_id', '=', ctx.principal.orgId).orderBy('id').execute();
      return rows.map(humanView);
    });

  /**
   * Deactivates a human: their keys stop working at once; the row stays so history
   * remains attributable. Throws 409 last_admin, 409 human_responsible_for_agents.
   */
  const deactivateHuman = (ctx: RequestContext, id: string) =>
    guard.change(
      ctx,
      'human.deactivated',
      { type: 'human', id },
      async (tx) => {
        requireAdmin(ctx);
        const h = await repo.human(tx, ctx.principal.orgId, id);
        if (!h) throw notFound('human');
        if (h.is_active === 1) {
          const roles = JSON.parse(h.roles) as Role[];
          if (roles.includes('admin') && (await repo.activeAdminCount(tx, h.org_id)) <= 1) {
            throw conflict('last_admin', 'The last active admin cannot be deactivated.');
          }
          const responsible = await tx
            .selectFrom('agents')
            .select('id')
            .where('responsible_human_id', '=', id)
            .where('is_active', '=', 1)
            .executeTakeFirst();
          if (responsible) {
            throw conflict(
              'human_responsible_for_agents',
              'This human is responsible for active agents; reassign them (PATCH /v1/agents/{id}) first.',
            );
          }
          await tx.updateTable('humans').set({ is_active: 0, deactivated_at: now() }).where('id', '=', id).execute();
          // 45 CFR 164.308(a)(3)(ii)(C) termination: every session ends with the deactivation, in every process.
          const ended = await accountsRepo.endSessions(tx, id, now(), 'deactivated');
          // Every OAuth grant they gave ends with them (revoked, each with its own audit event, in this transaction).
          const grants = await revokeOauth(tx, { humanId: id }, 'human_deactivated');
          await guard.recordIn(
            tx,
            ctx,
            'human.deactivated',
            { type: 'human', id },
            { sessions_ended: ended, oauth_grants_revoked: grants },
          );
        }
        return humanView((await repo.human(tx, ctx.principal.orgId, id))!);
      },
      { invalidatesAuth: true },
    );

  const allocateAddress = async (tx: Executor, base: string, domain: string, explicit: boolean): Promise<string> => {
    for (let n = 1; n <= 1000; n++) {
      const local = n === 1 ? base : `${base}-${n}`;
      const address = `${local}@${domain}`;
      const taken = await tx.selectFrom('agents').select('id').where('address', '=', address).executeTakeFirst();
      if (!taken) return address;
      if (explicit) throw conflict('address_taken', 'That address is already in use.');
    }
    throw conflict('address_taken', 'No free address could be found for this agent name.');
  };

  /**
   * Creates an agent with a unique address on the organisation's domain.
   * Throws 403 admin_required, 404 for a department or responsible human not in
   * the org, 422 responsible_human_inactive, 409 address_taken. Audits agent.created.
   */
  const createAgent = (ctx: RequestContext, body: z.infer<typeof createAgentBody>) =>
    guard.change(ctx, 'agent.created', null, async (tx) => {
      requireAdmin(ctx);
      const orgId = ctx.principal.orgId;
      const org = await repo.org(tx, orgId);
      if (!org) throw notFound('organization');
      if (!(await repo.department(tx, orgId, body.department_id))) throw notFound('department');
      const h = await repo.human(tx, orgId, body.responsible_human_id);
      if (!h) throw notFound('responsible human');
      if (h.is_active !== 1) throw unprocessable('responsible_human_inactive', 'The responsible human is deactivated.');
      const address = await allocateAddress(tx, body.address_local_part ?? slugify(body.name), org.domain, !!body.address_local_part);
      const row: AgentsTable = {
        id: newId('agent'),
        org_id: orgId,
        department_id: body.department_id,
        responsible_human_id: h.id,
        name: body.name,
        address,
        is_active: 1,
        created_at: now(),
        deactivated_at: null,
      };
      try {
        await tx.insertInto('agents').values(row).execute();
      } catch (e) {
        if (isUniqueViolation(e))
          throw new AppError('address_taken', 409, 'That address was taken concurrently; retry.', { temporary: true });
        throw e;
      }
      const view = await agentView(tx, row);
      await guard.recordIn(
        tx,
        ctx,
        'agent.created',
        { type: 'agent', id: row.id },
        {
          department_id: row.department_id,
          responsible_human_id: row.responsible_human_id,
          delegation_chain: view.delegation_chain,
        },
      );
      return view;
    });

  /** Agents see only themselves; humans of the org see every agent of the org. */
  const getAgent = (ctx: RequestContext, id: string) =>
    guard.read(ctx, 'agent.read', { type: 'agent', id }, async () => {
      if (ctx.principal.type === 'agent' && ctx.principal.id !== id) throw notFound('agent');
      const a = await repo.agent(db, ctx.principal.orgId, id);
      if (!a) throw notFound('agent');
      return agentView(db, a);
    });

  const listAgents = (ctx: RequestContext) =>
    guard.read(ctx, 'agent.list', null, async () => {
      let q = db.selectFrom('agents').selectAll().where('org_id', '=', ctx.principal.orgId).orderBy('id');
      if (ctx.principal.type === 'agent') q = q.where('id', '=', ctx.principal.id);
      const rows = await q.execute();
      return Promise.all(rows.map((a) => agentView(db, a)));
    });

  /** Moves an agent or hands it to another responsible human. Audits agent.updated with before/after ids. */
  const updateAgent = (ctx: RequestContext, id: string, body: z.infer<typeof updateAgentBody>) =>
    guard.change(
      ctx,
      'agent.updated',
      { type: 'agent', id },
      async (tx) => {
        requireAdmin(ctx);
        const orgId = ctx.principal.orgId;
        const a = await repo.agent(tx, orgId, id);
        if (!a) throw notFound('agent');
        if (body.department_id && !(await repo.department(tx, orgId, body.department_id))) throw notFound('department');
        if (body.responsible_human_id) {
          const h = await repo.human(tx, orgId, body.responsible_human_id);
          if (!h) throw notFound('responsible human');
          if (h.is_active !== 1) throw unprocessable('responsible_human_inactive', 'The responsible human is deactivated.');
        }
        const changes = {
          ...(body.name ? { name: body.name } : {}),
          ...(body.department_id ? { department_id: body.department_id } : {}),
          ...(body.responsible_human_id ? { responsible_human_id: body.responsible_human_id } : {}),
        };
        await tx.updateTable('agents').set(changes).where('id', '=', id).execute();
        const after = (await repo.agent(tx, orgId, id))!;
        // The previous responsible human's OAuth grants for this agent end with their responsibility (unless they are
        // an admin, who may act for any agent): revoked, so handing the agent back does not revive them.
        let grants = 0;
        if (after.responsible_human_id !== a.responsible_human_id) {
          const before = await repo.human(tx, orgId, a.responsible_human_id);
          if (!before || !(JSON.parse(before.roles) as Role[]).includes('admin')) {
            grants = await revokeOauth(tx, { agentId: id, humanId: a.responsible_human_id }, 'agent_reassigned');
          }
        }
        await guard.recordIn(
          tx,
          ctx,
          'agent.updated',
          { type: 'agent', id },
          {
            before: { department_id: a.department_id, responsible_human_id: a.responsible_human_id },
            after: { department_id: after.department_id, responsible_human_id: after.responsible_human_id },
            ...(grants > 0 ? { oauth_grants_revoked: grants } : {}),
          },
        );
        return agentView(tx, after);
      },
      { invalidatesAuth: true },
    );

  /** Deactivates an agent: its keys stop working at once; never hard-deleted. Audits agent.deactivated. */
  const deactivateAgent = (ctx: RequestContext, id: string) =>
    guard.change(
      ctx,
      'agent.deactivated',
      { type: 'agent', id },
      async (tx) => {
        requireAdmin(ctx);
        const a = await repo.agent(tx, ctx.principal.orgId, id);
        if (!a) throw notFound('agent');
        if (a.is_active === 1) {
          await tx.updateTable('agents').set({ is_active: 0, deactivated_at: now() }).where('id', '=', id).execute();
          const grants = await revokeOauth(tx, { agentId: id }, 'agent_deactivated');
          await guard.recordIn(
            tx,
            ctx,
            'agent.deactivated',
            { type: 'agent', id },
            grants > 0 ? { oauth_grants_revoked: grants } : undefined,
          );
        }
        return agentView(tx, (await repo.agent(tx, ctx.principal.orgId, id))!);
      },
      { invalidatesAuth: true },
    );

  /** GET /v1/me: who the key belongs to, its chain, and its roles or scopes (no store query: all resolved at authentication). */
  const me = async (ctx: RequestContext) => {
    const p = ctx.principal;
    const base = {
      principal: { id: p.id, type: p.type, name: p.name },
      organization: p.org,
      delegation_chain: p.chain,
      key_id: p.keyId,
    };
    if (p.type === 'human') return { ...base, roles: p.roles };
    return { ...base, scopes: p.scopes, address: p.address, responsible_human: p.responsibleHuman };
  };

  return {
    createDepartment,
    listDepartments,
    getDepartment,
    createHuman,
    getHuman,
    listHumans,
    deactivateHuman,
    createAgent,
    getAgent,
    listAgents,
    updateAgent,
    deactivateAgent,
    me,
  };
};

export type IdentityService = ReturnType<typeof createIdentityService>;
