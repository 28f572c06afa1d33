import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixedClock } from '../src/kernel/clock.js';
import { launchChromium } from './support/browser.js';
import { type CimdHost, startCimdHost } from './support/cimd-host.js';
import { tempDir, testDialects } from './support/dialects.js';
import { inspectorHome, inspectorVersion, runInspector } from './support/inspector.js';
import { freePort } from './support/processes.js';
import { signInWithAgent } from './support/mcp-oauth-client.js';
import { createTestApp, type TestApp } from './support/test-app.js';
import { textIds } from './support/audit-rows.js';

/** The Inspector's result on stdout (`--format json`: one JSON object, `{"result": ...}` or `{"error": ...}`). */
const resultOf = (stdout: string): any => {
  const out = JSON.parse(stdout.trim());
  if (!('result' in out)) throw new Error(`the Inspector answered no result: ${stdout}`);
  return out.result;
};

/** Resolves with the exit code, or fails with what the Inspector printed when it runs past `ms`. */
const exitWithin = async (run: ReturnType<typeof runInspector>, ms: number) => {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      run.child.kill('SIGTERM');
      reject(new Error(`the Inspector did not finish:\n${run.stderr()}\n${run.stdout()}`));
    }, ms);
  });
  try {
    return await Promise.race([run.exited, timeout]);
  } finally {
    clearTimeout(timer);
  }
};

/**
 * A loopback HTTP proxy in front of Mailward that notes each JSON-RPC request's method and the protocol version it
 * names (the MCP-Protocol-Version header, and the 2026-07-28 `_meta` version), passing bodies through untouched.
 */
