import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { messageIdHash, type ReceiptService } from '../audit/receipts.js';
import { AppError } from '../kernel/errors.js';
import type { ReadService } from '../mail/read-service.js';
import { idParams, problems, secured } from './common-schemas.js';
import { publicRoute } from './common-schemas.js';

/** `.tlog-proof` files are text (c2sp.org/tlog-proof: "SHOULD be stored with file extension .tlog-proof"). */
const PROOF_TYPE = 'text/plain; charset=utf-8';

/** GET /v1/emails/{id}/receipt (CONTRACT.md, receipts): the message's c2sp.org/tlog-proof. */
export const receiptRoutes =
  (deps: { reader: Pick<ReadService, 'messageIdOf'>; receipts: ReceiptService }) => async (root: FastifyInstance) => {
    const app = root.withTypeProvider<ZodTypeProvider>();
    app.get(
      '/v1/emails/:id/receipt',
      {
        schema: {
          operationId: 'getEmailReceipt',
          tags: ['mail'],
          security: secured,
          summary:
            'Transparency receipt of a delivered message: a c2sp.org/tlog-proof@v1 under the latest signed (and cosigned) checkpoint',
          params: idParams('msg'),
          response: { 200: z.string(), ...problems(400, 401, 403, 404, 409) },
        },
      },
      async (req, reply) => {
        const m = await deps.reader.messageIdOf(req.ctx, req.params.id);
        if (m.direction !== 'outbound' || m.status !== 'delivered')
          throw new AppError('receipt_not_found', 404, 'Only delivered outbound mail has a receipt.');
        return reply.type(PROOF_TYPE).send(await deps.receipts.proofFor(messageIdHash(m.message_id)));
      },
    );
  };

/**
 * GET /.well-known/mailward/receipts/{hash}, unauthenticated: `hash` is the hex
 * SHA-256 of the Message-ID; the receipt holds only hashes (audit/receipts.ts),
 * so anyone holding the message can fetch and check it, and nobody learns more.
 */
export const publicReceiptRoutes = (deps: { receipts: ReceiptService }) => async (root: FastifyInstance) => {
  const app = root.withTypeProvider<ZodTypeProvider>();
  app.get(
    '/.well-known/mailward/receipts/:hash',
    {
      schema: {
        operationId: 'getPublicReceipt',
        tags: ['system'],
        security: publicRoute,
        summary: 'Public transparency receipt by SHA-256 of the Message-ID (hex); reveals only hashes',
        params: z.strictObject({ hash: z.string().regex(/^[0-9a-f]{64}$/, 'hex SHA-256 of the Message-ID') }),
        response: { 200: z.string(), ...problems(400, 404, 409) },
      },
    },
    async (req, reply) => reply.type(PROOF_TYPE).send(await deps.receipts.proofFor(req.params.hash)),
  );
};
