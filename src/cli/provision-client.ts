import fs from 'node:fs';
import path from 'node:path';
import type { z } from 'zod';
import { createMailwardClient, isMailwardError, type Schemas, unwrap } from '../../sdk/src/index.js';
import { ConfigError, loadConfig } from '../app/config.js';
import { type Container, createContainer } from '../app/container.js';
import {
  agentId,
  agentOut,
  apiKeyId,
  createAgentBody,
  createDepartmentBody,
  createHumanBody,
  createKeyBody,
  departmentOut,
  humanId,
  humanOut,
  keyCreatedOut,
  keyOut,
} from '../identity/identity-schemas.js';
import type { RequestContext } from '../identity/principal.js';
import { AppError } from '../kernel/errors.js';
import { createLogger } from '../kernel/log.js';
import { createMailboxBody, mailboxOut } from '../mail/mail-schemas.js';
import { bootstrapKeyPath } from './serve-command.js';

export type Department = Schemas['Department'];
export type Human = Schemas['Human'];
export type Agent = Schemas['Agent'];
export type Mailbox = Schemas['Mailbox'];
export type ApiKey = Schemas['ApiKey'];
export type ApiKeyCreated = Schemas['ApiKeyCreated'];

/**
 * What `mailward departments|humans|agents|mailboxes|keys` do, the same two ways: over REST against a running
 * server (the SDK), or in-process on the local data dir through the same service functions REST calls. Either
 * way the caller acts as the principal of an API key, so every change is authorised and audited as that admin.
 */
export type Provisioner = {
  mode: 'remote' | 'local';
  createDepartment: (body: Schemas['CreateDepartmentRequest']) => Promise<Department>;
  listDepartments: () => Promise<Department[]>;
  createHuman: (body: Schemas['CreateHumanRequest']) => Promise<Human>;
  listHumans: () => Promise<Human[]>;
  deactivateHuman: (id: string) => Promise<Human>;
  createAgent: (body: Schemas['CreateAgentRequest']) => Promise<Agent>;
  listAgents: () => Promise<Agent[]>;
  deactivateAgent: (id: string) => Promise<Agent>;
  createMailbox: (body: Schemas['CreateMailboxRequest']) => Promise<Mailbox>;
  listMailboxes: () => Promise<Mailbox[]>;
  createKey: (principal: 'human' | 'agent', id: string, scopes: string[] | undefined) => Promise<ApiKeyCreated>;
  listKeys: (principalId?: string) => Promise<ApiKey[]>;
  revokeKey: (id: string) => Promise<ApiKey>;
  close: () => Promise<void>;
};

export type Target = { addr?: string; key?: string };

/** A problem the user fixes by changing a setting: printed as one line naming it, exit 2. */
export class SettingError extends Error {}

const remote = (addr: string, key: string): Provisioner => {
  let url: URL;
  try {
    url = new URL(addr);
  } catch {
    throw new SettingError(`MAILWARD_ADDR (or --addr) must be a URL such as http://127.0.0.1:8025, not "${addr}".`);
  }
  const client = createMailwardClient({ baseUrl: url.toString(), apiKey: key });
  const { api } = client;
  const reach = async <T>(p: Promise<T>): Promise<T> => {
    try {
      return await p;
    } catch (e) {
      if (isMailwardError(e)) throw e;
      const cause = (e as { cause?: { code?: string } }).cause?.code ?? (e as Error).message;
      throw new SettingError(`cannot reach the server at MAILWARD_ADDR=${url.origin} (${cause}); is \`mailward serve\` running there?`);
    }
  };
  const id = (v: string) => ({ params: { path: { id: v } } });
  return {
    mode: 'remote',
    createDepartment: (body) => reach(unwrap(api.POST('/v1/departments', { body }))),
    listDepartments: async () => (await reach(unwrap(api.GET('/v1/departments')))).departments,
    createHuman: (body) => reach(unwrap(api.POST('/v1/humans', { body }))),
    listHumans: async () => (await reach(unwrap(api.GET('/v1/humans')))).humans,
    deactivateHuman: (v) => reach(unwrap(api.POST('/v1/humans/{id}/deactivate', id(v)))),
    createAgent: (body) => reach(unwrap(api.POST('/v1/agents', { body }))),
    listAgents: async () => (await reach(unwrap(api.GET('/v1/agents')))).agents,
    deactivateAgent: (v) => reach(unwrap(api.POST('/v1/agents/{id}/deactivate', id(v)))),
    createMailbox: (body) => reach(unwrap(api.POST('/v1/mailboxes', { body }))),
    listMailboxes: async () => (await reach(unwrap(api.GET('/v1/mailboxes')))).mailboxes,
    createKey: (principal, v, scopes) =>
      reach(
        unwrap(
          principal === 'human'
            ? api.POST('/v1/humans/{id}/api-keys', { ...id(v), body: scopes ? { scopes } : {} })
            : api.POST('/v1/agents/{id}/api-keys', { ...id(v), body: scopes ? { scopes } : {} }),
        ),
      ),
    listKeys: async (principalId) =>
      (await reach(unwrap(api.GET('/v1/api-keys', { params: { query: principalId ? { principal_id: principalId } : {} } })))).api_keys,
    revokeKey: (v) => reach(unwrap(api.DELETE('/v1/api-keys/{id}', id(v)))),
    close: async () => {},
  };
};

