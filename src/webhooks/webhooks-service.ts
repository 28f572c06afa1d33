import { hash } from 'node:crypto';
import type { Guard } from '../identity/guard.js';
import { type RequestContext, requireAnyRole } from '../identity/principal.js';
import { eventById, headSeq, pageEvents } from '../events/events-log.js';
import type { Clock } from '../kernel/clock.js';
import { open, seal } from '../kernel/crypto/envelope.js';
import type { KeyRing } from '../kernel/crypto/keyring.js';
import { decodeCursor, encodeCursor } from '../kernel/cursor.js';
import { notFound, unprocessable } from '../kernel/errors.js';
import { newId } from '../kernel/ids.js';
import type { Db, Executor } from '../store/db.js';
import type { WebhookDeliveriesTable, WebhookEndpointsTable } from '../store/schema.js';
import { type HostLookup, checkWebhookUrl } from './url-safety.js';
import { newWebhookSecret } from './webhook-signing.js';
import { webhookSecretAad, webhookUrlAad, webhooksRepo as repo } from './webhooks-repo.js';
import type { CreateWebhookBody, ReplayBody, UpdateWebhookBody, WebhookOut } from './webhooks-schemas.js';

type Deps = {
  db: Db;
  ring: KeyRing;
  guard: Guard;
  clock: Clock;
  lookup: HostLookup;
  allowHosts: readonly string[];
  /** Called after a commit that may have made deliveries due or fan-out possible (wakes dispatcher and worker). */
  onChanged: (orgId: string) => void;
};

/** One replay queues at most this many deliveries; the answer says when it stopped there. */
export const REPLAY_CAP = 10_000;

/** Webhooks are managed by admins: other humans get 403 role_required, agents 404 (CONTRACT.md, Auth). */
const requireAdmin = (ctx: RequestContext) => requireAnyRole(ctx, ['admin'], 'webhook');

/**
 * Webhook endpoints of an organisation (admins only): create, list, update, disable, delete, rotate the
 * signing secret, replay, and the delivery log. URLs and secrets are sealed at rest; a secret is shown
 * once. Every change writes its audit event in the same transaction (guard.change).
 */
