import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { openStore } from '../src/store/db.js';
import { freshDatabase, testDialects } from './support/dialects.js';
import { runCli, type ServerProcess, startServer } from './support/processes.js';

// RFC 6238 Appendix B SHA1 seed "12345678901234567890", as a new user would paste it from a portal's QR page.
const SEED_B32 = 'GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ';
const SEED_HEX = Buffer.from('12345678901234567890').toString('hex');
const PASSWORD = 'Portal-Pa55word-for-journey';

/** One curl call, as in the README: JSON in, JSON and the status out. */
const curl = (base: string, key: string, method: string, url: string, input?: unknown) => {
  const args = ['-sS', '--max-time', '20', '-X', method, '-H', `Authorization: Bearer ${key}`, '-w', '\n%{http_code}'];
  if (input !== undefined) args.push('-H', 'content-type: application/json', '--data', JSON.stringify(input));
  const out = execFileSync('curl', [...args, `${base}${url}`], { encoding: 'utf8' });
  const cut = out.lastIndexOf('\n');
  const text = out.slice(0, cut);
  let body: any;
  try {
    body = JSON.parse(text);
  } catch {
    /* not JSON (the docs page, metrics) */
  }
  return { status: Number(out.slice(cut + 1)), text, body };
};

/** Every form the seed could leak in: base32 (whole and partial), the raw bytes as hex, base64 and latin1. */
const seedForms = [
  SEED_B32,
  SEED_B32.slice(0, 16),
  SEED_HEX,
  Buffer.from('12345678901234567890').toString('base64'),
  '12345678901234567890',
];

const oathtool = (at: Date) =>
  execFileSync(
    'oathtool',
    ['--totp=sha1', '-d', '6', '-s', '30s', '-N', `${at.toISOString().replace('T', ' ').slice(0, 19)} UTC`, SEED_HEX],
    { encoding: 'utf8' },
  ).trim();

for (const dialect of testDialects()) {
  describe(`a new user with curl against mailward serve (${dialect})`, () => {
    it('stores a portal password and a TOTP seed, gets codes that match oathtool, and cannot get the seed back by any route', async () => {
      const db = await freshDatabase(dialect);
      let server: ServerProcess | undefined;
      try {
        server = await startServer(db.env);
        const base = `http://127.0.0.1:${server.port}`;
        const admin = fs.readFileSync(path.join(db.dataDir, 'bootstrap-admin.key'), 'utf8').trim();
        const dep = curl(base, admin, 'POST', '/v1/departments', { name: 'Cardiology' });
        const hum = curl(base, admin, 'POST', '/v1/humans', {
          name: 'Dr. Ana Rivera',
          email: 'ana.rivera@hospital.example',
          roles: ['reviewer'],
        });
        const agent = curl(base, admin, 'POST', '/v1/agents', {
          name: 'Refill Assistant',
          department_id: dep.body.id,
          responsible_human_id: hum.body.id,
        });
        expect([dep.status, hum.status, agent.status]).toEqual([201, 201, 201]);
        const key = curl(base, admin, 'POST', `/v1/agents/${agent.body.id}/api-keys`, {}).body.key as string;

        expect(
          curl(base, key, 'PUT', '/v1/vault/secrets/epic-portal', { kind: 'password', value: PASSWORD, username: 'svc-refill' }).status,
        ).toBe(200);
        expect(curl(base, key, 'PUT', '/v1/vault/secrets/epic-2fa', { kind: 'totp', value: SEED_B32 }).status).toBe(200);
        for (let i = 0; i < 3; i++) {
          const code = curl(base, key, 'POST', '/v1/vault/secrets/epic-2fa/totp');
          expect(code.status).toBe(200);
          // The code belongs to the 30-second step that ends at expires_at.
          const step = new Date(new Date(code.body.expires_at).getTime() - 30_000);
          expect(code.body.code).toBe(oathtool(step));
        }

        // Every GET route in the OpenAPI document, with the agent's and the admin's keys, path
        // parameters filled with this secret and agent: the seed comes back from none of them.
        const paths = Object.entries(curl(base, admin, 'GET', '/openapi.json').body.paths as Record<string, Record<string, unknown>>);
        const fill = (p: string) =>
          p
            .replace(/\{name\}/g, 'epic-2fa')
            .replace(/\{(agent_)?id\}/g, agent.body.id)
            .replace(/\{seq\}/g, '1')
            .replace(/\{[a-z_]+\}/g, 'x');
        // Server-Sent Events streams never end on their own: they are checked in their own tests.
        const urls = paths.filter(([p, ops]) => 'get' in ops && !p.endsWith('/stream')).map(([p]) => fill(p));
        urls.push(
          '/v1/vault/secrets/epic-2fa',
          `/v1/vault/secrets?agent_id=${agent.body.id}`,
          `/v1/vault/secrets/epic-2fa?agent_id=${agent.body.id}`,
          '/v1/audit/events?limit=500',
        );
        expect(urls).toContain('/v1/vault/secrets/epic-2fa');
        let answered = 0;
        for (const url of urls) {
          for (const k of [key, admin]) {
            const r = curl(base, k, 'GET', url);
            if (r.status === 200) answered++;
            for (const form of seedForms) expect([url, r.text.includes(form)]).toEqual([url, false]);
          }
        }
        expect(answered).toBeGreaterThan(5);
        const reveal = curl(base, key, 'GET', '/v1/vault/secrets/epic-2fa');
        expect(reveal.status).toBe(403);
        // Nor from the CLI's audit export, nor from the server's own log; and the audit log verifies.
        const exported = await runCli(['audit', 'export'], db.env);
        expect(exported.code).toBe(0);
        expect(exported.stdout).toContain('vault.totp.generated');
        const verified = await runCli(['audit', 'verify'], db.env);
        expect(verified.code).toBe(0);
        for (const form of [...seedForms, PASSWORD]) {
          expect(exported.stdout).not.toContain(form);
          expect(server.output()).not.toContain(form);
        }

        // At rest the values are sealed: no column of any vault row holds them.
        const store = openStore(
          dialect === 'sqlite' ? { kind: 'sqlite', file: path.join(db.dataDir, 'mailward.db') } : { kind: 'postgres', url: db.url! },
        );
        try {
          const rows = JSON.stringify(await store.db.selectFrom('vault_secret_versions').selectAll().execute());
          // Every sealed value is the binary envelope (format byte 2, src/kernel/crypto/envelope.ts).
          expect(rows).toMatch(/"type":"Buffer","data":\[2,/);
          for (const form of [...seedForms, PASSWORD]) expect(rows).not.toContain(form);
        } finally {
          await store.destroy();
        }
      } finally {
        await server?.stop();
        await db.drop();
      }
    });

    it('refuses to start `mailward serve` with a wrong master key, with a clear message', async () => {
      const db = await freshDatabase(dialect);
      try {
        const first = await startServer(db.env);
        await first.stop();
        const wrong = Buffer.alloc(32, 7).toString('base64');
        await expect(startServer({ ...db.env, MAILWARD_MASTER_KEY: wrong })).rejects.toThrow(
          /server exited early \(2\):[\s\S]*not the key this store was initialised with\. Refusing to start; no data was touched\. \(master_key_mismatch\)/,
        );
      } finally {
        await db.drop();
      }
    });
  });
}
