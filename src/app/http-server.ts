import type { FastifyInstance } from 'fastify';
import { createAuthHook } from '../http/auth.js';
import { buildRestServer } from '../http/build-server.js';
import { problems } from '../http/common-schemas.js';
import { errorHandler, sendProblem } from '../http/problem.js';
import { oauthRoutes } from '../http/oauth-routes.js';
import { mcpRoutes } from '../mcp/mcp-http.js';
import { consoleRoutes } from '../web/console-routes.js';
import type { Container } from './container.js';
import { mcpDepsOf } from './mcp-deps.js';

/**
 * The whole HTTP surface (not listening): REST under /v1, MCP over streamable HTTP at /mcp and the console under /console, mounted
 * side by side from the top so neither adapter imports the other (STYLE.md "Dependency direction").
 * MCP uses the same keys, rate limit and services as /v1.
 */
export const buildServer = (c: Container): Promise<FastifyInstance> =>
  buildRestServer(c, {
    beside: [
      consoleRoutes({
        accounts: c.accounts,
        review: {
          approvals: c.mail.approvals,
          queue: c.approvalQueue,
          reader: c.mail.reader,
          mailboxes: c.mail.mailboxes,
          consent: c.consent,
          screen: c.mail.screen,
          auditReader: c.auditReader,
          events: c.mail.events,
          notifications: c.reviewNotifications,
          clock: c.clock,
          stepUpSeconds: c.config.accounts.stepUpSeconds,
        },
        admin: { identity: c.identity, apiKeys: c.apiKeys, mailboxes: c.mail.mailboxes, consent: c.consent },
        privacy: { disclosures: c.disclosures, breaches: c.breaches, complianceReport: c.complianceReport },
        oauth: {
          consent: c.oauthConsent,
          interaction: c.oauth.interaction,
          finish: c.oauth.finish,
          refuse: c.oauth.refuse,
        },
      }),
      oauthRoutes({ serves: (host) => c.oauth.forHost(host) !== undefined, handle: c.oauth.handle }),
      mcpRoutes({
        deps: mcpDepsOf(c),
        publicUrl: c.config.accounts.publicUrl,
        // The authorization server is this origin itself (src/oauth/oauth-server.ts: issuer = origin).
        authorizationServers: (origin) => [origin],
        edge: {
          authHook: createAuthHook({ apiKeys: c.apiKeys, rateLimiter: c.rateLimiter, oauth: c.oauth.authenticate }),
          errorHandler,
          sendProblem,
          problems,
        },
      }),
    ],
  });
