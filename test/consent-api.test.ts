import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixedClock } from '../src/kernel/clock.js';
import { consentGate } from '../src/phi/consent-service.js';
import { testDialects } from './support/dialects.js';
import { createTestApp, seedAgent, type TestApp } from './support/test-app.js';

const hashOf = (address: string) => createHash('sha256').update(address.trim().toLowerCase()).digest('hex').slice(0, 40);
const path = (email: string) => `/v1/contacts/${encodeURIComponent(email)}/consent`;

const humanKey = async (t: TestApp, roles: string[]) => {
  const h = await t.call('POST', '/v1/humans', t.adminKey, {
    name: `Staff ${roles.join(' ')}`,
    email: `staff.${Math.random().toString(36).slice(2, 8)}@hospital.example`,
    roles,
  });
  const k = await t.call('POST', `/v1/humans/${h.body.id}/api-keys`, t.adminKey, {});
  if (k.status !== 201) throw new Error(JSON.stringify(k.body));
  return k.body.key as string;
};

for (const dialect of testDialects()) {
  describe(`patient consent over REST (${dialect})`, () => {
    let t: TestApp;
    const clock = fixedClock('2026-03-02T09:00:00Z');
    beforeAll(async () => {
      t = await createTestApp(dialect, { clock });
    });
    afterAll(async () => {
      await t?.close();
    });

    it('answers unknown for a contact nobody recorded, then what a privacy officer records', async () => {
      const officer = await humanKey(t, ['privacy_officer']);
      const unknown = await t.call('GET', path('maria.lopez@patient.example'), officer);
      expect(unknown.status).toBe(200);
      expect(unknown.body).toMatchObject({
        email: 'maria.lopez@patient.example',
        status: 'unknown',
        electronic: null,
        categories: [],
        version: 0,
      });

      const put = await t.call('PUT', path('Maria.Lopez@Patient.example'), officer, {
        electronic: true,
        categories: ['results', 'appointment', 'results'],
        source: 'paper_form',
        recorded_at: '2026-03-01T15:30:00Z',
      });
      expect(put.status).toBe(200);
      expect(put.body).toMatchObject({
        email: 'maria.lopez@patient.example',
        status: 'granted',
        electronic: true,
        categories: ['appointment', 'results'],
        source: 'paper_form',
        recorded_at: '2026-03-01T15:30:00.000Z',
        version: 1,
      });

      // The address is case-insensitive: one patient, one record.
      const read = await t.call('GET', path('MARIA.LOPEZ@patient.example'), officer);
      expect(read.body).toMatchObject({ status: 'granted', version: 1, recorded_by: { type: 'human' } });
      // Reading consent is itself audited (whether someone is a patient is PHI).
      const reads = await t.call(
        'GET',
        `/v1/audit/events?action=consent.read&target_id=${hashOf('maria.lopez@patient.example')}`,
        t.adminKey,
      );
      expect(reads.body.events.map((e: any) => e.details.status)).toEqual(['unknown', 'granted']);
    });

    it('audits every change under the address hash, never the address', async () => {
      const email = 'james.okafor@patient.example';
      await t.call('PUT', path(email), t.adminKey, { electronic: true, categories: ['billing'], source: 'patient_portal' });
      await t.call('PUT', path(email), t.adminKey, { electronic: false, categories: [], source: 'verbal' });
      const ev = await t.call('GET', `/v1/audit/events?action=consent.recorded&target_id=${hashOf(email)}`, t.adminKey);
      expect(ev.status).toBe(200);
      expect(ev.body.events).toHaveLength(2);
      expect(ev.body.events[0].target).toEqual({ type: 'contact', id: hashOf(email) });
      expect(ev.body.events[1].details).toMatchObject({
        electronic: false,
        categories: [],
        source: 'verbal',
        version: 2,
        previous: { electronic: true, categories: ['billing'] },
      });
      const all = await t.call('GET', '/v1/audit/events?limit=500', t.adminKey);
      expect(JSON.stringify(all.body)).not.toContain('okafor');
      expect(JSON.stringify(all.body)).not.toContain('lopez');
    });

    it('lets an agent with mail:send read consent and record a refusal, but never a grant', async () => {
      const a = await seedAgent(t, 'Reminder Agent');
      const email = 'aisha.nguyen@patient.example';
      const read = await t.call('GET', path(email), a.agentKey);
      expect(read.status).toBe(200);
      expect(read.body.status).toBe('unknown');

      const grant = await t.call('PUT', path(email), a.agentKey, { electronic: true, categories: ['appointment'], source: 'email_reply' });
      expect(grant.status).toBe(403);
      expect(grant.body.code).toBe('consent_grant_requires_human');
      expect(JSON.stringify(grant.body)).not.toContain('aisha');

      const refuse = await t.call('PUT', path(email), a.agentKey, { electronic: false, categories: [], source: 'email_reply' });
      expect(refuse.status).toBe(200);
      expect(refuse.body).toMatchObject({ status: 'refused', recorded_by: { type: 'agent', id: a.agent.id } });

      const denied = await t.call('GET', `/v1/audit/events?action=consent.recorded&target_id=${hashOf(email)}`, t.adminKey);
      expect(denied.body.events.map((e: any) => e.outcome)).toEqual(['denied', 'success']);
    });

    it('refuses readers and writers without the right role or scope', async () => {
      const reviewer = await humanKey(t, ['reviewer']);
      const email = 'wei.chen@patient.example';
      expect((await t.call('GET', path(email), reviewer)).status).toBe(200);
      const w = await t.call('PUT', path(email), reviewer, { electronic: true, categories: [], source: 'verbal' });
      expect(w.status).toBe(403);
      expect(w.body.code).toBe('role_required');

      const readOnlyAgent = await seedAgent(t, 'Reader Agent', ['mail:read']);
      const r = await t.call('GET', path(email), readOnlyAgent.agentKey);
      expect(r.status).toBe(403);
      expect(r.body.code).toBe('scope_required');
      expect((await t.call('GET', path(email), null)).status).toBe(401);
    });

    it('validates the address, the categories, the source and the time at the edge', async () => {
      const bad = await t.call('PUT', path('not-an-address'), t.adminKey, { electronic: true, categories: [], source: 'verbal' });
      expect(bad.status).toBe(400);
      expect(JSON.stringify(bad.body)).not.toContain('not-an-address');
      const cat = await t.call('PUT', path('a@patient.example'), t.adminKey, {
        electronic: true,
        categories: ['marketing'],
        source: 'verbal',
      });
      expect(cat.status).toBe(400);
      const prose = await t.call('PUT', path('a@patient.example'), t.adminKey, {
        electronic: true,
        categories: [],
        source: 'Patient said yes at the desk, DOB 1/2/1950',
      });
      expect(prose.status).toBe(400);
      const extra = await t.call('PUT', path('a@patient.example'), t.adminKey, {
        electronic: true,
        categories: [],
        source: 'verbal',
        note: 'x',
      });
      expect(extra.status).toBe(400);
      const future = await t.call('PUT', path('a@patient.example'), t.adminKey, {
        electronic: true,
        categories: [],
        source: 'verbal',
        recorded_at: '2026-03-03T09:00:00Z',
      });
      expect(future.status).toBe(422);
      expect(future.body.code).toBe('recorded_at_in_future');
      const mixed = await t.call('PUT', path('a@patient.example'), t.adminKey, {
        electronic: false,
        categories: ['billing'],
        source: 'verbal',
      });
      expect(mixed.status).toBe(422);
      expect(mixed.body.code).toBe('categories_without_consent');
    });

    it('keeps each organisation’s consent apart', async () => {
      const other = await t.c.init({ orgName: 'Other Clinic', domain: `other-consent-${dialect}.example` });
      const email = 'shared.patient@patient.example';
      await t.call('PUT', path(email), t.adminKey, { electronic: false, categories: [], source: 'verbal' });
      const theirs = await t.call('GET', path(email), other!.admin_api_key);
      expect(theirs.body.status).toBe('unknown');
    });

    it('gives the send path refuse, hold or send from consentFor and consentGate', async () => {
      const email = 'gate.patient@patient.example';
      expect(consentGate(await t.c.consent.consentFor(t.orgId, email), { hasPhi: true })).toBe('hold');
      expect(consentGate(await t.c.consent.consentFor(t.orgId, email), { hasPhi: false })).toBe('send');
      await t.call('PUT', path(email), t.adminKey, { electronic: true, categories: ['appointment'], source: 'patient_portal' });
      const granted = await t.c.consent.consentFor(t.orgId, 'Gate.Patient@patient.example');
      expect(granted).toEqual({ status: 'granted', categories: ['appointment'] });
      expect(consentGate(granted, { hasPhi: true, category: 'appointment' })).toBe('send');
      expect(consentGate(granted, { hasPhi: true, category: 'results' })).toBe('hold');
      await t.call('PUT', path(email), t.adminKey, { electronic: false, categories: [], source: 'verbal' });
      expect(consentGate(await t.c.consent.consentFor(t.orgId, email), { hasPhi: false })).toBe('refuse');
    });
  });
}