export const createWebhooksService = ({ db, ring, guard, clock, lookup, allowHosts, onChanged }: Deps) => {
  const now = () => clock.now().toISOString();

  const toOut = (r: WebhookEndpointsTable): WebhookOut => ({
    id: r.id,
    url: open(ring, r.url_sealed, webhookUrlAad(r)).toString('utf8'),
    description: r.description,
    event_types: JSON.parse(r.event_types) as string[],
    mailbox_ids: JSON.parse(r.mailbox_ids) as string[],
    status: r.status,
    disabled_reason: r.disabled_reason,
    consecutive_failures: Number(r.consecutive_failures),
    last_success_at: r.last_success_at,
    last_failure_at: r.last_failure_at,
    created_at: r.created_at,
    updated_at: r.updated_at,
  });

  const checkMailboxes = async (ex: Executor, orgId: string, ids: readonly string[] | undefined) => {
    if (!ids?.length) return [];
    const unique = [...new Set(ids)];
    const found = await repo.mailboxesIn(ex, orgId, unique);
    if (found.length !== unique.length) throw notFound('mailbox');
    return unique.sort();
  };

  const endpointOf = async (ex: Executor, ctx: RequestContext, id: string) => {
    const r = await repo.endpoint(ex, ctx.principal.orgId, id);
    if (!r) throw notFound('webhook');
    return r;
  };

  const addSecret = async (tx: Executor, orgId: string, endpointId: string, at: string) => {
    const secret = newWebhookSecret();
    const id = newId('webhookSecret');
    await repo.insertSecret(tx, {
      id,
      endpoint_id: endpointId,
      org_id: orgId,
      secret_sealed: seal(ring, secret, webhookSecretAad({ org_id: orgId, endpoint_id: endpointId, id })),
      created_at: at,
      expires_at: null,
    });
    return secret;
  };

  /**
   * Creates an endpoint that receives the organisation's events from now on (its cursor starts at the log's
   * head). Throws 403/404 (not an admin), 422 webhook_url_refused (SSRF rules, see url-safety.ts), 404 for a
   * mailbox not in the organisation. Writes the endpoint, its first secret and `webhook.created`.
   */
  const create = async (ctx: RequestContext, body: CreateWebhookBody) => {
    requireAdmin(ctx);
    // Resolved before the transaction: DNS must not hold the store's writer.
    await checkWebhookUrl(body.url, allowHosts, lookup);
    const orgId = ctx.principal.orgId;
    const id = newId('webhook');
    const out = await guard.change(ctx, 'webhook.created', { type: 'webhook', id }, async (tx) => {
      const mailboxIds = await checkMailboxes(tx, orgId, body.mailbox_ids);
      const at = now();
      const start = await headSeq(tx, orgId);
      const row: WebhookEndpointsTable = {
        id,
        org_id: orgId,
        url_sealed: seal(ring, body.url, webhookUrlAad({ org_id: orgId, id })),
        description: body.description ?? '',
        event_types: JSON.stringify([...new Set(body.event_types ?? [])].sort()),
        mailbox_ids: JSON.stringify(mailboxIds),
        status: 'active',
        disabled_reason: null,
        cursor: start,
        leased_to: start,
        leased_by: null,
        lease_until: null,
        last_success_at: null,
        last_failure_at: null,
        consecutive_failures: 0,
        created_at: at,
        updated_at: at,
        deleted_at: null,
      };
      await repo.insertEndpoint(tx, row);
      const secret = await addSecret(tx, orgId, id, at);
      // The URL may carry a token: the audit event names the host only.
      await guard.recordIn(
        tx,
        ctx,
        'webhook.created',
        { type: 'webhook', id },
        {
          host: new URL(body.url).host,
          event_types: JSON.parse(row.event_types),
          mailbox_ids: mailboxIds,
        },
      );
      return { ...toOut(row), secret };
    });
    onChanged(orgId);
    return out;
  };

  /** The organisation's endpoints (URLs opened; secrets never). Throws 403/404 for non-admins. Audited (`webhook.listed`). */
  const list = (ctx: RequestContext) =>
    guard.change(ctx, 'webhook.listed', null, async (tx) => {
      requireAdmin(ctx);
      const rows = await repo.endpoints(tx, ctx.principal.orgId);
      await guard.recordIn(tx, ctx, 'webhook.listed', null, { count: rows.length });
      return { webhooks: rows.map(toOut) };
    });

  const get = (ctx: RequestContext, id: string) =>
    guard.change(ctx, 'webhook.read', { type: 'webhook', id }, async (tx) => {
      requireAdmin(ctx);
      const r = await endpointOf(tx, ctx, id);
      await guard.recordIn(tx, ctx, 'webhook.read', { type: 'webhook', id });
      return toOut(r);
    });

  /**
   * Changes an endpoint's URL, filters or status. Disabling cancels its waiting deliveries; enabling
   * resumes fan-out from where its cursor stopped. Throws 404, 422 webhook_url_refused.
   */
  const update = async (ctx: RequestContext, id: string, body: UpdateWebhookBody) => {
    requireAdmin(ctx);
    if (body.url !== undefined) await checkWebhookUrl(body.url, allowHosts, lookup);
    const out = await guard.change(ctx, 'webhook.updated', { type: 'webhook', id }, async (tx) => {
      const r = await endpointOf(tx, ctx, id);
      const at = now();
      const set: Partial<WebhookEndpointsTable> = { updated_at: at };
      if (body.url !== undefined) set.url_sealed = seal(ring, body.url, webhookUrlAad(r));
      if (body.description !== undefined) set.description = body.description;
      if (body.event_types !== undefined) set.event_types = JSON.stringify([...new Set(body.event_types)].sort());
      if (body.mailbox_ids !== undefined) set.mailbox_ids = JSON.stringify(await checkMailboxes(tx, r.org_id, body.mailbox_ids));
      if (body.status !== undefined && body.status !== r.status) {
        set.status = body.status;
        set.disabled_reason = body.status === 'disabled' ? 'disabled_by_admin' : null;
        if (body.status === 'active') set.consecutive_failures = 0;
        else await repo.cancelPending(tx, id, at);
      }
      await repo.updateEndpoint(tx, id, set);
      await guard.recordIn(
        tx,
        ctx,
        'webhook.updated',
        { type: 'webhook', id },
        {
          fields: Object.keys(body).sort(),
          ...(body.status ? { status: body.status } : {}),
          ...(body.url ? { host: new URL(body.url).host } : {}),
        },
      );
      return toOut({ ...r, ...set } as WebhookEndpointsTable);
    });
    onChanged(ctx.principal.orgId);
    return out;
  };

  /** Deletes an endpoint: nothing more is sent, waiting deliveries are cancelled, secrets end now; the delivery log stays. */
  const remove = (ctx: RequestContext, id: string) =>
    guard.change(ctx, 'webhook.deleted', { type: 'webhook', id }, async (tx) => {
      requireAdmin(ctx);
      await endpointOf(tx, ctx, id);
      const at = now();
      await repo.updateEndpoint(tx, id, { deleted_at: at, status: 'disabled', disabled_reason: 'deleted', updated_at: at });
      const cancelled = await repo.cancelPending(tx, id, at);
      await repo.expireSecrets(tx, id, at);
      await guard.recordIn(tx, ctx, 'webhook.deleted', { type: 'webhook', id }, { cancelled_deliveries: cancelled });
      return { id, deleted: true as const };
    });

  /**
   * A new signing secret (returned once). The previous ones keep signing for `overlap_seconds` (both
   * signatures in `webhook-signature` meanwhile), then only the new one does. Writes `webhook.secret_rotated`.
   */
  const rotateSecret = (ctx: RequestContext, id: string, overlapSeconds: number) =>
    guard.change(ctx, 'webhook.secret_rotated', { type: 'webhook', id }, async (tx) => {
      requireAdmin(ctx);
      const r = await endpointOf(tx, ctx, id);
      const at = clock.now();
      const until = new Date(at.getTime() + overlapSeconds * 1000).toISOString();
      await repo.expireSecrets(tx, id, until);
      // Secret ids are UUIDv7: the new one sorts first, so its signature leads the header.
      const secret = await addSecret(tx, r.org_id, id, at.toISOString());
      await guard.recordIn(tx, ctx, 'webhook.secret_rotated', { type: 'webhook', id }, { overlap_seconds: overlapSeconds });
      return { id, secret, previous_expires_at: until };
    });

  /**
   * Queues the endpoint's events again: one (`event_id`, whatever the filters) or every matching event
   * since a time, up to what the dispatcher has already fanned out to it, at most REPLAY_CAP. Each
   * delivery carries the event's own id as `webhook-id`, so receivers that deduplicate see a replay
   * only if they ask. Throws 404 (endpoint or event), 422 webhook_disabled. Writes `webhook.replayed`.
   */
  const replay = async (ctx: RequestContext, id: string, body: ReplayBody) => {
    requireAdmin(ctx);
    const out = await guard.change(ctx, 'webhook.replayed', { type: 'webhook', id }, async (tx) => {
      const r = await endpointOf(tx, ctx, id);
      if (r.status !== 'active') throw unprocessable('webhook_disabled', 'Enable the endpoint (PATCH status active) before replaying.');
      let events: { id: string; seq: number }[];
      let capped = false;
      if (body.event_id) {
        const e = await eventById(tx, r.org_id, body.event_id);
        if (!e) throw notFound('event');
        events = [e];
      } else {
        const types = JSON.parse(r.event_types) as string[];
        const mailboxIds = JSON.parse(r.mailbox_ids) as string[];
        events = await pageEvents(tx, {
          orgId: r.org_id,
          order: 'asc',
          since: body.since,
          upTo: Number(r.cursor),
          limit: REPLAY_CAP + 1,
          types,
          mailboxIds,
        });
        capped = events.length > REPLAY_CAP;
        events = events.slice(0, REPLAY_CAP);
      }
      const at = now();
      await repo.insertDeliveries(
        tx,
        events.map((e) => deliveryRow(r, e, at, true)),
      );
      await guard.recordIn(
        tx,
        ctx,
        'webhook.replayed',
        { type: 'webhook', id },
        {
          queued: events.length,
          capped,
          ...(body.event_id ? { event_id: body.event_id } : { since: body.since }),
        },
      );
      return { queued: events.length, capped, last_event_id: events.at(-1)?.id ?? null };
    });
    onChanged(ctx.principal.orgId);
    return out;
  };

  /** The endpoint's delivery log, newest first: one row per attempt (status code, latency, error; never a body). */
  const deliveries = (ctx: RequestContext, id: string, q: { cursor?: string; limit: number; event_id?: string }) =>
    guard.read(ctx, 'webhook.deliveries_listed', { type: 'webhook', id }, async () => {
      requireAdmin(ctx);
      await endpointOf(db, ctx, id);
      const before = decodeCursor(q.cursor, /^wha_[0-9a-f]{32}$/);
      const rows = await repo.attempts(db, id, before, q.limit, q.event_id);
      return {
        deliveries: rows.map((a) => ({
          id: a.id,
          delivery_id: a.delivery_id,
          event_id: a.event_id,
          attempt: Number(a.attempt),
          at: a.at,
          outcome: a.outcome,
          status_code: a.status_code === null ? null : Number(a.status_code),
          latency_ms: Number(a.latency_ms),
          error: a.error,
        })),
        next_cursor: rows.length === q.limit ? encodeCursor(rows.at(-1)!.id) : null,
      };
    });

  return { create, list, get, update, remove, rotateSecret, replay, deliveries };
};

