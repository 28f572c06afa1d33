import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { ApiKeysService } from '../identity/api-keys-service.js';
import {
  agentOut,
  createAgentBody,
  createDepartmentBody,
  createHumanBody,
  createKeyBody,
  departmentOut,
  humanOut,
  keyCreatedOut,
  keyOut,
  meOut,
  updateAgentBody,
} from '../identity/identity-schemas.js';
import type { IdentityService } from '../identity/identity-service.js';
import { idParams, problems, secured } from './common-schemas.js';
import { openApi } from './openapi-registry.js';

type Deps = { identity: IdentityService; apiKeys: ApiKeysService };

/** Thin adapters: parse with zod, call one service function, shape the answer. */
export const identityRoutes = (deps: Deps) => async (root: FastifyInstance) => {
  const app = root.withTypeProvider<ZodTypeProvider>();
  const { identity, apiKeys } = deps;
  const tags = ['identity'];

  app.get(
    '/v1/me',
    {
      schema: {
        operationId: 'getMe',
        tags,
        security: secured,
        summary: 'Who this key belongs to, with its delegation chain',
        response: { 200: meOut, ...problems(401, 429) },
      },
    },
    (req) => identity.me(req.ctx),
  );

  app.post(
    '/v1/departments',
    {
      schema: {
        operationId: 'createDepartment',
        tags,
        security: secured,
        summary: 'Create a department (admin)',
        body: createDepartmentBody,
        response: { 201: departmentOut, ...problems(400, 401, 403, 404) },
      },
    },
    async (req, reply) => reply.code(201).send(await identity.createDepartment(req.ctx, req.body)),
  );
  app.get(
    '/v1/departments',
    {
      schema: {
        operationId: 'listDepartments',
        tags,
        security: secured,
        summary: 'List departments',
        response: {
          200: z.object({ departments: z.array(departmentOut) }).register(openApi, { id: 'DepartmentList' }),
          ...problems(401, 404),
        },
      },
    },
    async (req) => ({
      departments: await identity.listDepartments(req.ctx),
    }),
  );
  app.get(
    '/v1/departments/:id',
    {
      schema: {
        operationId: 'getDepartment',
        tags,
        security: secured,
        summary: 'Read a department',
        params: idParams('dep'),
        response: { 200: departmentOut, ...problems(400, 401, 404) },
      },
    },
    (req) => identity.getDepartment(req.ctx, req.params.id),
  );

  app.post(
    '/v1/humans',
    {
      schema: {
        operationId: 'createHuman',
        tags,
        security: secured,
        summary: 'Create a human (admin)',
        body: createHumanBody,
        response: { 201: humanOut, ...problems(400, 401, 403, 409) },
      },
    },
    async (req, reply) => reply.code(201).send(await identity.createHuman(req.ctx, req.body)),
  );
  app.get(
    '/v1/humans',
    {
      schema: {
        operationId: 'listHumans',
        tags,
        security: secured,
        summary: 'List humans',
        response: { 200: z.object({ humans: z.array(humanOut) }).register(openApi, { id: 'HumanList' }), ...problems(401, 404) },
      },
    },
    async (req) => ({
      humans: await identity.listHumans(req.ctx),
    }),
  );
  app.get(
    '/v1/humans/:id',
    {
      schema: {
        operationId: 'getHuman',
        tags,
        security: secured,
        summary: 'Read a human',
        params: idParams('hum'),
        response: { 200: humanOut, ...problems(400, 401, 404) },
      },
    },
    (req) => identity.getHuman(req.ctx, req.params.id),
  );
  app.post(
    '/v1/humans/:id/deactivate',
    {
      schema: {
        operationId: 'deactivateHuman',
        tags,
        security: secured,
        summary: 'Deactivate a human: keys stop working at once (admin)',
        params: idParams('hum'),
        response: { 200: humanOut, ...problems(400, 401, 403, 404, 409) },
      },
    },
    (req) => identity.deactivateHuman(req.ctx, req.params.id),
  );
  app.post(
    '/v1/humans/:id/api-keys',
    {
      schema: {
        operationId: 'createHumanApiKey',
        tags,
        security: secured,
        summary: 'Issue an API key for a human; `scopes` are a subset of their roles, `read_only` limits it to GET and HEAD (admin)',
        params: idParams('hum'),
        body: createKeyBody,
        response: { 201: keyCreatedOut, ...problems(400, 401, 403, 404, 422) },
      },
    },
    async (req, reply) =>
      reply.code(201).send(await apiKeys.create(req.ctx, 'human', req.params.id, req.body?.scopes, req.body?.read_only)),
  );

  app.post(
    '/v1/agents',
    {
      schema: {
        operationId: 'createAgent',
        tags,
        security: secured,
        summary: 'Create an agent with its own address (admin)',
        body: createAgentBody,
        response: { 201: agentOut, ...problems(400, 401, 403, 404, 409, 422) },
      },
    },
    async (req, reply) => reply.code(201).send(await identity.createAgent(req.ctx, req.body)),
  );
  app.get(
    '/v1/agents',
    {
      schema: {
        operationId: 'listAgents',
        tags,
        security: secured,
        summary: 'List agents (an agent sees only itself)',
        response: { 200: z.object({ agents: z.array(agentOut) }).register(openApi, { id: 'AgentList' }), ...problems(401) },
      },
    },
    async (req) => ({
      agents: await identity.listAgents(req.ctx),
    }),
  );
  app.get(
    '/v1/agents/:id',
    {
      schema: {
        operationId: 'getAgent',
        tags,
        security: secured,
        summary: 'Read an agent',
        params: idParams('agt'),
        response: { 200: agentOut, ...problems(400, 401, 404) },
      },
    },
    (req) => identity.getAgent(req.ctx, req.params.id),
  );
  app.patch(
    '/v1/agents/:id',
    {
      schema: {
        operationId: 'updateAgent',
        tags,
        security: secured,
        summary: 'Rename, move or reassign an agent (admin)',
        params: idParams('agt'),
        body: updateAgentBody,
        response: { 200: agentOut, ...problems(400, 401, 403, 404, 422) },
      },
    },
    (req) => identity.updateAgent(req.ctx, req.params.id, req.body),
  );
  app.post(
    '/v1/agents/:id/deactivate',
    {
      schema: {
        operationId: 'deactivateAgent',
        tags,
        security: secured,
        summary: 'Deactivate an agent: keys stop working at once (admin)',
        params: idParams('agt'),
        response: { 200: agentOut, ...problems(400, 401, 403, 404) },
      },
    },
    (req) => identity.deactivateAgent(req.ctx, req.params.id),
  );
  app.post(
    '/v1/agents/:id/api-keys',
    {
      schema: {
        operationId: 'createAgentApiKey',
        tags,
        security: secured,
        summary: 'Issue an API key for an agent with scopes (admin)',
        params: idParams('agt'),
        body: createKeyBody,
        response: { 201: keyCreatedOut, ...problems(400, 401, 403, 404, 422) },
      },
    },
    async (req, reply) =>
      reply.code(201).send(await apiKeys.create(req.ctx, 'agent', req.params.id, req.body?.scopes, req.body?.read_only)),
  );

  app.get(
    '/v1/api-keys',
    {
      schema: {
        operationId: 'listApiKeys',
        tags,
        security: secured,
        summary: 'List keys (admins: the org, filter by principal_id; others: their own)',
        querystring: z.strictObject({ principal_id: z.string().max(40).optional() }),
        response: { 200: z.object({ api_keys: z.array(keyOut) }).register(openApi, { id: 'ApiKeyList' }), ...problems(400, 401) },
      },
    },
    async (req) => ({
      api_keys: await apiKeys.list(req.ctx, req.query.principal_id),
    }),
  );
  app.delete(
    '/v1/api-keys/:id',
    {
      schema: {
        operationId: 'revokeApiKey',
        tags,
        security: secured,
        summary: 'Revoke a key at once',
        params: idParams('key'),
        response: { 200: keyOut, ...problems(400, 401, 403, 404) },
      },
    },
    (req) => apiKeys.revoke(req.ctx, req.params.id),
  );
};
