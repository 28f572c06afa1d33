import { randomUUID } from 'node:crypto';
import type { AuditService } from '../audit/audit-service.js';
import { systemActor } from '../identity/principal.js';
import type { Clock } from '../kernel/clock.js';
import { open, seal } from '../kernel/crypto/envelope.js';
import { sha256Hex } from '../kernel/crypto/hash.js';
import type { KeyRing } from '../kernel/crypto/keyring.js';
import { isAppError } from '../kernel/errors.js';
import type { Logger } from '../kernel/log.js';
import { claimOutboxJobs } from '../queue/outbox-repo.js';
import type { Db, Dialect } from '../store/db.js';
import type { OutboxTable } from '../store/schema.js';
import type { DeliveryOutcome } from './bounce-rules.js';
import { addMessageEvent, messageAad } from './message-store.js';
import { type Envelope, type OutboundPipeline, outboxAad } from './outbound-pipeline.js';
import { nextRetryDelay } from './retry-schedule.js';
import type { SmtpSender } from './smtp-deliver.js';

type Deps = {
  db: Db;
  dialect: Dialect;
  ring: KeyRing;
  clock: Clock;
  audit: Pick<AuditService, 'record'>;
  sender: SmtpSender;
  pipeline: Pick<OutboundPipeline, 'sign'>;
  logger: Logger;
  retrySchedule: number[];
  concurrency: number;
  pollMs: number;
  leaseMs?: number;
  /** Periodic chores run by the loop (expiring approvals). */
  sweep?: () => Promise<unknown>;
};

/**
 * The outbox worker: claims due jobs (see claimOutboxJobs), sends the sealed
 * signed bytes, and records every attempt as a message event and an audit
 * event in one transaction with the job's new state. Runs inside `mailward
 * serve`; tests start it, or drive it with `runOnce`.
 */
