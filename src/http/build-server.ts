import type { ComplianceReport } from '../compliance/compliance-report.js';
import { randomBytes } from 'node:crypto';
import fastifySwagger from '@fastify/swagger';
import fastifySwaggerUi from '@fastify/swagger-ui';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyPluginAsync, LogController } from 'fastify';
import { serializerCompiler, validatorCompiler } from 'fastify-type-provider-zod';
import type { AuditReader } from '../compliance/audit-reader.js';
import type { BreachService } from '../compliance/breach-service.js';
import type { Disclosures } from '../compliance/disclosures.js';
import type { Part2Consents } from '../phi/part2-consents.js';
import type { GrantsService } from '../identity/grants-service.js';
import { grantsRoutes } from './grants-routes.js';
import type { AccountsModule } from '../accounts/accounts-module.js';
import type { AuditLog } from '../audit/audit-log.js';
import type { AuditService } from '../audit/audit-service.js';
import type { ApiKeysService } from '../identity/api-keys-service.js';
import type { Guard } from '../identity/guard.js';
import type { IdentityService } from '../identity/identity-service.js';
import type { RateLimiter } from '../identity/rate-limiter.js';
import type { Logger } from '../kernel/log.js';
import type { MailModule } from '../mail/mail-module.js';
import { mailRetentionRoutes } from './mail-retention-routes.js';
import type { ApprovalsService } from '../oversight/approvals-service.js';
import type { ConsentService } from '../phi/consent-service.js';
import type { Store } from '../store/db.js';
import type { VaultService } from '../vault/vault-service.js';
import { accountsRoutes } from './accounts-routes.js';
import type { WebhooksModule } from '../webhooks/webhooks-module.js';
import { auditRoutes } from './audit-routes.js';
import { breachRoutes } from './breach-routes.js';
import { complianceRoutes } from './compliance-routes.js';
import { disclosureRoutes } from './disclosure-routes.js';
import { type AdmissionConfig, createAdmission, mountAdmission } from './admission.js';
import { createAuthHook } from './auth.js';
import { consentRoutes } from './consent-routes.js';
import { dnsRoutes } from './dns-routes.js';
import { eventRoutes } from './event-routes.js';
import { approvalRoutes } from './approval-routes.js';
import { identityRoutes } from './identity-routes.js';
import { identityVerifyRoutes } from './identity-verify-routes.js';
import { mailRoutes } from './mail-routes.js';
import { documentRoute, tidyDocument } from './openapi-transform.js';
import { createMetrics, type HttpMetrics } from './metrics.js';
import { errorHandler, sendProblem } from './problem.js';
import { systemRoutes } from './system-routes.js';
import { publicReceiptRoutes, receiptRoutes } from './receipt-routes.js';
import type { KeyDirectoryService } from '../identity/key-directory.js';
import { frameworkErrors, refuseUnsafeText } from './text-input-hook.js';
import { vaultRoutes } from './vault-routes.js';
import { webhookRoutes } from './webhook-routes.js';
import { templatesRoutes } from './templates-routes.js';

/**
 * Request ids: a random per-process prefix and a counter. Unique across
 * processes with overwhelming probability and far cheaper than a UUID per
 * request; they identify requests in logs and audit events, they are no secret.
 */
const REQUEST_ID_PREFIX = `req_${randomBytes(10).toString('hex')}`;
let requestCounter = 0;
const nextRequestId = () => `${REQUEST_ID_PREFIX}${(++requestCounter).toString(16).padStart(12, '0')}`;

const REQUEST_ID_RE = /^[A-Za-z0-9._:-]{1,64}$/;

