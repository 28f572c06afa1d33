import type { FastifyInstance } from 'fastify';
import { loadConfig } from '../../src/app/config.js';
import { type Container, createContainer } from '../../src/app/container.js';
import { buildServer } from '../../src/app/http-server.js';
import type { Clock } from '../../src/kernel/clock.js';
import { createLogger, type Logger } from '../../src/kernel/log.js';
import type { Dialect } from '../../src/store/db.js';
import type { HostLookup } from '../../src/webhooks/url-safety.js';
import { freshDatabase } from './dialects.js';

export type TestApp = {
  dialect: Dialect;
  c: Container;
  app: FastifyInstance;
  adminKey: string;
  orgId: string;
  domain: string;
  dataDir: string;
  env: Record<string, string>;
  /** Authenticated JSON request through fastify's inject (no socket). */
  call: (
    method: string,
    url: string,
    key: string | null,
    body?: unknown,
    headers?: Record<string, string>,
  ) => Promise<{ status: number; body: any; headers: Record<string, unknown> }>;
  close: () => Promise<void>;
};

/** A fully wired Mailward on a fresh store of `dialect`, initialised with one organisation. */
export const createTestApp = async (
  dialect: Dialect,
  opts: {
    env?: Record<string, string>;
    clock?: Clock;
    domain?: string;
    hostLookup?: HostLookup;
    logger?: Logger;
    /** Adds test-only routes to the real server before it is ready (the admission test's request holder). */
    beforeReady?: (app: FastifyInstance) => void;
  } = {},
): Promise<TestApp> => {
  const db = await freshDatabase(dialect);
  const env = { ...db.env, MAILWARD_LOG_LEVEL: 'silent', ...opts.env };
  const config = loadConfig(env);
  const c = await createContainer(config, {
    createMasterKey: true,
    clock: opts.clock,
    logger: opts.logger ?? createLogger({ level: 'silent' }),
    ...(opts.hostLookup ? { hostLookup: opts.hostLookup } : {}),
  });
  const domain = opts.domain ?? 'hospital.example';
  const init = await c.init({ orgName: 'General Hospital', domain });
  if (!init) throw new Error('init returned nothing');
  const app = await buildServer(c);
  opts.beforeReady?.(app);
  await app.ready();
  const call: TestApp['call'] = async (method, url, key, body, headers = {}) => {
    const res = await app.inject({
      method: method as 'GET',
      url,
      headers: {
        ...(key ? { authorization: `Bearer ${key}` } : {}),
        ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
        ...headers,
      },
      ...(body !== undefined ? { payload: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
    });
    let parsed: unknown = res.body;
    try {
      parsed = res.body ? JSON.parse(res.body) : undefined;
    } catch {
      /* not JSON */
    }
    return { status: res.statusCode, body: parsed, headers: res.headers };
  };
  return {
    dialect,
    c,
    app,
    adminKey: init.admin_api_key,
    orgId: init.org_id,
    domain,
    dataDir: db.dataDir,
    env,
    call,
    close: async () => {
      await app.close();
      await c.close();
      await db.drop();
    },
  };
};

/** Creates department > reviewer > agent with an agent key, through the API, as a new user would. */
export const seedAgent = async (t: TestApp, name = 'Scheduling Assistant', scopes?: string[]) => {
  const dep = await t.call('POST', '/v1/departments', t.adminKey, { name: 'Cardiology' });
  const reviewer = await t.call('POST', '/v1/humans', t.adminKey, {
    name: 'Dr. Rivera',
    email: `rivera.${Math.random().toString(36).slice(2, 8)}@hospital.example`,
    roles: ['reviewer'],
  });
  const agent = await t.call('POST', '/v1/agents', t.adminKey, {
    name,
    department_id: dep.body.id,
    responsible_human_id: reviewer.body.id,
  });
  const key = await t.call('POST', `/v1/agents/${agent.body.id}/api-keys`, t.adminKey, scopes ? { scopes } : {});
  if (agent.status !== 201 || key.status !== 201) throw new Error(`seeding failed: ${JSON.stringify([agent.body, key.body])}`);
  return {
    department: dep.body,
    reviewer: reviewer.body,
    agent: agent.body,
    agentKey: key.body.key as string,
    agentKeyId: key.body.id as string,
  };
};
