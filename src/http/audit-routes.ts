import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { AuditLog } from '../audit/audit-log.js';
import type { AuditService } from '../audit/audit-service.js';
import { leafHash } from '../audit/merkle.js';
import type { Guard } from '../identity/guard.js';
import { actorOf, type RequestContext, requireAnyRole } from '../identity/principal.js';
import { canonicalJson } from '../audit/canonical.js';
import { sha256Hex } from '../kernel/crypto/hash.js';
import { notFound, unprocessable } from '../kernel/errors.js';
import {
  cursorQuery,
  decodeIntCursor,
  encodeCursor,
  idParams,
  intQuery,
  isoQuery,
  limitQuery,
  problems,
  secured,
} from './common-schemas.js';
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
const READERS = ['admin', 'auditor', 'privacy_officer'] as const;
const humanActor = (ctx: RequestContext) => ({ ...actorOf(ctx), id: ctx.principal.id, orgId: ctx.principal.orgId });
const reqInfo = (ctx: RequestContext) => ({ requestId: ctx.requestId, clientIp: ctx.clientIp });

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
  ({ audit, auditLog, guard }: { audit: AuditService; auditLog: AuditLog; guard: Guard }) =>
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
      async (req) => {
        const q = req.query;
        // 45 CFR 164.312(b): the audit log holds who touched which patient's mail; reading it is itself audited,
        // in the transaction that reads the page (group commit: it locks nothing but the audit head).
        const events = await guard.change(
          req.ctx,
          'audit.events.read',
          null,
          async (tx) => {
            requireAnyRole(req.ctx, ['admin', 'auditor', 'privacy_officer']);
            const afterSeq = decodeIntCursor(q.cursor);
            const filters = {
              actor_id: q.actor_id ?? null,
              action: q.action ?? null,
              target_id: q.target_id ?? null,
              since: q.since ? new Date(q.since).toISOString() : null,
              until: q.until ? new Date(q.until).toISOString() : null,
            };
            // One row beyond the page tells whether another exists: a page that reached the end has no
            // next_cursor, although this read's own event now follows it (else paging would never end).
            const found = await audit.list(
              {
                orgId: req.ctx.principal.orgId,
                actorId: q.actor_id,
                action: q.action,
                targetId: q.target_id,
                since: filters.since ?? undefined,
                until: filters.until ?? undefined,
                afterSeq,
                limit: q.limit + 1,
              },
              tx,
            );
            const page = found.slice(0, q.limit);
            // Which filters, as a hash and their names: a target or actor id is no PHI, but a filter is what the reader looked for.
            await guard.recordIn(tx, req.ctx, 'audit.events.read', null, {
              filters: Object.entries(filters)
                .filter(([, v]) => v !== null)
                .map(([k]) => k),
              filter_hash: sha256Hex(canonicalJson({ ...filters, cursor: q.cursor ?? null, limit: q.limit })),
              count: page.length,
              first_seq: page[0]?.seq ?? null,
              last_seq: page.at(-1)?.seq ?? null,
            });
            return { page, more: found.length > q.limit };
          },
          { groupCommit: true },
        );
        const last = events.page.at(-1);
        return {
          events: events.page.map(({ org_id: _org, ...e }) => e),
          next_cursor: events.more && last ? encodeCursor(last.seq) : null,
        };
      },
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
      (req) =>
        guard.read(req.ctx, 'audit.checkpoint.read', null, async () => {
          requireAnyRole(req.ctx, [...READERS]);
          return auditLog.checkpoints.current();
        }),
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
      async (req) => {
        const proofTarget = { type: 'audit_event', id: String(req.params.seq) };
        const proof = await guard.read(req.ctx, 'audit.proof.read', proofTarget, async () => {
          requireAnyRole(req.ctx, [...READERS]);
          const seq = req.params.seq;
          const event = await audit.get(seq, req.ctx.principal.orgId);
          if (!event) throw notFound('audit event');
          // Default: the latest checkpoint (signed now if needed); an explicit size carries its checkpoint if one was signed.
          const cp =
            req.query.tree_size === undefined ? await auditLog.checkpoints.current() : await auditLog.checkpoints.get(req.query.tree_size);
          const size = req.query.tree_size ?? cp!.tree_size;
          if (size < seq) throw unprocessable('tree_size_too_small', 'tree_size must be at least the event seq.');
          const path = await auditLog.tree.inclusionProof(seq - 1, size);
          return {
            seq,
            leaf_index: seq - 1,
            tree_size: size,
            event_hash: event.hash,
            leaf_hash: leafHash(Buffer.from(event.hash, 'hex')).toString('hex'),
            audit_path: path.map((b) => b.toString('hex')),
            root_hash: cp ? cp.root_hash : (await auditLog.tree.rootAt(size)).toString('hex'),
            checkpoint: cp ?? null,
          };
        });
        // 45 CFR 164.312(b): a proof discloses an event of the log; audited before it is answered (fail closed). A
        // transaction of its own: signing the default checkpoint above writes, so it cannot run inside one on SQLite.
        await guard.change(
          req.ctx,
          'audit.proof.read',
          proofTarget,
          (tx) => guard.recordIn(tx, req.ctx, 'audit.proof.read', proofTarget, { seq: proof.seq, tree_size: proof.tree_size }),
          { groupCommit: true },
        );
        return proof;
      },
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
      (req) =>
        guard.read(req.ctx, 'audit.consistency.read', null, async () => {
          requireAnyRole(req.ctx, [...READERS]);
          const second = req.query.second ?? (await auditLog.checkpoints.current()).tree_size;
          const { first } = req.query;
          if (first > second) throw unprocessable('tree_size_order', 'first must not exceed second.');
          const proof = await auditLog.tree.consistencyProof(first, second);
          return {
            first,
            second,
            first_root: (await auditLog.tree.rootAt(first)).toString('hex'),
            second_root: (await auditLog.tree.rootAt(second)).toString('hex'),
            proof: proof.map((b) => b.toString('hex')),
          };
        }),
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
      (req) =>
        guard.read(req.ctx, 'audit.verify', null, async () => {
          requireAnyRole(req.ctx, ['admin', 'auditor']);
          const r = await auditLog.verify();
          // 21 CFR 11.10(e): the check and its outcome are part of the trail.
          await audit.recordAlone({
            action: 'audit.verified',
            actor: actorOf(req.ctx),
            outcome: r.ok ? 'success' : 'error',
            ...reqInfo(req.ctx),
            details: { ok: r.ok, first_bad_seq: r.first_bad_seq, tree_size: r.tree_size },
          });
          return r;
        }),
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
      (req) =>
        guard.read(req.ctx, 'audit.legal_hold.list', null, async () => {
          requireAnyRole(req.ctx, [...READERS]);
          const holds = await auditLog.retention.listHolds(req.ctx.principal.orgId);
          return { legal_holds: holds.map(({ org_id: _o, ...h }) => h) };
        }),
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
      async (req, reply) => {
        const hold = await guard.read(req.ctx, 'audit.legal_hold.placed', null, async () => {
          requireAnyRole(req.ctx, ['admin', 'privacy_officer']);
          return auditLog.retention.placeHold(humanActor(req.ctx), req.body.matter, reqInfo(req.ctx));
        });
        const { org_id: _o, ...out } = hold;
        return reply.code(201).send(out);
      },
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
      async (req) => {
        const hold = await guard.read(req.ctx, 'audit.legal_hold.released', { type: 'legal_hold', id: req.params.id }, async () => {
          requireAnyRole(req.ctx, ['admin', 'privacy_officer']);
          return auditLog.retention.releaseHold(humanActor(req.ctx), req.params.id, reqInfo(req.ctx));
        });
        const { org_id: _o, ...out } = hold;
        return out;
      },
    );
  };
