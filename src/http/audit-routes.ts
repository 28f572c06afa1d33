import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { AuditReader } from '../compliance/audit-reader.js';
import { cursorQuery, idParams, intQuery, isoQuery, limitQuery, problems, secured } from './common-schemas.js';
import { openApi } from './openapi-registry.js';

const hex32 = z.string().regex(/^[0-9a-f]{64}$/);

export const checkpointOut = z.object({
  tree_size: z.number().int(),
  root_hash: hex32,
  signature: z.string().describe('base64 Ed25519 signature over the checkpoint text (the note body)'),
  key_id: z.string().describe('kid of the key in /.well-known/jwks.json'),
  at: z.string(),
  origin: z.string(),
  verifier_key: z.string().describe('C2SP verifier key: <origin>+<key id>+<base64 key>'),
  note: z.string().describe('C2SP tlog-checkpoint signed note'),
  cosigned_note: z.string().optional().describe("the note with the witnesses' c2sp.org/tlog-cosignature lines appended"),
  witnesses: z
    .array(
      z.object({
        name: z.string(),
        status: z.string().describe('cosigned, refused (409/422/403/404: inconsistent or forked history) or unreachable'),
        http_status: z.number().int().nullable(),
        known_size: z.number().int().nullable().describe('on 409: the size the witness last cosigned'),
        cosigned_at: z.number().int().nullable(),
      }),
    )
    .optional(),
});

const proofOut = z
  .object({
    seq: z.number().int(),
    leaf_index: z.number().int(),
    tree_size: z.number().int(),
    event_hash: hex32,
    leaf_hash: hex32.describe('RFC 6962: SHA-256(0x00 || event hash bytes)'),
    audit_path: z.array(hex32),
    root_hash: hex32,
    checkpoint: checkpointOut.nullable(),
  })
  .register(openApi, { id: 'InclusionProof' });

const verifyOut = z
  .object({
    ok: z.boolean(),
    source: z.string(),
    events_checked: z.number().int(),
    first_seq: z.number().int().nullable(),
    last_seq: z.number().int(),
    tree_size: z.number().int(),
    root_hash: z.string(),
    purged_through: z.number().int(),
    checkpoints: z.object({
      total: z.number().int(),
      roots_checked: z.number().int(),
      signatures_checked: z.number().int(),
      before_retention: z.number().int(),
    }),
    first_bad_seq: z.number().int().nullable(),
    threads: z.number().int(),
    problems: z.array(
      z.object({ code: z.string(), message: z.string(), seq: z.number().int().optional(), tree_size: z.number().int().optional() }),
    ),
    warnings: z
      .array(z.object({ code: z.string(), message: z.string(), seq: z.number().int().optional(), tree_size: z.number().int().optional() }))
      .describe('what the check could not rule out (ok stays true)'),
    coverage: z.object({
      signed_through: z.number().int().describe('the newest checkpoint size the log matched'),
      unsigned_events: z.number().int().describe('newest events covered by no signed checkpoint'),
      oldest_unsigned_at: z.string().nullable(),
      newest_checkpoint_at: z.string().nullable(),
      cadence: z.object({ every_events: z.number().int(), every_ms: z.number().int() }),
      external: z.object({
        given: z.number().int(),
        checked: z.number().int(),
        newest_size: z.number().int().nullable(),
        key_pinned: z.boolean(),
        published_dir: z.string().nullable(),
      }),
    }),
  })
  .register(openApi, { id: 'AuditVerification' });

const holdOut = z
  .object({
    id: z.string(),
    matter: z.string(),
    created_by: z.string(),
    created_at: z.string(),
    released_by: z.string().nullable(),
    released_at: z.string().nullable(),
  })
  .register(openApi, { id: 'LegalHold' });

const sizeQuery = intQuery(1, Number.MAX_SAFE_INTEGER);

export const auditEventOut = z.object({
  seq: z.number().int(),
  id: z.string(),
  at: z.string(),
  action: z.string(),
  actor: z.object({ id: z.string().nullable(), type: z.string() }),
  delegation_chain: z.array(z.object({ type: z.string(), id: z.string(), name: z.string() })),
  target: z.object({ type: z.string(), id: z.string() }).nullable(),
  outcome: z.string(),
  request_id: z.string().nullable(),
  client_ip: z.string().nullable(),
  content_hash: z.string().nullable(),
  details: z.record(z.string(), z.unknown()),
  prev_hash: z.string(),
  hash: z.string(),
});

const listQuery = z.strictObject({
  actor_id: z.string().max(40).optional(),
  action: z.string().max(100).optional(),
  target_id: z.string().max(40).optional(),
  since: isoQuery.optional(),
  until: isoQuery.optional(),
  cursor: cursorQuery.optional(),
  limit: limitQuery,
});

