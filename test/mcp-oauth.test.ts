import { randomBytes } from 'node:crypto';
import { Client, StreamableHTTPClientTransport, UnauthorizedError, type OAuthClientMetadata } from '@modelcontextprotocol/client';
import { decodeJwt } from 'jose';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixedClock } from '../src/kernel/clock.js';
import { headerValue, splitMessage } from '../src/mail/mime.js';
import { launchChromium } from './support/browser.js';
import { signInInBrowser } from './support/console-browser.js';
import { oathtoolCode } from './support/console-client.js';
import { testDialects } from './support/dialects.js';
import { drainDeliveries, relayEnv, type Sink, startSink } from './support/outbound-sink.js';
import { freePort, type ServerProcess, startServer } from './support/processes.js';
import { MemoryOAuthProvider, OAUTH_TEST_REDIRECT, s256, signInWithAgent } from './support/mcp-oauth-client.js';
import { createTestApp, type TestApp } from './support/test-app.js';
import { textIds } from './support/audit-rows.js';

const REDIRECT = OAUTH_TEST_REDIRECT;

/** The test MCP client's registration metadata (RFC 7591). */
const CLIENT_METADATA: OAuthClientMetadata = {
  client_name: 'Ward Assistant (test MCP client)',
  redirect_uris: [REDIRECT],
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  token_endpoint_auth_method: 'none',
};

/** A JSON body, loosely typed (the shapes are the protocols', checked field by field below). */
const json = async (r: Response | Promise<Response>): Promise<any> => (await r).json();