/**
 * The delivery id of an event's fan-out to an endpoint (not a replay): derived from both ids, so every process
 * names it alike. A worker that takes over a dead one's range lease finds by it, with one index probe, whether
 * the first attempt was recorded already, and the unique (delivery_id, attempt) index of the delivery log (0045)
 * refuses a second first attempt of the same event for the same endpoint. The first 16 hex digits are the
 * event id's (its UUIDv7 time and counter), so first attempts enter that index in about its order: a key
 * that was all hash put each insert on a random page of the index, and SQLite then spent more per event in its
 * statements than the job row this id replaces had cost (bench/webhooks.ts, CPU inside the statements). The
 * other 16 are SHA-256 of both ids (node:crypto's one-shot `hash`, half the cost of a createHash object).
 */
export const firstDeliveryId = (endpointId: string, eventId: string) => {
  const h = hash('sha256', `${endpointId}|${eventId}`, 'hex');
  const time = /^evt_[0-9a-f]{32}$/.test(eventId) ? eventId.slice(4, 20) : h.slice(16, 32);
  return `whd_${time}${h.slice(0, 16)}`;
};

/** A due delivery job of event `e` for endpoint `r` (fan-out and replay both make them here). */
export const deliveryRow = (
  r: Pick<WebhookEndpointsTable, 'id' | 'org_id'>,
  e: { id: string; seq: number },
  at: string,
  isReplay: boolean,
  id = isReplay ? newId('webhookDelivery') : firstDeliveryId(r.id, e.id),
): WebhookDeliveriesTable => ({
  id,
  org_id: r.org_id,
  endpoint_id: r.id,
  event_id: e.id,
  event_seq: e.seq,
  is_replay: isReplay ? 1 : 0,
  status: 'pending',
  attempts: 0,
  next_attempt_at: at,
  first_attempt_at: null,
  lease_until: null,
  claimed_by: null,
  last_status_code: null,
  last_error: null,
  created_at: at,
  updated_at: at,
});

export type WebhooksService = ReturnType<typeof createWebhooksService>;
