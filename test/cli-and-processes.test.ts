import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { freshDatabase, testDialects } from './support/dialects.js';
import { runCli, type ServerProcess, startServer } from './support/processes.js';

const api = async (port: number, method: string, url: string, key: string | null, body?: unknown) => {
  const r = await fetch(`http://127.0.0.1:${port}${url}`, {
    method,
    headers: { ...(key ? { authorization: `Bearer ${key}` } : {}), ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : undefined, headers: r.headers };
};

describe('configuration', () => {
  it('stops start-up listing every bad setting', async () => {
    const r = await runCli(['serve'], { MAILWARD_HTTP_PORT: 'eighty', MAILWARD_AUDIT_RETENTION_DAYS: '30', DATABASE_URL: 'mysql://x' });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('MAILWARD_HTTP_PORT');
    expect(r.stderr).toContain('MAILWARD_AUDIT_RETENTION_DAYS');
    expect(r.stderr).toContain('DATABASE_URL');
  });

  it('answers --help on every command', async () => {
    for (const args of [['--help'], ['serve', '--help'], ['init', '--help']]) {
      const r = await runCli(args, {});
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/Usage: mailward/);
    }
  });
});

for (const dialect of testDialects()) {
  describe(`the mailward CLI and server processes (${dialect})`, () => {
    const cleanups: (() => Promise<void>)[] = [];
    afterAll(async () => {
      for (const c of cleanups.reverse()) await c();
    });

    it('init --json creates an organization and prints its admin key and DNS records', async () => {
      const db = await freshDatabase(dialect);
      cleanups.push(db.drop);
      const r = await runCli(['init', '--org', 'St. Example Hospital', '--domain', 'st-example.org', '--json'], db.env);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      const out = JSON.parse(r.stdout);
      expect(out.domain).toBe('st-example.org');
      expect(out.admin_api_key).toMatch(/^mw_key_[0-9a-f]{32}_[0-9a-f]{64}$/);
      const names = out.dns_records.map((d: { name: string }) => d.name);
      expect(names).toEqual(expect.arrayContaining(['st-example.org', '_dmarc.st-example.org']));
      const dkim = out.dns_records.filter((d: { value: string }) => d.value.startsWith('v=DKIM1'));
      expect(dkim.map((d: { value: string }) => /k=(\w+)/.exec(d.value)![1]).sort()).toEqual(['ed25519', 'rsa']);
      expect(fs.statSync(path.join(db.dataDir, 'master.key')).mode & 0o777).toBe(0o600);
      const again = await runCli(['init', '--org', 'Dup', '--domain', 'st-example.org', '--json'], db.env);
      expect(again.code).toBe(1);
      expect(again.stderr).toContain('org_exists');
    });

    it('first start on an empty store writes the admin key to a 0600 file and prints only its path', async () => {
      const db = await freshDatabase(dialect);
      cleanups.push(db.drop);
      const s = await startServer({ ...db.env, MAILWARD_DOMAIN: 'first-start.example' });
      cleanups.push(s.stop);
      const file = path.join(db.dataDir, 'bootstrap-admin.key');
      const key = fs.readFileSync(file, 'utf8').trim();
      expect(fs.statSync(file).mode & 0o777).toBe(0o600);
      expect(s.output()).toContain(file);
      expect(s.output()).not.toContain(key.split('_').at(-1));
      const me = await api(s.port, 'GET', '/v1/me', key);
      expect(me.status).toBe(200);
      expect(me.body.organization.domain).toBe('first-start.example');
      expect(me.body.delegation_chain[0].type).toBe('organization');
    });

    if (dialect === 'postgres') {
      it('serves correctly from two processes on one database, with one shared rate limit', async () => {
        const db = await freshDatabase(dialect);
        cleanups.push(db.drop);
        const env = { ...db.env, MAILWARD_RATE_LIMIT_PER_MINUTE: '8', MAILWARD_RATE_LIMIT_SYNC_MS: '0' };
        // Both start on the empty database at once: migrations and bootstrap must not collide.
        const [a, b] = (await Promise.all([startServer(env), startServer({ ...env, MAILWARD_DATA_DIR: db.dataDir })])) as [
          ServerProcess,
          ServerProcess,
        ];
        cleanups.push(a.stop, b.stop);
        const key = fs.readFileSync(path.join(db.dataDir, 'bootstrap-admin.key'), 'utf8').trim();
        // A fixed one-minute window: every counted request below must fall in the same one.
        const msIntoMinute = Date.now() % 60_000;
        if (msIntoMinute > 50_000) await new Promise((r) => setTimeout(r, 60_500 - msIntoMinute));
        const dep = await api(a.port, 'POST', '/v1/departments', key, { name: 'Radiology' });
        expect(dep.status).toBe(201);
        const fromB = await api(b.port, 'GET', `/v1/departments/${dep.body.id}`, key);
        expect(fromB.status).toBe(200);
        expect(fromB.body.name).toBe('Radiology');
        const orgs = await api(b.port, 'GET', '/v1/me', key);
        expect(orgs.status).toBe(200);
        // 8 per minute across both processes: 3 used above, 5 more allowed, then 429 on either.
        const statuses: number[] = [];
        for (let i = 0; i < 8; i++) statuses.push((await api(i % 2 ? a.port : b.port, 'GET', '/v1/me', key)).status);
        expect(statuses.filter((x) => x === 200)).toHaveLength(5);
        expect(statuses.slice(0, 5).every((x) => x === 200)).toBe(true);
        expect(statuses.slice(5).every((x) => x === 429)).toBe(true);
        const limited = await api(a.port, 'GET', '/v1/me', key);
        expect(limited.body.code).toBe('rate_limited');
        expect(limited.headers.get('retry-after')).toBeTruthy();
      });

      it('stops a key revoked through one process in the other within the cache poll interval', async () => {
        const db = await freshDatabase(dialect);
        cleanups.push(db.drop);
        const env = { ...db.env, MAILWARD_AUTH_CACHE_MS: '100' };
        const a = await startServer(env);
        const b = await startServer(env);
        cleanups.push(a.stop, b.stop);
        const admin = fs.readFileSync(path.join(db.dataDir, 'bootstrap-admin.key'), 'utf8').trim();
        const me = await api(a.port, 'GET', '/v1/me', admin);
        const dep = await api(a.port, 'POST', '/v1/departments', admin, { name: 'Lab' });
        const hum = await api(a.port, 'POST', '/v1/humans', admin, {
          name: 'R',
          email: 'r@first-start.example',
          roles: ['reviewer', 'auditor'],
        });
        const k = await api(a.port, 'POST', `/v1/humans/${hum.body.id}/api-keys`, admin, {});
        expect(dep.status).toBe(201);
        expect(me.status).toBe(200);
        // Warm both processes' caches with the key.
        expect((await api(a.port, 'GET', '/v1/me', k.body.key)).status).toBe(200);
        expect((await api(b.port, 'GET', '/v1/me', k.body.key)).status).toBe(200);
        const rev = await api(b.port, 'DELETE', `/v1/api-keys/${k.body.id}`, admin);
        expect(rev.status).toBe(200);
        expect((await api(b.port, 'GET', '/v1/me', k.body.key)).status).toBe(401);
        await new Promise((r) => setTimeout(r, 400));
        expect((await api(a.port, 'GET', '/v1/me', k.body.key)).status).toBe(401);
      });
    }
  });
}
