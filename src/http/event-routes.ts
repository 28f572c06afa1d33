import { z } from 'zod';
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import type { EventFeed } from '../events/event-feed.js';
import type { DomainEvent } from '../events/events-log.js';
import { AppError, badRequest } from '../kernel/errors.js';
import type { EventsService } from '../webhooks/events-service.js';
import { eventListOut, listEventsQuery, streamEventsQuery } from '../webhooks/webhooks-schemas.js';
import { decodeIntCursor, problems, secured } from './common-schemas.js';

type Deps = {
  events: EventsService;
  feed: Pick<EventFeed, 'subscribe'>;
  stream: { heartbeatMs: number; maxPerKey: number };
};

/** Events read per stream pass. */
const STREAM_PAGE = 200;

/** One Server-Sent Events frame (WHATWG HTML 9.2): `id:` the seq, `event:` the type, `data:` the event JSON (one line). */
const frame = (e: DomainEvent) => `id: ${e.seq}\nevent: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`;

/**
 * The events API and the live stream (CONTRACT.md "events"): `GET /v1/events` pages the log with a cursor;
 * `GET /v1/events/stream` is Server-Sent Events woken by the event feed (no polling), resumable from
 * `Last-Event-ID` (the seq) or `?cursor=`, with heartbeat comments and at most N open streams per key.
 */
export const eventRoutes =
  ({ events, feed, stream }: Deps) =>
  async (root: FastifyInstance) => {
    const app = root.withTypeProvider<ZodTypeProvider>();
    const tags = ['events'];
    const open = new Map<string, number>();

    app.get(
      '/v1/events',
      {
        schema: {
          tags,
          security: secured,
          operationId: 'listEvents',
          summary: 'Domain events of the organisation (admins, auditors, privacy officers) or of the caller’s own mailboxes (agents)',
          querystring: listEventsQuery,
          response: { 200: eventListOut, ...problems(400, 401, 403, 404, 429) },
        },
      },
      (req) => events.list(req.ctx, req.query),
    );

    app.get(
      '/v1/events/stream',
      {
        schema: {
          tags,
          security: secured,
          operationId: 'streamEvents',
          summary: 'Server-Sent Events: id = seq, event = type, data = the event JSON; resume with Last-Event-ID; heartbeat comments',
          querystring: streamEventsQuery,
          response: { 200: z.string().describe('text/event-stream: one event per message'), ...problems(400, 401, 403, 404, 429) },
        },
      },
      async (req, reply) => {
        const scope = await events.scopeOf(req.ctx, req.query);
        const lastId = req.headers['last-event-id'];
        let after: number;
        if (typeof lastId === 'string' && lastId.trim() !== '') {
          if (!/^(0|[1-9][0-9]{0,15})$/.test(lastId.trim()))
            throw badRequest('invalid_last_event_id', 'Last-Event-ID must be an id: field of this stream.');
          after = Number(lastId.trim());
        } else {
          after = decodeIntCursor(req.query.cursor) ?? (await events.head(scope.orgId));
        }
        const keyId = req.ctx.principal.keyId;
        const n = open.get(keyId) ?? 0;
        if (n >= stream.maxPerKey) {
          throw new AppError('too_many_streams', 429, `At most ${stream.maxPerKey} open event streams per key.`, {
            temporary: true,
            extra: { retry_after: 5 },
          });
        }
        open.set(keyId, n + 1);

        reply.hijack();
        const res = reply.raw;
        res.writeHead(200, {
          'content-type': 'text/event-stream; charset=utf-8',
          'cache-control': 'no-store',
          'x-content-type-options': 'nosniff',
          'x-request-id': req.id,
          connection: 'keep-alive',
          'x-accel-buffering': 'no',
        });
        res.write(': mailward event stream\nretry: 2000\n\n');

        let closed = false;
        let pending = true;
        let reading = false;
        // Reads from the cursor until caught up; a wake-up during a read runs one more pass (nothing is missed).
        const pump = async () => {
          if (reading || closed) return;
          reading = true;
          try {
            while (pending && !closed) {
              pending = false;
              for (;;) {
                const got = await events.readAfter(scope, after, STREAM_PAGE);
                if (got.length === 0 || closed) break;
                let chunk = '';
                for (const e of got) chunk += frame(e);
                after = got.at(-1)!.seq;
                if (!res.write(chunk)) await new Promise<void>((r) => res.once('drain', () => r()));
                if (got.length < STREAM_PAGE) break;
              }
            }
          } catch (e) {
            req.log.warn({ reqId: req.id, err: { type: (e as Error)?.name } }, 'event stream read failed');
            res.end();
          } finally {
            reading = false;
          }
        };
        const unsubscribe = feed.subscribe((w) => {
          if (w !== '*' && w.orgId !== scope.orgId) return;
          if (w !== '*' && scope.mailboxIds && !(w.mailboxId && scope.mailboxIds.includes(w.mailboxId))) return;
          pending = true;
          void pump();
        });
        const heartbeat = setInterval(() => res.write(': heartbeat\n\n'), stream.heartbeatMs);
        const cleanup = () => {
          if (closed) return;
          closed = true;
          clearInterval(heartbeat);
          unsubscribe();
          const left = (open.get(keyId) ?? 1) - 1;
          if (left <= 0) open.delete(keyId);
          else open.set(keyId, left);
        };
        res.on('close', cleanup);
        req.raw.on('close', cleanup);
        void pump();
      },
    );
  };
