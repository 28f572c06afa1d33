import { randomBytes } from 'node:crypto';
import { Client, StreamableHTTPClientTransport, UnauthorizedError, type OAuthClientMetadata } from '@modelcontextprotocol/client';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixedClock } from '../src/kernel/clock.js';
import { launchChromium } from './support/browser.js';
import { type CimdHost, startCimdHost } from './support/cimd-host.js';
import { tempDir, testDialects } from './support/dialects.js';
import { selfSignedCert } from './support/outbound-sink.js';
import { freePort } from './support/processes.js';
import { MemoryOAuthProvider, OAUTH_TEST_REDIRECT, s256, signInWithAgent } from './support/mcp-oauth-client.js';
import { createTestApp, type TestApp } from './support/test-app.js';

const REDIRECT = OAUTH_TEST_REDIRECT;

/** A client metadata document for `url` (its client_id must be that URL: draft-ietf-oauth-client-id-metadata-document 3). */
const docFor = (url: string, over: Record<string, unknown> = {}) => ({
  client_id: url,
  client_name: 'Ward Assistant (metadata document client)',
  redirect_uris: [REDIRECT],
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  token_endpoint_auth_method: 'none',
  ...over,
});

for (const dialect of testDialects()) {
  describe(`MCP over OAuth 2.1 with a Client ID Metadata Document, no registration (${dialect})`, () => {
    let t: TestApp;
    let browser: Browser;
    let page: Page;
    let context: BrowserContext;
    let origin = '';
    let agentId = '';
    /** Allow-listed (MAILWARD_OAUTH_CIMD_ALLOW_HOSTS), its certificate trusted (MAILWARD_OAUTH_CIMD_CA_FILE). */
    let listed: CimdHost;
    /** The same kind of host on loopback, not allow-listed: never fetched. */
    let unlisted: CimdHost;
    const clock = fixedClock(new Date());

    beforeAll(async () => {
      const dir = tempDir('cimd');
      const cert = selfSignedCert(dir);
      listed = await startCimdHost(dir, cert);
      unlisted = await startCimdHost(dir, cert);
      listed.serve('/clients/ward.json', docFor(listed.urlOf('/clients/ward.json')));
      listed.serve('/clients/other-id.json', docFor(listed.urlOf('/clients/someone-else.json')));
      listed.serve('/clients/redirect.json', docFor(listed.urlOf('/clients/redirect.json')));
      unlisted.serve('/clients/ward.json', docFor(unlisted.urlOf('/clients/ward.json')));
      const port = await freePort();
      origin = `http://localhost:${port}`;
      t = await createTestApp(dialect, {
        clock,
        env: { MAILWARD_OAUTH_CIMD_ALLOW_HOSTS: listed.hostPort, MAILWARD_OAUTH_CIMD_CA_FILE: cert.caFile },
      });
      await t.app.listen({ host: '127.0.0.1', port });
      browser = await launchChromium();
      ({ page, context, agentId } = await signInWithAgent(browser, t, origin, clock));
    }, 120_000);
    afterAll(async () => {
      await browser?.close();
      t?.app.server.closeAllConnections();
      await t?.close();
      await listed?.close();
      await unlisted?.close();
    });

    /** GET /oauth/authorize for `clientId`: the library's answer (an error page, or a redirect). */
    const authorize = (clientId: string, redirectUri = REDIRECT) =>
      fetch(
        `${origin}/oauth/authorize?${new URLSearchParams({
          client_id: clientId,
          response_type: 'code',
          redirect_uri: redirectUri,
          scope: 'mail:read',
          code_challenge: s256(randomBytes(32).toString('base64url')),
          code_challenge_method: 'S256',
          resource: `${origin}/mcp`,
        })}`,
        { redirect: 'manual' },
      );

    it('lets an SDK client whose client_id is its metadata document’s https URL connect with consent in Chromium, without registering', async () => {
      const url = listed.urlOf('/clients/ward.json');
      const provider = new MemoryOAuthProvider(docFor(url) as OAuthClientMetadata, url);
      const first = new StreamableHTTPClientTransport(new URL(`${origin}/mcp`), { authProvider: provider });
      await expect(new Client({ name: 'ward', version: '1.0.0' }).connect(first)).rejects.toBeInstanceOf(UnauthorizedError);
      expect(provider.authUrl?.searchParams.get('client_id')).toBe(url);

      let landed: URL | undefined;
      await context.route(`${REDIRECT}**`, async (route) => {
        landed = new URL(route.request().url());
        await route.fulfill({ status: 200, contentType: 'text/plain', body: 'back in the client' });
      });
      try {
        await page.goto(provider.authUrl!.href);
        await page.waitForURL(/\/console\/oauth\//);
        // The consent page names the client by its document's client_name and its URL.
        expect(await page.textContent('main')).toContain('Ward Assistant (metadata document client)');
        expect(await page.textContent('main')).toContain(url);
        await page.check(`input[name=agent_id][value="${agentId}"]`);
        await page.click('#allow');
        await expect.poll(() => landed?.searchParams.toString() ?? '', { timeout: 15_000 }).toMatch(/code=|error=/);
      } finally {
        await context.unroute(`${REDIRECT}**`);
      }
      expect(landed!.searchParams.get('error')).toBeNull();
      // RFC 9207: the client checks the iss of the authorization response, so it takes the whole callback query.
      await first.finishAuth(landed!.searchParams);
      expect(provider.saved?.access_token).toBeTruthy();

      const client = new Client({ name: 'ward', version: '1.0.0' });
      await client.connect(new StreamableHTTPClientTransport(new URL(`${origin}/mcp`), { authProvider: provider }));
      const who = (await client.callTool({ name: 'whoami', arguments: {} })) as { structuredContent?: any };
      expect(who.structuredContent.principal ?? who.structuredContent).toMatchObject({ id: agentId });
      await client.close();

      // The document was fetched from the client's host; nothing was registered (no stored client, no registration event).
      expect(listed.requests).toContain('/clients/ward.json');
      expect(await t.c.store.db.selectFrom('oauth_records').select('id_hash').where('model', '=', 'Client').execute()).toHaveLength(0);
      await t.c.audit.sync();
      expect(
        await t.c.store.db.selectFrom('audit_events').select('id').where('action', '=', 'oauth.client.registered').execute(),
      ).toHaveLength(0);
      const issued = (await t.call('GET', '/v1/audit/events?action=oauth.token.issued&limit=20', t.adminKey)).body.events;
      expect(issued.map((e: any) => e.details.client_id)).toContain(url);
      // Nothing registered, but the client entered the organisation with the human's consent: its admins see that.
      const granted = (await t.call('GET', '/v1/audit/events?action=oauth.client.granted&limit=10', t.adminKey)).body.events;
      expect(granted).toHaveLength(1);
      expect(granted[0]).toMatchObject({
        target: { type: 'oauth_client', id: url },
        details: { client_id: url, client_name: null, identified_by: 'metadata_document' },
      });
    }, 120_000);

    it('refuses a document whose client_id is not its own URL', async () => {
      const r = await authorize(listed.urlOf('/clients/other-id.json'));
      expect(r.status).toBe(400);
      expect(r.headers.get('location')).toBeNull();
      expect(await r.text()).toContain('invalid_client_metadata');
      expect(listed.requests).toContain('/clients/other-id.json');
    });

    it('refuses a redirect_uri the document does not list, and sends nothing there', async () => {
      const r = await authorize(listed.urlOf('/clients/redirect.json'), 'http://127.0.0.1:9/elsewhere');
      expect(r.status).toBe(400);
      expect(r.headers.get('location')).toBeNull();
      expect(await r.text()).toContain('invalid_redirect_uri');
      // The same document with its own redirect URI is accepted (the refusal is the redirect URI's).
      const ok = await authorize(listed.urlOf('/clients/redirect.json'));
      expect([302, 303]).toContain(ok.status);
      expect(ok.headers.get('location')).toMatch(/\/console\/oauth\//);
    });

    it('never fetches a loopback document that is not allow-listed, nor the allow-listed host under another name', async () => {
      const r = await authorize(unlisted.urlOf('/clients/ward.json'));
      expect(r.status).toBe(400);
      expect(await r.text()).toContain('invalid_client');
      const byName = await authorize(`https://localhost:${new URL(listed.origin).port}/clients/ward.json`);
      expect(byName.status).toBe(400);
      expect(await byName.text()).toContain('invalid_client');
      expect(unlisted.requests).toEqual([]);
      // Plain http is no client id at all (the library's rule), allow-listed host or not: an unknown client.
      const plain = await authorize(`http://${listed.hostPort}/clients/ward.json`);
      expect(plain.status).toBe(400);
      expect(await plain.text()).toContain('invalid_client');
    });
  });
}