/** What the REST surface mounts: services and settings, never the container (STYLE.md: each module declares its own config type). */
export type RestDeps = {
  config: { http: { bodyLimit: number; trustProxy: boolean; admission?: AdmissionConfig }; smtp: { maxMessageBytes: number } };
  logger: Logger;
  store: Store;
  identity: IdentityService;
  apiKeys: ApiKeysService;
  rateLimiter: RateLimiter;
  audit: AuditService;
  auditLog: AuditLog;
  auditReader: AuditReader;
  disclosures: Disclosures;
  breaches: BreachService;
  complianceReport: ComplianceReport;
  part2Consents: Part2Consents;
  grants: GrantsService;
  keyDirectory: KeyDirectoryService;
  guard: Guard;
  mail: Pick<MailModule, 'mailboxes' | 'mail' | 'reader' | 'identityVerifier' | 'dnsRecords' | 'retention' | 'templates' | 'bulk'> & {
    approvals: ApprovalsService;
  };
  vault: VaultService;
  consent: ConsentService;
  /** The registry `app/` made for the whole process (domain metrics included); a fresh HTTP-only one when absent. */
  metrics?: HttpMetrics;
  accounts: Pick<AccountsModule, 'accounts' | 'sso' | 'config'>;
  webhooks: Pick<WebhooksModule, 'webhooks' | 'events' | 'feed' | 'stream'>;
};

export type RestServerOptions = {
  /** Plugins mounted beside /v1 by `app/` (MCP over HTTP), so this module imports no other adapter. */
  beside?: FastifyPluginAsync[];
};

/**
 * Builds the REST API (not listening). Every /v1 route is behind the key check and rate limit.
 * `app/http-server.ts` mounts MCP beside it; use its `buildServer` for the whole HTTP surface.
 */
