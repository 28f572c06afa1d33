import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testDialects } from './support/dialects.js';
import { createTestApp, seedAgent, type TestApp } from './support/test-app.js';

for (const dialect of testDialects()) {
  describe(`identity and keys (${dialect})`, () => {
    let t: TestApp;
    beforeAll(async () => {
      t = await createTestApp(dialect);
    });
    afterAll(async () => {
      await t?.close();
    });

    it('answers the bootstrap admin with its organization and chain', async () => {
      const r = await t.call('GET', '/v1/me', t.adminKey);
      expect(r.status).toBe(200);
      expect(r.body.principal.type).toBe('human');
      expect(r.body.roles).toEqual(['admin']);
      expect(r.body.delegation_chain.map((e: { type: string }) => e.type)).toEqual(['organization', 'human']);
      expect(r.body.organization.domain).toBe('hospital.example');
    });

    it('gives an agent a unique address and the chain organization > department > agent', async () => {
      const parent = await t.call('POST', '/v1/departments', t.adminKey, { name: 'Outpatient' });
      const child = await t.call('POST', '/v1/departments', t.adminKey, { name: 'Scheduling', parent_id: parent.body.id });
      expect(child.status).toBe(201);
      const human = await t.call('POST', '/v1/humans', t.adminKey, {
        name: 'Ana Reviewer',
        email: 'ana@hospital.example',
        roles: ['reviewer'],
      });
      const a1 = await t.call('POST', '/v1/agents', t.adminKey, {
        name: 'Reminder Bot',
        department_id: child.body.id,
        responsible_human_id: human.body.id,
      });
      const a2 = await t.call('POST', '/v1/agents', t.adminKey, {
        name: 'Reminder Bot',
        department_id: child.body.id,
        responsible_human_id: human.body.id,
      });
      expect(a1.status).toBe(201);
      expect(a1.body.address).toBe('reminder-bot@hospital.example');
      expect(a2.body.address).toBe('reminder-bot-2@hospital.example');
      expect(a1.body.delegation_chain).toEqual([
        { type: 'organization', id: t.orgId, name: 'General Hospital' },
        { type: 'department', id: parent.body.id, name: 'Outpatient' },
        { type: 'department', id: child.body.id, name: 'Scheduling' },
        { type: 'agent', id: a1.body.id, name: 'Reminder Bot' },
      ]);
      expect(a1.body.responsible_human).toEqual({ id: human.body.id, name: 'Ana Reviewer' });

      const key = await t.call('POST', `/v1/agents/${a1.body.id}/api-keys`, t.adminKey, {});
      expect(key.body.key).toMatch(/^mw_key_[0-9a-f]{32}_[0-9a-f]{64}$/);
      const me = await t.call('GET', '/v1/me', key.body.key);
      expect(me.status).toBe(200);
      expect(me.body.principal).toEqual({ id: a1.body.id, type: 'agent', name: 'Reminder Bot' });
      expect(me.body.delegation_chain).toEqual(a1.body.delegation_chain);
      expect(me.body.scopes).not.toContain('vault:reveal');
      expect(me.body.address).toBe('reminder-bot@hospital.example');
    });

    it('stores keys only as hashes', async () => {
      const { agentKey, agentKeyId } = await seedAgent(t, 'Hash Check');
      const row = await t.c.store.db.selectFrom('api_keys').selectAll().where('id', '=', agentKeyId).executeTakeFirstOrThrow();
      const secret = agentKey.split('_').at(-1)!;
      expect(JSON.stringify(row)).not.toContain(secret);
      expect(row.secret_hash).toMatch(/^[0-9a-f]{64}$/);
    });

    it('refuses keys that could both send and approve', async () => {
      const { agent, reviewer } = await seedAgent(t, 'Scope Check');
      const agentWithRole = await t.call('POST', `/v1/agents/${agent.id}/api-keys`, t.adminKey, { scopes: ['mail:send', 'reviewer'] });
      expect(agentWithRole.status).toBe(422);
      expect(agentWithRole.body.code).toBe('incompatible_scopes');
      const humanWithSend = await t.call('POST', `/v1/humans/${reviewer.id}/api-keys`, t.adminKey, { scopes: ['reviewer', 'mail:send'] });
      expect(humanWithSend.status).toBe(422);
      expect(humanWithSend.body.code).toBe('incompatible_scopes');
      const notHeld = await t.call('POST', `/v1/humans/${reviewer.id}/api-keys`, t.adminKey, { scopes: ['admin'] });
      expect(notHeld.status).toBe(422);
      expect(notHeld.body.code).toBe('role_not_held');
    });

    it("hides another agent's resources behind 404 and audits the attempt as denied", async () => {
      const a = await seedAgent(t, 'Agent A');
      const b = await seedAgent(t, 'Agent B');
      const r = await t.call('GET', `/v1/agents/${b.agent.id}`, a.agentKey);
      expect(r.status).toBe(404);
      expect(r.body.code).toBe('not_found');
      const own = await t.call('GET', `/v1/agents/${a.agent.id}`, a.agentKey);
      expect(own.status).toBe(200);
      const list = await t.call('GET', '/v1/agents', a.agentKey);
      expect(list.body.agents.map((x: { id: string }) => x.id)).toEqual([a.agent.id]);
      const humans = await t.call('GET', '/v1/humans', a.agentKey);
      expect(humans.status).toBe(404);
      const denied = await t.call('GET', `/v1/audit/events?actor_id=${a.agent.id}`, t.adminKey);
      const events = denied.body.events.filter((e: { outcome: string }) => e.outcome === 'denied');
      expect(events.map((e: { action: string }) => e.action)).toEqual(expect.arrayContaining(['agent.read', 'human.list']));
      const ev = events.find((e: { action: string }) => e.action === 'agent.read');
      expect(ev.target).toEqual({ type: 'agent', id: b.agent.id });
      expect(ev.delegation_chain.map((e: { type: string }) => e.type)).toEqual(['organization', 'department', 'agent']);
    });

    it("hides another organization's resources behind 404", async () => {
      const other = await t.c.init({ orgName: 'Other Clinic', domain: `other-${dialect}.example` });
      const mine = await seedAgent(t, 'Org Check');
      const r = await t.call('GET', `/v1/agents/${mine.agent.id}`, other!.admin_api_key);
      expect(r.status).toBe(404);
      const dep = await t.call('GET', `/v1/departments/${mine.department.id}`, other!.admin_api_key);
      expect(dep.status).toBe(404);
      const mk = await t.call('POST', `/v1/agents/${mine.agent.id}/api-keys`, other!.admin_api_key, {});
      expect(mk.status).toBe(404);
      const rev = await t.call('DELETE', `/v1/api-keys/${mine.agentKeyId}`, other!.admin_api_key);
      expect(rev.status).toBe(404);
      expect((await t.call('GET', '/v1/me', mine.agentKey)).status).toBe(200);
    });

    it('stops a revoked key at once and audits the refusal', async () => {
      const s = await seedAgent(t, 'Revoke Check');
      expect((await t.call('GET', '/v1/me', s.agentKey)).status).toBe(200);
      const rev = await t.call('DELETE', `/v1/api-keys/${s.agentKeyId}`, t.adminKey);
      expect(rev.status).toBe(200);
      expect(rev.body.revoked_at).toBeTruthy();
      const r = await t.call('GET', '/v1/me', s.agentKey);
      expect(r.status).toBe(401);
      expect(r.body.code).toBe('unauthorized');
      const ev = await t.call('GET', `/v1/audit/events?action=auth.denied&target_id=${s.agentKeyId}`, t.adminKey);
      expect(ev.body.events).toHaveLength(1);
      expect(ev.body.events[0].details.reason).toBe('revoked_key');
      expect(ev.body.events[0].outcome).toBe('denied');
    });

    it('stops every key of a deactivated agent or human at once, and keeps their history', async () => {
      const s = await seedAgent(t, 'Deactivate Check');
      const d = await t.call('POST', `/v1/agents/${s.agent.id}/deactivate`, t.adminKey);
      expect(d.status).toBe(200);
      expect(d.body.is_active).toBe(false);
      expect((await t.call('GET', '/v1/me', s.agentKey)).status).toBe(401);
      expect((await t.call('GET', `/v1/agents/${s.agent.id}`, t.adminKey)).body.name).toBe('Deactivate Check');

      const h = await t.call('POST', '/v1/humans', t.adminKey, {
        name: 'Temp Auditor',
        email: 'temp.auditor@hospital.example',
        roles: ['auditor'],
      });
      const hk = await t.call('POST', `/v1/humans/${h.body.id}/api-keys`, t.adminKey, {});
      expect((await t.call('GET', '/v1/me', hk.body.key)).status).toBe(200);
      await t.call('POST', `/v1/humans/${h.body.id}/deactivate`, t.adminKey);
      expect((await t.call('GET', '/v1/me', hk.body.key)).status).toBe(401);
    });

    it('refuses to deactivate the last admin or a human still responsible for agents', async () => {
      const me = await t.call('GET', '/v1/me', t.adminKey);
      const r = await t.call('POST', `/v1/humans/${me.body.principal.id}/deactivate`, t.adminKey);
      expect(r.status).toBe(409);
      expect(r.body.code).toBe('last_admin');
      const s = await seedAgent(t, 'Responsible Check');
      const r2 = await t.call('POST', `/v1/humans/${s.reviewer.id}/deactivate`, t.adminKey);
      expect(r2.status).toBe(409);
      expect(r2.body.code).toBe('human_responsible_for_agents');
    });

    it('lets only admins change identities', async () => {
      const s = await seedAgent(t, 'Admin Check');
      const rk = await t.call('POST', `/v1/humans/${s.reviewer.id}/api-keys`, t.adminKey, {});
      const r = await t.call('POST', '/v1/departments', rk.body.key, { name: 'Nope' });
      expect(r.status).toBe(403);
      expect(r.body.code).toBe('admin_required');
      const byAgent = await t.call('POST', '/v1/departments', s.agentKey, { name: 'Nope' });
      expect(byAgent.status).toBe(403);
    });

    it('records every state change with actor, chain and request id in the same store', async () => {
      const before = await t.c.audit.count();
      const r = await t.call('POST', '/v1/departments', t.adminKey, { name: 'Audited' }, { 'x-request-id': 'trace-123' });
      expect(r.status).toBe(201);
      expect(await t.c.audit.count()).toBe(before + 1);
      const ev = await t.call('GET', `/v1/audit/events?target_id=${r.body.id}`, t.adminKey);
      expect(ev.body.events[0]).toMatchObject({
        action: 'department.created',
        outcome: 'success',
        request_id: 'trace-123',
        actor: { type: 'human' },
      });
    });

    it('fails the change when the audit write fails', async () => {
      const beforeDeps = await t.c.store.db.selectFrom('departments').select('id').execute();
      const original = t.c.audit.record;
      // Simulate a failing audit store: the department insert must roll back with it.
      (t.c.audit as { record: unknown }).record = async () => {
        throw new Error('audit store unavailable');
      };
      try {
        const r = await t.call('POST', '/v1/departments', t.adminKey, { name: 'Must Not Exist' });
        expect(r.status).toBe(500);
        expect(r.body.code).toBe('internal');
      } finally {
        (t.c.audit as { record: unknown }).record = original;
      }
      const afterDeps = await t.c.store.db.selectFrom('departments').select('id').execute();
      expect(afterDeps).toHaveLength(beforeDeps.length);
    });
  });
}