export const auditRoutes =
  ({ reader }: { reader: AuditReader }) =>
  async (root: FastifyInstance) => {
    const app = root.withTypeProvider<ZodTypeProvider>();
    app.get(
      '/v1/audit/events',
      {
        schema: {
          operationId: 'listAuditEvents',
          tags: ['audit'],
          security: secured,
          summary: 'Audit events of your organization, oldest first (admin, auditor, privacy_officer)',
          querystring: listQuery,
          response: {
            200: z
              .object({ events: z.array(auditEventOut), next_cursor: z.string().nullable() })
              .register(openApi, { id: 'AuditEventPage' }),
            ...problems(400, 401, 403, 404),
          },
        },
      },
      (req) => reader.listEvents(req.ctx, req.query),
    );

    app.get(
      '/v1/audit/checkpoint',
      {
        schema: {
          operationId: 'getAuditCheckpoint',
          tags: ['audit'],
          security: secured,
          summary: 'The latest signed checkpoint, signed now if events were appended since (admin, auditor, privacy_officer)',
          response: { 200: checkpointOut, ...problems(401, 403, 404, 503) },
        },
      },
      (req) => reader.checkpoint(req.ctx),
    );

    app.get(
      '/v1/audit/events/:seq/proof',
      {
        schema: {
          operationId: 'getAuditInclusionProof',
          tags: ['audit'],
          security: secured,
          summary: 'RFC 6962 inclusion proof of one event of your organization (default: in the latest checkpoint)',
          params: z.strictObject({ seq: intQuery(1, Number.MAX_SAFE_INTEGER) }),
          querystring: z.strictObject({ tree_size: sizeQuery.optional() }),
          response: { 200: proofOut, ...problems(400, 401, 403, 404, 422) },
        },
      },
      (req) => reader.proof(req.ctx, req.params.seq, req.query.tree_size),
    );

    app.get(
      '/v1/audit/consistency',
      {
        schema: {
          operationId: 'getAuditConsistencyProof',
          tags: ['audit'],
          security: secured,
          summary: 'RFC 6962 consistency proof between two tree sizes (second defaults to the latest checkpoint)',
          querystring: z.strictObject({ first: sizeQuery, second: sizeQuery.optional() }),
          response: {
            200: z
              .object({
                first: z.number().int(),
                second: z.number().int(),
                first_root: hex32,
                second_root: hex32,
                proof: z.array(hex32),
              })
              .register(openApi, { id: 'ConsistencyProof' }),
            ...problems(400, 401, 403, 404, 422),
          },
        },
      },
      (req) => reader.consistency(req.ctx, req.query.first, req.query.second),
    );

    app.get(
      '/v1/audit/verify',
      {
        schema: {
          operationId: 'verifyAuditLog',
          tags: ['audit'],
          security: secured,
          summary: 'Recompute the whole chain and tree and check every checkpoint signature (admin, auditor)',
          response: { 200: verifyOut, ...problems(401, 403, 404) },
        },
      },
      (req) => reader.verify(req.ctx),
    );

    app.get(
      '/v1/audit/legal-holds',
      {
        schema: {
          operationId: 'listLegalHolds',
          tags: ['audit'],
          security: secured,
          summary: 'Legal holds of your organization',
          response: {
            200: z.object({ legal_holds: z.array(holdOut) }).register(openApi, { id: 'LegalHoldList' }),
            ...problems(401, 403, 404),
          },
        },
      },
      async (req) => ({ legal_holds: await reader.listHolds(req.ctx) }),
    );

    app.post(
      '/v1/audit/legal-holds',
      {
        schema: {
          operationId: 'createLegalHold',
          tags: ['audit'],
          security: secured,
          summary: 'Place a legal hold: no audit event is purged while any hold is active (admin, privacy_officer)',
          body: z.strictObject({ matter: z.string().trim().min(1).max(200).describe('matter or case reference; no PHI') }),
          response: { 201: holdOut, ...problems(400, 401, 403, 404) },
        },
      },
      async (req, reply) => reply.code(201).send(await reader.placeHold(req.ctx, req.body.matter)),
    );

    app.post(
      '/v1/audit/legal-holds/:id/release',
      {
        schema: {
          operationId: 'releaseLegalHold',
          tags: ['audit'],
          security: secured,
          summary: 'Release a legal hold (admin, privacy_officer)',
          params: idParams('lgh'),
          response: { 200: holdOut, ...problems(400, 401, 403, 404, 409) },
        },
      },
      (req) => reader.releaseHold(req.ctx, req.params.id),
    );
  };
