import { sql } from 'kysely';
import type { Executor } from '../store/db.js';
import type { AgentsTable, HumansTable } from '../store/schema.js';
import type { ChainEntry, Role } from './principal.js';

const MAX_DEPARTMENT_DEPTH = 32;

export const createIdentityRepo = () => {
  const org = (db: Executor, id: string) => db.selectFrom('organizations').selectAll().where('id', '=', id).executeTakeFirst();

  const department = (db: Executor, orgId: string, id: string) =>
    db.selectFrom('departments').selectAll().where('id', '=', id).where('org_id', '=', orgId).executeTakeFirst();

  const human = (db: Executor, orgId: string, id: string) =>
    db.selectFrom('humans').selectAll().where('id', '=', id).where('org_id', '=', orgId).executeTakeFirst();

  const agent = (db: Executor, orgId: string, id: string) =>
    db.selectFrom('agents').selectAll().where('id', '=', id).where('org_id', '=', orgId).executeTakeFirst();

  /** Departments from the root down to `departmentId` (one recursive query on both dialects). */
  const departmentPath = async (db: Executor, departmentId: string): Promise<{ id: string; name: string }[]> => {
    const r = await sql<{ id: string; name: string; depth: number }>`
      with recursive anc(id, name, parent_id, depth) as (
        select id, name, parent_id, 0 from departments where id = ${departmentId}
        union all
        select d.id, d.name, d.parent_id, anc.depth + 1
          from departments d join anc on d.id = anc.parent_id
         where anc.depth < ${MAX_DEPARTMENT_DEPTH}
      )
      select id, name, depth from anc order by depth desc`.execute(db);
    return r.rows.map((x) => ({ id: x.id, name: x.name }));
  };

  /** organisation > department(s) > agent (CONTRACT.md, POST /v1/agents). */
  const agentChain = async (
    db: Executor,
    a: Pick<AgentsTable, 'id' | 'org_id' | 'name' | 'department_id'>,
    orgName: string,
  ): Promise<ChainEntry[]> => [
    { type: 'organization', id: a.org_id, name: orgName },
    ...(await departmentPath(db, a.department_id)).map((d) => ({ type: 'department' as const, ...d })),
    { type: 'agent', id: a.id, name: a.name },
  ];

  const humanChain = (h: HumansTable, orgName: string): ChainEntry[] => [
    { type: 'organization', id: h.org_id, name: orgName },
    { type: 'human', id: h.id, name: h.name },
  ];

  const activeAdminCount = async (db: Executor, orgId: string): Promise<number> => {
    const rows = await db.selectFrom('humans').select(['roles']).where('org_id', '=', orgId).where('is_active', '=', 1).execute();
    return rows.filter((r) => (JSON.parse(r.roles) as Role[]).includes('admin')).length;
  };

  return { org, department, human, agent, departmentPath, agentChain, humanChain, activeAdminCount };
};

export type IdentityRepo = ReturnType<typeof createIdentityRepo>;