/** Parses input with the route's own zod schema, so local mode refuses exactly what REST refuses (400 validation_failed). */
const parsed = <S extends z.ZodType>(schema: S, input: unknown): z.output<S> => {
  const r = schema.safeParse(input);
  if (r.success) return r.data;
  const where = r.error.issues.map((i) => `${i.path.join('.') || 'input'}: ${i.message}`).join('; ');
  throw new AppError('validation_failed', 400, `The input is invalid: ${where}`);
};

const local = async (key: string | undefined): Promise<Provisioner> => {
  const config = loadConfig();
  if (config.database.kind === 'sqlite' && !fs.existsSync(config.database.file)) {
    throw new SettingError(
      `MAILWARD_ADDR is not set and no data dir found at ${path.relative(process.cwd(), config.dataDir) || '.'} (no ${path.basename(config.database.file)} there). ` +
        'Set MAILWARD_ADDR and MAILWARD_API_KEY to provision a running server, or MAILWARD_DATA_DIR (or DATABASE_URL) to the store of this host.',
    );
  }
  const keyFile = bootstrapKeyPath(config.dataDir);
  const apiKey = key ?? (fs.existsSync(keyFile) ? fs.readFileSync(keyFile, 'utf8').trim() : undefined);
  if (!apiKey) {
    throw new SettingError(
      `MAILWARD_API_KEY is not set (or --key) and ${keyFile} does not exist: give an admin API key; changes are made and audited as its principal.`,
    );
  }
  const c: Container = await createContainer(config, { logger: createLogger({ level: 'warn', destination: 2 }) });
  try {
    const meta = { requestId: null, clientIp: null };
    const ctx: RequestContext = { principal: await c.apiKeys.authenticate(apiKey, meta), ...meta };
    const { identity, apiKeys } = c;
    const { mailboxes } = c.mail;
    return {
      mode: 'local',
      // The route bodies and answers through their zod schemas, as REST does: same validation, same JSON.
      createDepartment: async (body) => departmentOut.parse(await identity.createDepartment(ctx, parsed(createDepartmentBody, body))),
      listDepartments: async () => (await identity.listDepartments(ctx)).map((d) => departmentOut.parse(d)),
      createHuman: async (body) => humanOut.parse(await identity.createHuman(ctx, parsed(createHumanBody, body))),
      listHumans: async () => (await identity.listHumans(ctx)).map((h) => humanOut.parse(h)),
      deactivateHuman: async (id) => humanOut.parse(await identity.deactivateHuman(ctx, parsed(humanId, id))),
      createAgent: async (body) => agentOut.parse(await identity.createAgent(ctx, parsed(createAgentBody, body))),
      listAgents: async () => (await identity.listAgents(ctx)).map((a) => agentOut.parse(a)),
      deactivateAgent: async (id) => agentOut.parse(await identity.deactivateAgent(ctx, parsed(agentId, id))),
      createMailbox: async (body) => mailboxOut.parse(await mailboxes.create(ctx, parsed(createMailboxBody, body))),
      listMailboxes: async () => (await mailboxes.list(ctx)).map((m) => mailboxOut.parse(m)),
      createKey: async (principal, id, scopes) =>
        keyCreatedOut.parse(
          await apiKeys.create(
            ctx,
            principal,
            parsed(principal === 'human' ? humanId : agentId, id),
            parsed(createKeyBody, { scopes })?.scopes,
          ),
        ),
      listKeys: async (principalId) => (await apiKeys.list(ctx, principalId)).map((k) => keyOut.parse(k)),
      revokeKey: async (id) => keyOut.parse(await apiKeys.revoke(ctx, parsed(apiKeyId, id))),
      close: () => c.close(),
    };
  } catch (e) {
    await c.close();
    throw e;
  }
};

/**
 * Remote when an address is given (`--addr` or MAILWARD_ADDR, with `--key` or MAILWARD_API_KEY), otherwise the
 * local data dir (MAILWARD_DATA_DIR or DATABASE_URL), acting as `--key`/MAILWARD_API_KEY or, failing that, the
 * first admin's key in <data dir>/bootstrap-admin.key.
 */
export const openProvisioner = async (t: Target): Promise<Provisioner> => {
  const addr = t.addr ?? process.env.MAILWARD_ADDR;
  const key = t.key ?? process.env.MAILWARD_API_KEY;
  if (addr) {
    if (!key) throw new SettingError(`MAILWARD_API_KEY is not set (or --key): give an admin API key (mw_...) for MAILWARD_ADDR=${addr}.`);
    return remote(addr, key);
  }
  try {
    return await local(key);
  } catch (e) {
    if (e instanceof ConfigError) throw new SettingError(e.message);
    throw e;
  }
};
