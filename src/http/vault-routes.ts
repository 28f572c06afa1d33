import type { FastifyInstance } from 'fastify';
import { serializerCompiler, type ZodTypeProvider } from 'fastify-type-provider-zod';
import type { VaultService } from '../vault/vault-service.js';
import {
  putSecretBody,
  secretDeletedOut,
  secretListOut,
  secretNameParams,
  secretRevealedOut,
  secretStoredOut,
  totpCodeOut,
  vaultOwnerQuery,
} from '../vault/vault-schemas.js';
import { problems, secured } from './common-schemas.js';

type TotpCode = { code: string; period: number; digits: number; expires_at: string };

/**
 * The 200 body of the code route, written field by field: the same four fields of totpCodeOut, and nothing else,
 * without zod's encode pass over the result (the route's hot path; README speed). The values come from the vault
 * service; one of the wrong type is a 500 like a zod serialization failure, never a malformed body.
 */
const serializeTotpCode = (data: unknown): string => {
  const d = data as TotpCode;
  if (typeof d.code !== 'string' || !Number.isInteger(d.period) || !Number.isInteger(d.digits) || typeof d.expires_at !== 'string') {
    throw new Error('totp code response does not match its schema');
  }
  return `{"code":${JSON.stringify(d.code)},"period":${d.period},"digits":${d.digits},"expires_at":${JSON.stringify(d.expires_at)}}`;
};

/** Thin adapters over the vault service (CONTRACT.md, REST: /v1/vault/...). */
export const vaultRoutes =
  ({ vault }: { vault: VaultService }) =>
  async (root: FastifyInstance) => {
    const app = root.withTypeProvider<ZodTypeProvider>();
    const tags = ['vault'];

    app.put(
      '/v1/vault/secrets/:name',
      {
        schema: {
          operationId: 'putSecret',
          tags,
          security: secured,
          summary: 'Store a new version of a secret (vault:write; admins with ?agent_id=)',
          params: secretNameParams,
          querystring: vaultOwnerQuery,
          body: putSecretBody,
          response: { 200: secretStoredOut, ...problems(400, 401, 403, 404, 409, 422, 429) },
        },
      },
      (req) => vault.store(req.ctx, req.params.name, req.body, req.query.agent_id),
    );
    app.get(
      '/v1/vault/secrets',
      {
        schema: {
          operationId: 'listSecrets',
          tags,
          security: secured,
          summary: 'Names, kinds, versions and metadata of secrets; never values (vault:read; admins with ?agent_id=)',
          querystring: vaultOwnerQuery,
          response: { 200: secretListOut, ...problems(400, 401, 403, 404, 422, 429) },
        },
      },
      (req) => vault.list(req.ctx, req.query.agent_id),
    );
    app.get(
      '/v1/vault/secrets/:name',
      {
        schema: {
          operationId: 'revealSecret',
          tags,
          security: secured,
          summary: 'Reveal the current value (vault:reveal, granted by an admin; never for totp)',
          params: secretNameParams,
          response: { 200: secretRevealedOut, ...problems(400, 401, 403, 404, 422, 429, 500) },
        },
      },
      (req) => vault.reveal(req.ctx, req.params.name),
    );
    app.post(
      '/v1/vault/secrets/:name/totp',
      {
        schema: {
          operationId: 'getTotpCode',
          tags,
          security: secured,
          summary: 'The current TOTP code and when it expires; the seed is never returned (vault:totp)',
          params: secretNameParams,
          response: { 200: totpCodeOut, ...problems(400, 401, 403, 404, 422, 429, 500) },
        },
        serializerCompiler: (route) =>
          route.httpStatus === '200' ? serializeTotpCode : serializerCompiler(route as unknown as Parameters<typeof serializerCompiler>[0]),
      },
      (req) => vault.totp(req.ctx, req.params.name),
    );
    app.delete(
      '/v1/vault/secrets/:name',
      {
        schema: {
          operationId: 'deleteSecret',
          tags,
          security: secured,
          summary: 'Delete a secret; versions stay sealed until retention ends (vault:write; admins with ?agent_id=)',
          params: secretNameParams,
          querystring: vaultOwnerQuery,
          response: { 200: secretDeletedOut, ...problems(400, 401, 403, 404, 422, 429) },
        },
      },
      (req) => vault.remove(req.ctx, req.params.name, req.query.agent_id),
    );
  };