const recordingProxy = async (target: string) => {
  const seen: { method: string; header: string | undefined; meta: unknown }[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      try {
        const msg = JSON.parse(body.toString('utf8'));
        for (const m of Array.isArray(msg) ? msg : [msg]) {
          if (typeof m?.method === 'string') {
            seen.push({
              method: m.method,
              header: req.headers['mcp-protocol-version'] as string | undefined,
              meta: m.params?._meta?.['io.modelcontextprotocol/protocolVersion'],
            });
          }
        }
      } catch {
        /* not JSON (a GET): nothing to note */
      }
      const u = new URL(req.url ?? '/', target);
      const out = http.request(u, { method: req.method, headers: { ...req.headers, host: u.host } }, (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      });
      out.on('error', () => res.destroy());
      out.end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/mcp`,
    seen,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
};

// The official MCP Inspector 2.x CLI (npm @modelcontextprotocol/inspector) against Mailward: over HTTP it runs the
// OAuth flow itself (discovery, Dynamic Client Registration, PKCE, its loopback callback) while the test plays the
// person in Chromium on the consent page; over stdio it uses an agent API key.
for (const dialect of testDialects()) {
  describe(`MCP Inspector 2.x CLI: HTTP with OAuth, stdio with a key (${dialect})`, () => {
    let t: TestApp;
    let browser: Browser;
    let page: Page;
    let context: BrowserContext;
    let origin = '';
    /** The Inspector CLI against this server's /mcp over HTTP, JSON out: `method` and its flags after. */
    const overHttp = (method: string, ...rest: string[]) => [
      `${origin}/mcp`,
      '--transport',
      'http',
      '--method',
      method,
      ...rest,
      '--format',
      'json',
    ];
    let agentId = '';
    let agentKey = '';
    /** The Inspector's Client ID Metadata Document, on a loopback HTTPS host Mailward is told to trust. */
    let cimd: CimdHost;
    const clock = fixedClock(new Date());

    beforeAll(async () => {
      expect(inspectorVersion()).toMatch(/^2\./);
      const port = await freePort();
      origin = `http://localhost:${port}`;
      cimd = await startCimdHost(tempDir('inspector-cimd'));
      t = await createTestApp(dialect, {
        clock,
        env: { MAILWARD_OAUTH_CIMD_ALLOW_HOSTS: cimd.hostPort, MAILWARD_OAUTH_CIMD_CA_FILE: cimd.cert.caFile },
      });
      await t.app.listen({ host: '127.0.0.1', port });
      browser = await launchChromium();
      ({ page, context, agentId } = await signInWithAgent(browser, t, origin, clock));
      const box = await t.call('POST', '/v1/mailboxes', t.adminKey, {
        agent_id: agentId,
        display_name: 'Ward Assistant',
        oversight_mode: 'autonomous',
      });
      expect(box.status).toBe(201);
      const key = await t.call('POST', `/v1/agents/${agentId}/api-keys`, t.adminKey, {});
      expect(key.status).toBe(201);
      agentKey = key.body.key;
    }, 120_000);
    afterAll(async () => {
      await context?.close();
      await browser?.close();
      t?.app.server.closeAllConnections();
      await t?.close();
      await cimd?.close();
    });

    it('lists the tools over HTTP after running the OAuth flow itself (registration, PKCE, consent in Chromium), then reuses the stored token', async () => {
      const callback = `http://127.0.0.1:${await freePort()}/oauth/callback`;
      // One home for both runs: the second reads the OAuth state the first stored (encrypted with this passphrase).
      const home = inspectorHome();
      const env = { MCP_INSPECTOR_SECRET_STORE: 'file', MCP_INSPECTOR_SECRET_KEY: randomBytes(16).toString('hex') };
      const run = runInspector(overHttp('tools/list', '--callback-url', callback), {
        home,
        env,
      });
      await expect.poll(() => run.authorizationUrl() ?? '', { timeout: 60_000 }).toMatch(/^http:\/\/localhost:\d+\/oauth\/authorize\?/);
      const auth = new URL(run.authorizationUrl()!);
      expect(auth.searchParams.get('code_challenge_method')).toBe('S256');
      expect(auth.searchParams.get('resource')).toBe(`${origin}/mcp`);
      expect(auth.searchParams.get('redirect_uri')).toBe(callback);
      await page.goto(auth.href);
      await page.waitForURL(/\/console\/oauth\//);
      await page.check(`input[name=agent_id][value="${agentId}"]`);
      await page.click('#allow');
      // The consent page sends the browser on to the Inspector's loopback callback; the Inspector redeems the code.
      expect(await exitWithin(run, 90_000), run.stderr()).toBe(0);
      const listed = resultOf(run.stdout());
      const tools = listed.tools as { name: string; annotations?: Record<string, unknown> }[];
      expect(tools.map((x) => x.name)).toEqual(expect.arrayContaining(['whoami', 'send_email', 'read_email']));
      expect(tools.find((x) => x.name === 'send_email')?.annotations).toMatchObject({ destructiveHint: true });

      // The Inspector registered itself (DCR) and got its token as the chosen agent, the human last in the chain.
      await t.c.audit.sync();
      const registered = textIds(
        await t.c.store.db.selectFrom('audit_events').selectAll().where('action', '=', 'oauth.client.registered').execute(),
      );
      expect(registered).toHaveLength(1);
      const clientId = registered[0]!.target_id;
      expect(auth.searchParams.get('client_id')).toBe(clientId);
      const issued = (await t.call('GET', '/v1/audit/events?action=oauth.token.issued&limit=20', t.adminKey)).body.events.filter(
        (e: any) => e.details.client_id === clientId && e.details.token_type === 'access_token',
      );
      expect(issued).toHaveLength(1);
      expect(issued[0].actor).toEqual({ type: 'agent', id: agentId });

      // CI mode: no browser, the stored token only (--stored-auth-only), and whoami answers as the chosen agent.
      const again = runInspector(overHttp('tools/call', '--tool-name', 'whoami', '--stored-auth-only'), { home, env });
      expect(await exitWithin(again, 60_000), again.stderr()).toBe(0);
      expect(again.authorizationUrl()).toBeUndefined();
      expect(JSON.stringify(resultOf(again.stdout()))).toContain(agentId);
    }, 240_000);

    it('runs the OAuth flow as a Client ID Metadata Document client (--client-metadata-url): no registration', async () => {
      const callback = `http://127.0.0.1:${await freePort()}/oauth/callback`;
      const docUrl = cimd.urlOf('/mcp-inspector.json');
      cimd.serve('/mcp-inspector.json', {
        client_id: docUrl,
        client_name: 'MCP Inspector (metadata document)',
        redirect_uris: [callback],
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        token_endpoint_auth_method: 'none',
      });
      await t.c.audit.sync();
      const registeredBefore = (
        await t.c.store.db.selectFrom('audit_events').select('id').where('action', '=', 'oauth.client.registered').execute()
      ).length;
      const run = runInspector(overHttp('tools/list', '--callback-url', callback, '--client-metadata-url', docUrl));
      await expect.poll(() => run.authorizationUrl() ?? '', { timeout: 60_000 }).toMatch(/\/oauth\/authorize\?/);
      const auth = new URL(run.authorizationUrl()!);
      expect(auth.searchParams.get('client_id')).toBe(docUrl);
      await page.goto(auth.href);
      await page.waitForURL(/\/console\/oauth\//);
      expect(await page.textContent('main')).toContain('MCP Inspector (metadata document)');
      await page.check(`input[name=agent_id][value="${agentId}"]`);
      await page.click('#allow');
      expect(await exitWithin(run, 90_000), run.stderr()).toBe(0);
      expect((resultOf(run.stdout()).tools as { name: string }[]).map((x) => x.name)).toContain('whoami');
      expect(cimd.requests).toContain('/mcp-inspector.json');
      await t.c.audit.sync();
      expect(
        (await t.c.store.db.selectFrom('audit_events').select('id').where('action', '=', 'oauth.client.registered').execute()).length,
      ).toBe(registeredBefore);
      const issued = (await t.call('GET', '/v1/audit/events?action=oauth.token.issued&limit=50', t.adminKey)).body.events;
      expect(issued.filter((e: any) => e.details.client_id === docUrl).map((e: any) => e.actor)).toContainEqual({
        type: 'agent',
        id: agentId,
      });
    }, 240_000);

    it('refuses, without a token and without a browser (--stored-auth-only), with auth_required', async () => {
      const run = runInspector(overHttp('tools/list', '--stored-auth-only'));
      expect(await exitWithin(run, 60_000)).not.toBe(0);
      expect(`${run.stdout()}${run.stderr()}`).toContain('auth_required');
      expect(run.authorizationUrl()).toBeUndefined();
    }, 90_000);

    it('speaks both protocol eras to the same endpoint: 2026-07-28 without initialize (--protocol-era modern) and 2025 with it', async () => {
      const proxy = await recordingProxy(origin);
      try {
        const auth = ['--transport', 'http', '--header', `Authorization: Bearer ${agentKey}`, '--format', 'json'];
        const modern = runInspector([proxy.url, ...auth, '--protocol-era', 'modern', '--method', 'tools/list']);
        expect(await exitWithin(modern, 60_000), modern.stderr()).toBe(0);
        const tools = resultOf(modern.stdout()).tools as { name: string }[];
        expect(tools.map((x) => x.name)).toEqual(expect.arrayContaining(['whoami', 'send_email', 'read_email']));
        const call = runInspector([proxy.url, ...auth, '--protocol-era', 'modern', '--method', 'tools/call', '--tool-name', 'whoami']);
        expect(await exitWithin(call, 60_000), call.stderr()).toBe(0);
        expect(JSON.stringify(resultOf(call.stdout()))).toContain(agentId);
        // The modern client never sent initialize; every request named 2026-07-28 in its _meta and its header.
        const modernSeen = [...proxy.seen];
        expect(modernSeen.map((r) => r.method)).toEqual(expect.arrayContaining(['tools/list', 'tools/call']));
        expect(modernSeen.map((r) => r.method)).not.toContain('initialize');
        // It discovers first (server/discover), as the revision has it.
        expect(modernSeen[0]?.method).toBe('server/discover');
        for (const r of modernSeen) expect([r.meta, r.header], r.method).toEqual(['2026-07-28', '2026-07-28']);

        // The same endpoint, a 2025-era client (the Inspector's default era): initialize first, no _meta version.
        proxy.seen.length = 0;
        const legacy = runInspector([proxy.url, ...auth, '--method', 'tools/list']);
        expect(await exitWithin(legacy, 60_000), legacy.stderr()).toBe(0);
        expect((resultOf(legacy.stdout()).tools as unknown[]).length).toBe(tools.length);
        expect(proxy.seen[0]?.method).toBe('initialize');
        for (const r of proxy.seen) expect(r.meta, r.method).toBeUndefined();
      } finally {
        await proxy.close();
      }
    }, 180_000);

    it('lists the tools over stdio with an agent API key (mailward mcp)', async () => {
      const env = Object.entries({ ...t.env, MAILWARD_API_KEY: agentKey, MAILWARD_LOG_LEVEL: 'warn' }).flatMap(([k, v]) => [
        '-e',
        `${k}=${v}`,
      ]);
      const run = runInspector([
        ...env,
        '--method',
        'tools/list',
        '--format',
        'json',
        '--',
        process.execPath,
        '--import',
        'tsx',
        'src/cli/main.ts',
        'mcp',
      ]);
      expect(await exitWithin(run, 120_000), run.stderr()).toBe(0);
      const tools = resultOf(run.stdout()).tools as { name: string }[];
      expect(tools.map((x) => x.name)).toEqual(expect.arrayContaining(['whoami', 'send_email', 'read_email']));
    }, 180_000);
  });
}