export const buildRestServer = async (c: RestDeps, { beside = [] }: RestServerOptions = {}): Promise<FastifyInstance> => {
  const metrics = c.metrics ?? createMetrics();
  const app = Fastify({
    loggerInstance: c.logger as FastifyBaseLogger,
    // Requests are logged by route pattern only: raw URLs can hold addresses (PUT /v1/contacts/{email}/...).
    logController: new LogController({ disableRequestLogging: true }),
    // No child logger per request (measurable on the hot path): the few request
    // log lines Mailward writes carry the request id themselves.
    childLoggerFactory: (logger) => logger,
    bodyLimit: c.config.http.bodyLimit,
    trustProxy: c.config.http.trustProxy,
    requestIdHeader: false,
    genReqId: (req) => {
      const h = req.headers['x-request-id'];
      return typeof h === 'string' && REQUEST_ID_RE.test(h) ? h : nextRequestId();
    },
    ajv: { customOptions: { removeAdditional: false } },
    frameworkErrors,
  });
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  app.setErrorHandler(errorHandler);
  app.setNotFoundHandler((req, reply) => sendProblem(reply, req, 404, 'route_not_found', 'No such route.'));
  app.decorateRequest('ctx', null as never);
  // First hook of all: a request past the admission queue's bounds is refused before any other work (admission.ts).
  if (c.config.http.admission) {
    const admission = createAdmission(c.config.http.admission, metrics.admission);
    metrics.admission.observe(() => ({ inFlight: admission.inFlight(), waiting: admission.waiting() }));
    mountAdmission(app as unknown as FastifyInstance, admission);
  }

  // Both hooks are synchronous, in fastify's callback form: an async hook costs a promise and a microtask turn
  // per request for work that awaits nothing (measured on the TOTP route, README speed).
  app.addHook('onSend', (req, reply, payload, done) => {
    reply.header('x-request-id', req.id);
    reply.header('cache-control', 'no-store');
    reply.header('x-content-type-options', 'nosniff');
    done(null, payload);
  });
  app.addHook('onResponse', (req, reply, done) => {
    const route = req.routeOptions.url ?? 'unmatched';
    metrics.requests.inc({ method: req.method, route, status: String(reply.statusCode) });
    metrics.duration.observe({ method: req.method, route }, reply.elapsedTime / 1000);
    const failed = reply.statusCode >= 500;
    // The line is built only when its level is logged (req.log is c.logger: childLoggerFactory above).
    if (!c.logger.isLevelEnabled(failed ? 'warn' : 'info')) return done();
    // One line per request: the route pattern, never the URL, query, headers or body,
    // which can hold addresses and keys (45 CFR 164.312(b): the log must not become a disclosure itself).
    const line = {
      reqId: req.id,
      method: req.method,
      route,
      status: reply.statusCode,
      duration_ms: Math.round(reply.elapsedTime * 100) / 100,
      principal: req.ctx?.principal ? { type: req.ctx.principal.type, id: req.ctx.principal.id } : null,
    };
    if (failed) req.log.warn(line, 'request failed');
    else req.log.info(line, 'request');
    done();
  });

  await app.register(fastifySwagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Mailward API',
        version: '1',
        description:
          'Identity, oversight, mail, vault and audit for AI agents in healthcare. Errors are application/problem+json (RFC 9457) with a stable `code`; each error response lists the codes it can carry.',
        license: { name: 'Apache-2.0', identifier: 'Apache-2.0' },
      },
      servers: [
        { url: 'http://127.0.0.1:8025', description: 'the default address of `mailward serve` (MAILWARD_HTTP_HOST, MAILWARD_HTTP_PORT)' },
      ],
      components: { securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer', description: 'mw_<key id>_<secret>' } } },
    },
    transform: documentRoute,
    transformObject: tidyDocument,
  });
  await app.register(fastifySwaggerUi, { routePrefix: '/docs', staticCSP: true });

  await app.register(systemRoutes(c, metrics));
  await app.register(publicReceiptRoutes({ receipts: c.auditLog.receipts }));
  for (const plugin of beside) await app.register(plugin);
  await app.register(async (v1) => {
    v1.addHook(
      'onRequest',
      createAuthHook({
        apiKeys: c.apiKeys,
        rateLimiter: c.rateLimiter,
        sessions: { accounts: c.accounts.accounts, publicUrl: c.accounts.config.publicUrl },
      }),
    );
    v1.addHook('preValidation', refuseUnsafeText);
    await v1.register(identityRoutes({ identity: c.identity, apiKeys: c.apiKeys }));
    await v1.register(auditRoutes({ reader: c.auditReader }));
    await v1.register(disclosureRoutes({ disclosures: c.disclosures }));
    await v1.register(breachRoutes({ breaches: c.breaches }));
    await v1.register(complianceRoutes({ complianceReport: c.complianceReport }));
    await v1.register(
      mailRoutes({ mailboxes: c.mail.mailboxes, mail: c.mail.mail, reader: c.mail.reader, maxMessageBytes: c.config.smtp.maxMessageBytes }),
    );
    await v1.register(approvalRoutes({ approvals: c.mail.approvals }));
    await v1.register(identityVerifyRoutes({ verifier: c.mail.identityVerifier, maxMessageBytes: c.config.smtp.maxMessageBytes }));
    await v1.register(vaultRoutes({ vault: c.vault }));
    await v1.register(templatesRoutes({ templates: c.mail.templates, bulk: c.mail.bulk }));
    await v1.register(consentRoutes({ consent: c.consent, part2: c.part2Consents }));
    await v1.register(grantsRoutes({ grants: c.grants }));
    await v1.register(mailRetentionRoutes({ retention: c.mail.retention }));
    await v1.register(dnsRoutes({ dns: c.mail.dnsRecords }));
    await v1.register(receiptRoutes({ reader: c.mail.reader, receipts: c.auditLog.receipts }));
    await v1.register(accountsRoutes({ accounts: c.accounts }));
    await v1.register(eventRoutes({ events: c.webhooks.events, feed: c.webhooks.feed, stream: c.webhooks.stream }));
    await v1.register(webhookRoutes({ webhooks: c.webhooks.webhooks }));
  });
  return app as unknown as FastifyInstance;
};