export const createDeliveryWorker = (d: Deps) => {
  const workerId = `wrk_${randomUUID()}`;
  const leaseMs = d.leaseMs ?? 5 * 60_000;
  let running = false;
  let loop: Promise<void> | null = null;
  let wake: (() => void) | null = null;
  let kicked = false;

  // The system delivers on behalf of the agent: the chain snapshot taken when the message was queued goes with every event.
  const actorFor = (job: OutboxTable) => ({ ...systemActor(job.org_id), chain: JSON.parse(job.actor_chain) as { type: string; id: string; name: string }[] });

  const finish = async (job: OutboxTable, rawHash: string | null, outcome: DeliveryOutcome & { rejected?: number }) => {
    const at = d.clock.now().toISOString();
    await d.db.transaction().execute(async (tx) => {
      const delay = outcome.kind === 'defer' ? nextRetryDelay(d.retrySchedule, job.attempts) : null;
      const jobStatus = outcome.kind === 'accepted' ? 'done' : outcome.kind === 'bounce' ? 'bounced' : outcome.kind === 'fail' || delay === null ? 'failed' : 'pending';
      const result = outcome.kind === 'accepted' ? 'accepted' : outcome.kind === 'bounce' ? 'bounced' : outcome.kind === 'fail' || delay === null ? 'failed' : 'deferred';
      // Only the current claimant may record the outcome (a lease taken over by another worker wins).
      const u = await tx
        .updateTable('outbox')
        .set({
          status: jobStatus,
          next_attempt_at: delay === null ? job.next_attempt_at : new Date(d.clock.now().getTime() + delay * 1000).toISOString(),
          lease_until: null,
          claimed_by: null,
          last_code: outcome.kind === 'accepted' ? null : outcome.code === null ? outcome.category : String(outcome.code),
          updated_at: at,
        })
        .where('id', '=', job.id)
        .where('claimed_by', '=', workerId)
        .where('status', '=', 'sending')
        .executeTakeFirst();
      if (Number(u.numUpdatedRows) === 0) return;
      const m = { id: job.message_id, raw_hash: rawHash };
      const actor = actorFor(job);
      const target = { type: 'email', id: m.id };
      const attempt = { attempt: job.attempts, kind: job.kind, route: job.route === 'relay' ? 'relay' : 'mx', result, code: outcome.code, ...(outcome.kind !== 'accepted' ? { category: outcome.category } : {}), ...(delay !== null ? { retry_in_seconds: delay } : {}) };
      await addMessageEvent(tx, m.id, at, job.kind === 'copy' ? 'copy_attempted' : 'delivery_attempted', attempt);
      await d.audit.record(tx, { action: 'email.delivery_attempted', actor, target, details: attempt });
      if (job.kind === 'copy') return;

      if (outcome.kind === 'accepted') {
        // Through a relay a message has one delivery job; by MX one per recipient domain, all must be done.
        const open_ = job.route === 'relay' ? undefined : await tx.selectFrom('outbox').select('id').where('message_id', '=', m.id).where('kind', '=', 'deliver').where('status', '!=', 'done').executeTakeFirst();
        if (!open_) {
          await tx.updateTable('messages').set({ status: 'delivered', delivered_at: at, status_reason: null, updated_at: at }).where('id', '=', m.id).execute();
          await addMessageEvent(tx, m.id, at, 'delivered', {});
          await d.audit.record(tx, { action: 'email.delivered', actor, target, details: { attempts: job.attempts, rejected_recipients: outcome.rejected ?? 0 }, contentHash: m.raw_hash });
        }
      } else if (jobStatus === 'bounced' || jobStatus === 'failed') {
        const status = jobStatus === 'bounced' ? 'bounced' : 'failed';
        const reason = { code: status === 'bounced' ? 'smtp_permanent_failure' : outcome.kind === 'fail' ? outcome.category : 'retries_exhausted', smtp_code: outcome.code, category: outcome.category };
        await tx.updateTable('messages').set({ status, status_reason: JSON.stringify(reason), updated_at: at }).where('id', '=', m.id).execute();
        await addMessageEvent(tx, m.id, at, status, reason);
        await d.audit.record(tx, { action: status === 'bounced' ? 'email.bounced' : 'email.failed', actor, target, details: reason, contentHash: m.raw_hash });
      } else {
        await tx.updateTable('messages').set({ status: 'deferred', status_reason: JSON.stringify({ code: 'deferred', smtp_code: outcome.code, category: outcome.category }), updated_at: at }).where('id', '=', m.id).where('status', 'in', ['queued', 'sending', 'deferred']).execute();
      }
    });
  };

  const process1 = async (job: OutboxTable) => {
    let outcome: DeliveryOutcome & { rejected?: number };
    let rawHash: string | null = null;
    try {
      const m = await d.db.selectFrom('messages').selectAll().where('id', '=', job.message_id).executeTakeFirstOrThrow();
      let sealedRaw = m.raw_sealed;
      if (!sealedRaw) {
        // First attempt: sign now and keep the bytes, so every retry and route sends the same message.
        let raw: Buffer;
        try {
          raw = await d.pipeline.sign(d.db, m);
        } catch (e) {
          if (isAppError(e) && e.status < 500) {
            await finish(job, null, { kind: 'fail', code: null, category: e.code });
            return;
          }
          throw e;
        }
        const candidate = seal(d.ring, raw, messageAad(m, 'raw'));
        const hash = sha256Hex(raw);
        // Two routes of one message may race to sign: the first stored bytes win, the other reads them.
        await d.db.updateTable('messages').set({ raw_sealed: candidate, raw_hash: hash, size_bytes: raw.length }).where('id', '=', m.id).where('raw_sealed', 'is', null).execute();
        const stored = await d.db.selectFrom('messages').select(['raw_sealed', 'raw_hash']).where('id', '=', m.id).executeTakeFirstOrThrow();
        sealedRaw = stored.raw_sealed!;
        rawHash = stored.raw_hash;
      } else {
        rawHash = m.raw_hash;
      }
      const raw = open(d.ring, sealedRaw, messageAad(m, 'raw'));
      const envelope = JSON.parse(open(d.ring, job.envelope_sealed, outboxAad(job.org_id, job.message_id, job.id)).toString()) as Envelope;
      outcome = await d.sender.deliver(job.route, envelope, raw);
    } catch (e) {
      // Never the message or addresses in the log: the job id and error class only.
      d.logger.error({ job: job.id, err: { type: (e as Error)?.name } }, 'delivery attempt failed internally');
      outcome = { kind: 'defer', code: null, category: 'internal' };
    }
    await finish(job, rawHash, outcome);
  };

  /** One pass: expire approvals, claim due jobs, deliver them concurrently. Returns how many jobs it handled. */
  let lastSweep = 0;
  const sweepIfDue = async (force: boolean) => {
    // Expiry needs no sub-second precision: at most one sweep a second keeps the loop cheap.
    if (!d.sweep || (!force && Date.now() - lastSweep < 1000)) return;
    lastSweep = Date.now();
    await d.sweep();
  };

  const claim = async (n: number) => {
    const jobs = await claimOutboxJobs(d.db, d.dialect, workerId, d.clock.now(), leaseMs, n);
    const delivering = jobs.filter((j) => j.kind === 'deliver').map((j) => j.message_id);
    // One write for the whole batch: these messages are now `sending` (CONTRACT.md statuses).
    if (delivering.length > 0) await d.db.updateTable('messages').set({ status: 'sending' }).where('id', 'in', delivering).where('status', 'in', ['queued', 'deferred']).execute();
    return jobs;
  };

  /** One pass (tests drive the worker with it): expire approvals, claim due jobs, deliver them. Returns how many jobs it handled. */
  const runOnce = async (): Promise<number> => {
    await sweepIfDue(true);
    const jobs = await claim(d.concurrency);
    await Promise.all(jobs.map(process1));
    return jobs.length;
  };

  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      if (kicked) {
        kicked = false;
        resolve();
        return;
      }
      const t = setTimeout(() => {
        wake = null;
        resolve();
      }, ms);
      wake = () => {
        clearTimeout(t);
        wake = null;
        resolve();
      };
    });

  /**
   * Starts the loop (idempotent): claim a batch of up to `concurrency` due
   * jobs, deliver them, repeat; sleep `pollMs` (or until kicked) when nothing
   * is due. Batches keep the claim statements few and leave the event loop
   * room for requests between them (accept latency).
   */
  const start = () => {
    if (running) return;
    running = true;
    loop = (async () => {
      while (running) {
        let n = 0;
        try {
          await sweepIfDue(false);
          const jobs = await claim(d.concurrency);
          n = jobs.length;
          await Promise.all(jobs.map(process1));
        } catch (e) {
          d.logger.error({ err: { type: (e as Error)?.name } }, 'delivery loop pass failed');
        }
        if (n === 0 && running) await sleep(d.pollMs);
      }
    })();
  };

  /** Stops after the current pass; in-flight sends finish and record their outcome. */
  const stop = async () => {
    running = false;
    wake?.();
    await loop;
    loop = null;
    d.sender.close();
  };

  /** Wakes the loop at once (after a commit that queued mail). */
  const kick = () => {
    if (wake) wake();
    else kicked = true;
  };

  return { start, stop, runOnce, kick, workerId };
};

export type DeliveryWorker = ReturnType<typeof createDeliveryWorker>;