for (const dialect of testDialects()) {
  describe(`MCP over OAuth 2.1: discovery, registration, consent in Chromium, tokens (${dialect})`, () => {
    let t: TestApp;
    let browser: Browser;
    let sink: Sink;
    let origin = '';
    let page: Page;
    let context: BrowserContext;
    let human: { id: string };
    let totpSecret = '';
    let agentId = '';
    let mailboxId = '';
    let otherHumanId = '';
    const clock = fixedClock(new Date());

    /** Opens `url` in the signed-in browser, lets the human choose on the consent page, and returns the redirect's query. */
    const consent = async (
      url: string,
      choose: (p: Page) => Promise<void> = async () => {},
      who: { page: Page; context: BrowserContext } = { page, context },
    ) => {
      const { page: pg, context: ctx } = who;
      let landed: URL | undefined;
      await ctx.route(`${REDIRECT}**`, async (route) => {
        landed = new URL(route.request().url());
        await route.fulfill({ status: 200, contentType: 'text/plain', body: 'back in the client' });
      });
      await pg.goto(url);
      await pg.waitForURL(/\/console\/oauth\//);
      await choose(pg);
      await pg.click('#allow');
      await expect.poll(() => landed?.searchParams.toString() ?? '', { timeout: 15_000 }).toMatch(/code=|error=/);
      await ctx.unroute(`${REDIRECT}**`);
      return landed!.searchParams;
    };

    const token = (body: Record<string, string>) =>
      fetch(`${origin}/oauth/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams(body).toString(),
      });

    const mcpCall = (bearer: string, at = origin, tool = 'whoami', args: Record<string, unknown> = {}) =>
      fetch(`${at}/mcp`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${bearer}`,
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
          'mcp-protocol-version': '2025-06-18',
        },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: tool, arguments: args } }),
      });

    /** A whole authorization done by hand (our own PKCE pair): the redirect's parameters and the verifier. */
    const authorizeByHand = async (clientId: string, extra: Record<string, string> = {}) => {
      const verifier = randomBytes(32).toString('base64url');
      const q = new URLSearchParams({
        client_id: clientId,
        response_type: 'code',
        redirect_uri: REDIRECT,
        scope: 'mail:read mail:send',
        code_challenge: s256(verifier),
        code_challenge_method: 'S256',
        state: 'st',
        resource: `${origin}/mcp`,
        ...extra,
      });
      return { params: await consent(`${origin}/oauth/authorize?${q}`), verifier };
    };

    /** The token request redeeming an authorization's code (RFC 6749 4.1.3, with its PKCE verifier). */
    const codeGrant = (clientId: string, a: { params: URLSearchParams; verifier: string }) => ({
      grant_type: 'authorization_code',
      code: a.params.get('code')!,
      redirect_uri: REDIRECT,
      client_id: clientId,
      code_verifier: a.verifier,
    });

    beforeAll(async () => {
      const dir = (await import('node:os')).tmpdir();
      sink = await startSink(dir, { tls: true });
      const port = await freePort();
      origin = `http://localhost:${port}`;
      // No MAILWARD_PUBLIC_URL: the origin comes from the loopback Host (development mode), so one server has two
      // origins (localhost and 127.0.0.1), each its own issuer and resource.
      t = await createTestApp(dialect, { clock, env: relayEnv(sink) });
      await t.app.listen({ host: '127.0.0.1', port });
      browser = await launchChromium();
      const signed = await signInWithAgent(browser, t, origin, clock);
      ({ page, context, human, agentId } = signed);
      totpSecret = signed.secret;
      // Another agent, answered for by someone else: not offered to this human.
      const other = await t.call('POST', '/v1/humans', t.adminKey, { name: 'Dr. Lee', email: 'lee@hospital.example', roles: ['reviewer'] });
      otherHumanId = other.body.id;
      await t.call('POST', '/v1/agents', t.adminKey, {
        name: 'Not Yours',
        department_id: signed.departmentId,
        responsible_human_id: other.body.id,
      });
      const box = await t.call('POST', '/v1/mailboxes', t.adminKey, {
        agent_id: agentId,
        display_name: 'Ward Assistant',
        oversight_mode: 'autonomous',
      });
      expect(box.status).toBe(201);
      mailboxId = box.body.id;
    }, 120_000);
    afterAll(async () => {
      await browser?.close();
      t?.app.server.closeAllConnections();
      await t?.close();
      await sink?.close();
    });

    const provider = new MemoryOAuthProvider(CLIENT_METADATA);

    it('publishes RFC 9728 and RFC 8414 metadata: S256 only, DCR and client ID metadata documents, revocation, the /mcp resource', async () => {
      const prm = await json(fetch(`${origin}/.well-known/oauth-protected-resource/mcp`));
      expect(prm.resource).toBe(`${origin}/mcp`);
      expect(prm.authorization_servers).toEqual([origin]);
      const as = await json(fetch(`${origin}/.well-known/oauth-authorization-server`));
      expect(as.issuer).toBe(origin);
      expect(as.authorization_endpoint).toBe(`${origin}/oauth/authorize`);
      expect(as.token_endpoint).toBe(`${origin}/oauth/token`);
      expect(as.registration_endpoint).toBe(`${origin}/oauth/register`);
      expect(as.revocation_endpoint).toBe(`${origin}/oauth/revoke`);
      expect(as.code_challenge_methods_supported).toEqual(['S256']);
      expect(as.client_id_metadata_document_supported).toBe(true);
      expect(as.grant_types_supported).toEqual(expect.arrayContaining(['authorization_code', 'refresh_token']));
    });

    it('lets the SDK client, given only the URL, discover, register, get the human’s consent, and call whoami and send_email as the chosen agent', async () => {
      const first = new StreamableHTTPClientTransport(new URL(`${origin}/mcp`), { authProvider: provider });
      await expect(new Client({ name: 'ward', version: '1.0.0' }).connect(first)).rejects.toBeInstanceOf(UnauthorizedError);
      expect(provider.info?.client_id).toBeTruthy();
      // The registration is audited with the client's id (no secret: public clients have none). It belongs to no
      // organisation (an anonymous caller registered it), so it is read from the store, not an organisation's API.
      await t.c.audit.sync();
      const registered = textIds(
        await t.c.store.db.selectFrom('audit_events').selectAll().where('action', '=', 'oauth.client.registered').execute(),
      );
      expect(registered.map((e) => e.target_id)).toContain(provider.info!.client_id);
      expect(registered.find((e) => e.target_id === provider.info!.client_id)).toMatchObject({
        actor_type: 'anonymous',
        target_type: 'oauth_client',
      });
      expect(provider.authUrl?.searchParams.get('code_challenge_method')).toBe('S256');
      expect(provider.authUrl?.searchParams.get('resource')).toBe(`${origin}/mcp`);
      const back = await consent(provider.authUrl!.href, async (p) => {
        // Only the agents this human answers for, and no scope beyond what they may grant (no vault:reveal).
        expect(await p.locator('input[name=agent_id]').count()).toBe(1);
        expect(await p.locator('input[name=scope][value="vault:reveal"]').count()).toBe(0);
        await p.check(`input[name=agent_id][value="${agentId}"]`);
        await p.uncheck('input[name=scope][value="vault:write"]');
      });
      // RFC 9207: the client checks the iss of the authorization response, so it takes the whole callback query.
      await first.finishAuth(back);
      expect(provider.saved?.access_token).toBeTruthy();
      expect(provider.saved?.refresh_token).toBeTruthy();

      const client = new Client({ name: 'ward', version: '1.0.0' });
      await client.connect(new StreamableHTTPClientTransport(new URL(`${origin}/mcp`), { authProvider: provider }));
      const who = (await client.callTool({ name: 'whoami', arguments: {} })) as { structuredContent?: any };
      expect(who.structuredContent.principal ?? who.structuredContent).toMatchObject({ id: agentId });
      const sent = (await client.callTool({
        name: 'send_email',
        arguments: {
          mailbox_id: mailboxId,
          to: ['patient@example.org'],
          subject: 'Your appointment',
          text: 'See you on Monday.',
          idempotency_key: 'oauth-send-1',
        },
      })) as { structuredContent?: any; isError?: boolean };
      expect(sent.isError, JSON.stringify(sent)).not.toBe(true);
      const emailId = sent.structuredContent.id as string;
      await client.close();

      // The send's audit event: the agent acts, the granting human is last in its chain.
      const events = await t.call('GET', `/v1/audit/events?action=email.submitted&target_id=${emailId}&limit=10`, t.adminKey);
      expect(events.status).toBe(200);
      const ev = events.body.events.find((e: any) => e.target?.id === emailId);
      expect(ev.actor).toEqual({ type: 'agent', id: agentId });
      expect(ev.delegation_chain.at(-1)).toMatchObject({ type: 'human', id: human.id });
      expect(ev.delegation_chain.at(-2)).toMatchObject({ type: 'agent', id: agentId });
      const consentEv = await t.call('GET', '/v1/audit/events?action=oauth.consent.granted&limit=10', t.adminKey);
      expect(consentEv.body.events.at(-1)).toMatchObject({
        actor: { type: 'human', id: human.id },
        target: { type: 'agent', id: agentId },
      });
      expect(consentEv.body.events.at(-1).details).toMatchObject({
        client_id: provider.info!.client_id,
        scopes: ['mail:read', 'mail:send', 'vault:read', 'vault:totp'],
      });
      // The registration belongs to no organisation; the human's first consent lets the client into theirs, and the
      // organisation's admins see that as oauth.client.granted with the name it registered under.
      const granted = (await t.call('GET', '/v1/audit/events?action=oauth.client.granted&limit=10', t.adminKey)).body.events;
      expect(granted).toHaveLength(1);
      expect(granted[0]).toMatchObject({
        actor: { type: 'human', id: human.id },
        target: { type: 'oauth_client', id: provider.info!.client_id },
        details: { client_name: 'Ward Assistant (test MCP client)', identified_by: 'registration', agent_id: agentId },
      });

      // The identity header of the delivered mail names the human in its chain and as the actor the agent acts for.
      await drainDeliveries(t);
      const status = await t.call('GET', `/v1/emails/${emailId}`, t.adminKey);
      const raw = sink.messages.find((m) => headerValue(splitMessage(m.raw).header, 'Message-ID') === status.body.message_id)?.raw;
      expect(raw).toBeTruthy();
      const claims = decodeJwt(headerValue(splitMessage(raw!).header, 'X-Agent-Identity')!.replace(/\s+/g, '')) as any;
      expect(claims.delegation_chain.at(-1)).toMatchObject({ type: 'human', id: human.id });
      expect(claims.act).toMatchObject({ sub: agentId, type: 'agent', act: { sub: human.id, type: 'human' } });
    }, 120_000);

    it('answers a tool whose scope the token lacks with 403 insufficient_scope and the scope to ask for', async () => {
      const r = await mcpCall(provider.saved!.access_token, origin, 'store_secret', { name: 'x', value: 'y' });
      expect(r.status).toBe(403);
      expect(r.headers.get('www-authenticate')).toMatch(/error="insufficient_scope"/);
      expect(r.headers.get('www-authenticate')).toMatch(/scope="vault:write"/);
    });

    it('refuses PKCE plain, no PKCE at all, and a resource other than this server’s /mcp', async () => {
      const clientId = provider.info!.client_id;
      const base = { client_id: clientId, response_type: 'code', redirect_uri: REDIRECT, scope: 'mail:read', state: 's' };
      const plain = await fetch(
        `${origin}/oauth/authorize?${new URLSearchParams({ ...base, code_challenge: 'a'.repeat(43), code_challenge_method: 'plain' })}`,
        { redirect: 'manual' },
      );
      const loc = new URL(plain.headers.get('location') ?? 'http://x/');
      expect(loc.searchParams.get('error')).toBe('invalid_request');
      expect(loc.searchParams.get('code')).toBeNull();
      const other = await fetch(
        `${origin}/oauth/authorize?${new URLSearchParams({ ...base, code_challenge: s256('v'.repeat(43)), code_challenge_method: 'S256', resource: 'https://elsewhere.example/mcp' })}`,
        { redirect: 'manual' },
      );
      expect(new URL(other.headers.get('location') ?? 'http://x/').searchParams.get('error')).toBe('invalid_target');
      const none = await fetch(`${origin}/oauth/authorize?${new URLSearchParams(base)}`, { redirect: 'manual' });
      expect(new URL(none.headers.get('location') ?? 'http://x/').searchParams.get('error')).toBe('invalid_request');
    });

    it('refuses a code redeemed twice and then the tokens of its first redemption', async () => {
      const clientId = provider.info!.client_id;
      const { params, verifier } = await authorizeByHand(clientId);
      const body = codeGrant(clientId, { params, verifier });
      const once = await token(body);
      expect(once.status).toBe(200);
      const issued = await json(once);
      expect((await mcpCall(issued.access_token)).status).toBe(200);
      const twice = await token(body);
      expect(twice.status).toBe(400);
      expect((await json(twice)).error).toBe('invalid_grant');
      // OAuth 2.1 4.1.3: a replayed code revokes what it produced.
      expect((await mcpCall(issued.access_token)).status).toBe(401);
    });

    it('rotates refresh tokens, refuses a revoked one (RFC 7009), and keeps no token in clear in the store', async () => {
      const clientId = provider.info!.client_id;
      const { params, verifier } = await authorizeByHand(clientId);
      const first = await json(token(codeGrant(clientId, { params, verifier })));
      const rotated = await token({ grant_type: 'refresh_token', refresh_token: first.refresh_token, client_id: clientId });
      expect(rotated.status).toBe(200);
      const second = await json(rotated);
      expect(second.refresh_token).not.toBe(first.refresh_token);
      const rows = JSON.stringify(await t.c.store.db.selectFrom('oauth_records').selectAll().execute());
      for (const v of [first.access_token, first.refresh_token, second.access_token, second.refresh_token]) expect(rows).not.toContain(v);
      // Each issue is audited with ids and hashes only, committed with the token (no waiting: the token's own transaction).
      const issued = (await t.call('GET', '/v1/audit/events?action=oauth.token.issued&limit=200', t.adminKey)).body.events;
      const refreshed = issued.filter((e: any) => e.details.grant_type === 'refresh_token');
      expect(refreshed.map((e: any) => e.details.token_type).sort()).toEqual(['access_token', 'refresh_token']);
      expect(refreshed[0].actor).toEqual({ type: 'agent', id: agentId });
      const rotatedEv = (await t.call('GET', '/v1/audit/events?action=oauth.token.rotated&limit=200', t.adminKey)).body.events;
      expect(rotatedEv.length).toBeGreaterThan(0);
      const audited = JSON.stringify(issued);
      for (const v of [first.access_token, first.refresh_token, second.access_token, second.refresh_token])
        expect(audited).not.toContain(v);
      const revoked = await fetch(`${origin}/oauth/revoke`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ token: second.refresh_token, token_type_hint: 'refresh_token', client_id: clientId }).toString(),
      });
      expect(revoked.status).toBe(200);
      const again = await token({ grant_type: 'refresh_token', refresh_token: second.refresh_token, client_id: clientId });
      expect(again.status).toBe(400);
      expect((await json(again)).error).toBe('invalid_grant');
      // Revoking the refresh token revoked its grant: its access token is refused at /mcp too.
      expect((await mcpCall(second.access_token)).status).toBe(401);
      // Every consent is audited; the client entered the organisation once.
      const consents = (await t.call('GET', '/v1/audit/events?action=oauth.consent.granted&limit=200', t.adminKey)).body.events;
      expect(consents.length).toBeGreaterThan(1);
      expect((await t.call('GET', '/v1/audit/events?action=oauth.client.granted&limit=10', t.adminKey)).body.events).toHaveLength(1);
    });

    it('fails closed when the audit write fails: the consent keeps no grant, the token endpoint hands out no token', async () => {
      const clientId = provider.info!.client_id;
      const original = t.c.audit.record;
      /** The real audit service, failing for one action (as a store that cannot write would, for that transaction). */
      const failFor = (action: string) => {
        (t.c.audit as { record: unknown }).record = async (tx: never, input: { action: string }) => {
          if (input.action === action) throw new Error('audit store unavailable');
          return original(tx, input as never);
        };
      };
      const count = async (model: string) =>
        (await t.c.store.db.selectFrom('oauth_records').select('id_hash').where('model', '=', model).execute()).length;
      const consentEvents = async () =>
        (await t.call('GET', '/v1/audit/events?action=oauth.consent.granted&limit=200', t.adminKey)).body.events.length;
      try {
        // 1. The grant's event cannot be written: the human's Allow fails (500), no grant is kept, and the consent
        // event that shares its transaction is gone with it; the client is never sent a code.
        const grantsBefore = await count('Grant');
        const consentsBefore = await consentEvents();
        failFor('oauth.grant.saved');
        const q = new URLSearchParams({
          client_id: clientId,
          response_type: 'code',
          redirect_uri: REDIRECT,
          scope: 'mail:read',
          code_challenge: s256(randomBytes(32).toString('base64url')),
          code_challenge_method: 'S256',
          resource: `${origin}/mcp`,
        });
        let landed: URL | undefined;
        await context.route(`${REDIRECT}**`, async (route) => {
          landed = new URL(route.request().url());
          await route.fulfill({ status: 200, contentType: 'text/plain', body: 'back' });
        });
        try {
          await page.goto(`${origin}/oauth/authorize?${q}`);
          await page.waitForURL(/\/console\/oauth\//);
          const answer = page.waitForResponse((r) => r.request().method() === 'POST' && r.url().includes('/console/oauth/'));
          await page.click('#allow');
          expect((await answer).status()).toBe(500);
        } finally {
          await context.unroute(`${REDIRECT}**`);
        }
        (t.c.audit as { record: unknown }).record = original;
        expect(landed).toBeUndefined();
        expect(await count('Grant')).toBe(grantsBefore);
        expect(await consentEvents()).toBe(consentsBefore);

        // 2. The access token's event cannot be written: the token endpoint answers 500 with no token, and none is kept.
        const { params, verifier } = await authorizeByHand(clientId);
        const tokensBefore = await count('AccessToken');
        const refreshBefore = await count('RefreshToken');
        failFor('oauth.token.issued');
        const body = codeGrant(clientId, { params, verifier });
        const r = await token(body);
        const answer = await json(r);
        expect(r.status).toBe(500);
        expect(answer.access_token).toBeUndefined();
        expect(answer.refresh_token).toBeUndefined();
        expect(await count('AccessToken')).toBe(tokensBefore);
        expect(await count('RefreshToken')).toBe(refreshBefore);
        (t.c.audit as { record: unknown }).record = original;
        // The code was redeemed (its own audited transaction) before the failure: it does not work a second time.
        const again = await token(body);
        expect(again.status).toBe(400);
        expect((await json(again)).error).toBe('invalid_grant');
      } finally {
        (t.c.audit as { record: unknown }).record = original;
      }
    }, 60_000);

    it('refuses at one origin’s /mcp a token whose audience is another origin’s /mcp (RFC 8707)', async () => {
      // Same server, same store, another loopback origin (127.0.0.1 instead of localhost): the token is found, but its
      // audience is http://localhost:<port>/mcp, not this resource.
      const elsewhere = origin.replace('localhost', '127.0.0.1');
      expect((await mcpCall(provider.saved!.access_token)).status).toBe(200);
      const r = await mcpCall(provider.saved!.access_token, elsewhere);
      expect(r.status).toBe(401);
      expect(r.headers.get('www-authenticate')).toMatch(/error="invalid_token"/);
    });

    it('refuses an expired access token', async () => {
      const clientId = provider.info!.client_id;
      const { params, verifier } = await authorizeByHand(clientId);
      const issued = await json(token(codeGrant(clientId, { params, verifier })));
      expect((await mcpCall(issued.access_token)).status).toBe(200);
      clock.advance(601_000);
      const r = await mcpCall(issued.access_token);
      expect(r.status).toBe(401);
      expect(r.headers.get('www-authenticate')).toMatch(/error="invalid_token"/);
    }, 60_000);

    it('sends a signed-out browser to sign in and back to the consent page; a denial reaches the client as access_denied; the form cannot add a scope', async () => {
      const clientId = provider.info!.client_id;
      const q = new URLSearchParams({
        client_id: clientId,
        response_type: 'code',
        redirect_uri: REDIRECT,
        scope: 'mail:read vault:reveal',
        code_challenge: s256(randomBytes(32).toString('base64url')),
        code_challenge_method: 'S256',
        state: 'st2',
      });
      const fresh = await browser.newContext();
      const p = await fresh.newPage();
      let landed: URL | undefined;
      await fresh.route(`${REDIRECT}**`, async (route) => {
        landed = new URL(route.request().url());
        await route.fulfill({ status: 200, contentType: 'text/plain', body: 'back' });
      });
      try {
        await p.goto(`${origin}/oauth/authorize?${q}`);
        await p.waitForURL(`${origin}/console/sign-in`);
        await p.fill('#email', 'ana.rivera@hospital.example');
        await p.fill('#password', 'lantern orchard copper meadow');
        await p.click('#sign-in');
        await p.waitForURL(`${origin}/console/second-factor`);
        clock.advance(31_000);
        await p.fill('#code', oathtoolCode(totpSecret, clock.now()));
        await p.click('#verify');
        await p.waitForURL(/\/console\/oauth\//);
        // vault:reveal was asked for, but a reviewer may not grant it: not offered.
        const offered = await Promise.all((await p.locator('input[name=scope]').all()).map((l) => l.getAttribute('value')));
        expect(offered).toEqual(['mail:read']);
        // Nor can a forged form add it: the server checks again (422, the page shown again with the reason).
        await p.evaluate(`(() => {
          const extra = document.createElement('input');
          extra.type = 'hidden';
          extra.name = 'scope';
          extra.value = 'vault:reveal';
          document.querySelector('#allow').form.appendChild(extra);
        })()`);
        await p.click('#allow');
        await expect.poll(() => p.locator('#error').textContent(), { timeout: 15_000 }).toContain('vault:reveal');
        expect(landed).toBeUndefined();
        await p.click('#deny');
        await expect.poll(() => landed?.searchParams.get('error') ?? '', { timeout: 15_000 }).toBe('access_denied');
        expect(landed?.searchParams.get('state')).toBe('st2');
        const denied = await t.call('GET', '/v1/audit/events?action=oauth.consent.denied&limit=10', t.adminKey);
        expect(denied.body.events.at(-1)).toMatchObject({ actor: { type: 'human', id: human.id } });
      } finally {
        await fresh.close();
      }
    }, 60_000);

    it('revokes the grants of the human an agent is taken from: handing it back does not revive them', async () => {
      const clientId = provider.info!.client_id;
      const { params, verifier } = await authorizeByHand(clientId);
      const issued = await json(token(codeGrant(clientId, { params, verifier })));
      expect((await mcpCall(issued.access_token)).status).toBe(200);
      const accountRows = async () =>
        (
          await t.c.store.db
            .selectFrom('oauth_records')
            .select('model')
            .where('agent_id', '=', agentId)
            .where('human_id', '=', human.id)
            .execute()
        ).map((r) => r.model);
      expect(await accountRows()).toEqual(expect.arrayContaining(['Grant', 'AccessToken', 'RefreshToken']));
      const to = await t.call('PATCH', `/v1/agents/${agentId}`, t.adminKey, { responsible_human_id: otherHumanId });
      expect(to.status).toBe(200);
      // Gone from the store in the reassignment's transaction, each grant with its event.
      expect(await accountRows()).toEqual([]);
      const revoked = (await t.call('GET', '/v1/audit/events?action=oauth.grant.revoked&limit=200', t.adminKey)).body.events.filter(
        (e: any) => e.details.reason === 'agent_reassigned',
      );
      expect(revoked.length).toBeGreaterThan(0);
      expect(revoked[0].actor).toEqual({ type: 'agent', id: agentId });
      expect(JSON.stringify(revoked)).not.toContain(issued.access_token);
      const updated = (await t.call('GET', `/v1/audit/events?action=agent.updated&target_id=${agentId}&limit=10`, t.adminKey)).body.events;
      expect(updated.at(-1).details.oauth_grants_revoked).toBe(revoked.length);
      expect((await mcpCall(issued.access_token)).status).toBe(401);
      // Back to Ana: what she granted before stays revoked (access and refresh).
      const back = await t.call('PATCH', `/v1/agents/${agentId}`, t.adminKey, { responsible_human_id: human.id });
      expect(back.status).toBe(200);
      expect((await mcpCall(issued.access_token)).status).toBe(401);
      const refreshed = await token({ grant_type: 'refresh_token', refresh_token: issued.refresh_token, client_id: clientId });
      expect(refreshed.status).toBe(400);
      expect((await json(refreshed)).error).toBe('invalid_grant');
    }, 60_000);

    it('refuses the next MCP call, in this process and another one on the same store, once the agent or the granting human is deactivated', async () => {
      const dep = await t.call('POST', '/v1/departments', t.adminKey, { name: 'Oncology' });
      const second = await t.call('POST', '/v1/agents', t.adminKey, {
        name: 'Second Assistant',
        department_id: dep.body.id,
        responsible_human_id: human.id,
      });
      // An admin may let a client act as any agent of the organisation (here Ana's), and can be deactivated on their own.
      const admin = await signInInBrowser(browser, t, origin, clock, {
        name: 'Sam Admin',
        email: 'sam.admin@hospital.example',
        roles: ['admin'],
      });
      const clientId = provider.info!.client_id;
      const tokenFor = async (agent: string, who?: { page: Page; context: BrowserContext }) => {
        const verifier = randomBytes(32).toString('base64url');
        const q = new URLSearchParams({
          client_id: clientId,
          response_type: 'code',
          redirect_uri: REDIRECT,
          scope: 'mail:read',
          code_challenge: s256(verifier),
          code_challenge_method: 'S256',
          resource: `${origin}/mcp`,
        });
        const back = await consent(`${origin}/oauth/authorize?${q}`, (p) => p.check(`input[name=agent_id][value="${agent}"]`), who);
        const r = await token({
          grant_type: 'authorization_code',
          code: back.get('code')!,
          redirect_uri: REDIRECT,
          client_id: clientId,
          code_verifier: verifier,
        });
        return (await json(r)) as { access_token: string; refresh_token: string };
      };
      const byAna = (await tokenFor(agentId)).access_token;
      const samTokens = await tokenFor(agentId, admin);
      const bySam = samTokens.access_token;
      const forSecond = (await tokenFor(second.body.id)).access_token;
      // A second `mailward serve` on the same store; its public URL is this origin, so tokens for this /mcp are its too.
      const child: ServerProcess = await startServer(
        { ...t.env, MAILWARD_PUBLIC_URL: origin, MAILWARD_LOG_LEVEL: 'warn' },
        { readyMs: 120_000 },
      );
      try {
        const there = `http://127.0.0.1:${child.port}`;
        for (const at of [origin, there]) for (const tk of [byAna, bySam, forSecond]) expect((await mcpCall(tk, at)).status).toBe(200);
        expect((await t.call('POST', `/v1/agents/${second.body.id}/deactivate`, t.adminKey)).status).toBe(200);
        // Its grants are revoked in the deactivation's transaction, not only refused.
        expect(await t.c.store.db.selectFrom('oauth_records').select('model').where('agent_id', '=', second.body.id).execute()).toEqual([]);
        for (const at of [origin, there]) {
          expect((await mcpCall(forSecond, at)).status).toBe(401);
          expect((await mcpCall(byAna, at)).status).toBe(200);
        }
        expect((await t.call('POST', `/v1/humans/${admin.human.id}/deactivate`, t.adminKey)).status).toBe(200);
        expect(await t.c.store.db.selectFrom('oauth_records').select('model').where('human_id', '=', admin.human.id).execute()).toEqual([]);
        const reasons = (await t.call('GET', '/v1/audit/events?action=oauth.grant.revoked&limit=200', t.adminKey)).body.events.map(
          (e: any) => e.details.reason,
        );
        expect(reasons).toEqual(expect.arrayContaining(['agent_deactivated', 'human_deactivated']));
        for (const at of [origin, there]) {
          expect((await mcpCall(bySam, at)).status).toBe(401);
          // The same agent through another human's grant still works: it is the granting human who is gone.
          expect((await mcpCall(byAna, at)).status).toBe(200);
        }
        // Nor can the client refresh its way back in.
        const refreshed = await token({ grant_type: 'refresh_token', refresh_token: samTokens.refresh_token, client_id: clientId });
        expect(refreshed.status).toBe(400);
        expect((await json(refreshed)).error).toBe('invalid_grant');
      } finally {
        await child.stop();
        await admin.context.close();
      }
    }, 300_000);
  });
}
