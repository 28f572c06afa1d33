import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { AccountsModule } from '../accounts/accounts-module.js';
import { invitationOut, sessionIdParams, sessionsOut, ssoConfigBody, ssoConfigOut } from '../accounts/accounts-schemas.js';
import { consoleOrigin } from '../accounts/origin.js';
import { idParams, problems, secured } from './common-schemas.js';

/** Sign-in administration: invitations, unlock, sessions, single sign-on. The console itself is src/web. */
export const accountsRoutes =
  (deps: { accounts: Pick<AccountsModule, 'accounts' | 'sso' | 'config'> }) => async (root: FastifyInstance) => {
    const app = root.withTypeProvider<ZodTypeProvider>();
    const { accounts, sso, config } = deps.accounts;
    const tags = ['sign-in'];
    app.post(
      '/v1/humans/:id/invitations',
      {
        schema: {
          tags,
          security: secured,
          operationId: 'inviteHuman',
          summary: 'A one-time link where the human sets a password and enrols a second factor; shown once (admin)',
          params: idParams('hum'),
          response: { 201: invitationOut, ...problems(400, 401, 403, 404, 422, 503) },
        },
      },
      async (req, reply) =>
        reply.code(201).send(await accounts.invite(req.ctx, req.params.id, consoleOrigin(config.publicUrl, req.headers.host))),
    );
    app.post(
      '/v1/humans/:id/unlock',
      {
        schema: {
          tags,
          security: secured,
          operationId: 'unlockHuman',
          summary: 'Unlock an account locked by failed sign-ins (admin; audited)',
          params: idParams('hum'),
          response: { 200: z.object({ id: z.string(), locked: z.boolean(), was_locked: z.boolean() }), ...problems(400, 401, 403, 404) },
        },
      },
      (req) => accounts.unlock(req.ctx, req.params.id),
    );
    app.get(
      '/v1/humans/:id/sessions',
      {
        schema: {
          tags,
          security: secured,
          operationId: 'listHumanSessions',
          summary: "A human's open sessions (admin, or the human)",
          params: idParams('hum'),
          response: { 200: sessionsOut, ...problems(400, 401, 403, 404) },
        },
      },
      (req) => accounts.listSessions(req.ctx, req.params.id),
    );
    app.delete(
      '/v1/humans/:id/sessions',
      {
        schema: {
          tags,
          security: secured,
          operationId: 'endHumanSessions',
          summary: 'End every session of a human at once, in every process (admin)',
          params: idParams('hum'),
          response: { 200: z.object({ ended: z.number() }), ...problems(400, 401, 403, 404) },
        },
      },
      (req) => accounts.endHumanSessions(req.ctx, req.params.id),
    );
    app.get(
      '/v1/sessions',
      {
        schema: {
          tags,
          security: secured,
          operationId: 'listOwnSessions',
          summary: "The caller's own open sessions",
          response: { 200: sessionsOut, ...problems(401, 404) },
        },
      },
      (req) => accounts.listSessions(req.ctx),
    );
    app.delete(
      '/v1/sessions/:id',
      {
        schema: {
          tags,
          security: secured,
          operationId: 'revokeSession',
          summary: "End one session (one's own, or any of the organization's for admins)",
          params: sessionIdParams,
          response: { 200: z.object({ id: z.string(), ended: z.boolean() }), ...problems(400, 401, 403, 404) },
        },
      },
      (req) => accounts.revokeSession(req.ctx, req.params.id),
    );
    app.put(
      '/v1/sso',
      {
        schema: {
          tags,
          security: secured,
          operationId: 'configureSso',
          summary: "The organization's OpenID Connect provider (admin); the client secret is sealed at rest and never returned",
          body: ssoConfigBody,
          response: { 200: ssoConfigOut, ...problems(400, 401, 403, 422) },
        },
      },
      (req) => sso.configure(req.ctx, req.body),
    );
  };
