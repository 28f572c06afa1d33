import { randomUUID } from 'node:crypto';
import type { AuditService } from '../audit/audit-service.js';
import type { IdentityRepo } from '../identity/identity-repo.js';
import { systemActor } from '../identity/principal.js';
import type { Clock } from '../kernel/clock.js';
import { open } from '../kernel/crypto/envelope.js';
import type { KeyRing } from '../kernel/crypto/keyring.js';
import type { Logger } from '../kernel/log.js';
import { claimOutboxJobs } from '../queue/outbox-repo.js';
import type { Db, Dialect, Tx } from '../store/db.js';
import type { OutboxTable } from '../store/schema.js';
import type { DeliveryOutcome } from './bounce-rules.js';
import { addMessageEvent, messageAad } from './message-store.js';
import { type Envelope, outboxAad } from './outbound-pipeline.js';
import { nextRetryDelay } from './retry-schedule.js';
import type { SmtpSender } from './smtp-deliver.js';

type Deps = {
  db: Db;
  dialect: Dialect;
  ring: KeyRing;
  clock: Clock;
  audit: Pick<AuditService, 'record'>;
  repo: IdentityRepo;
  sender: SmtpSender;
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

  const actorFor = async (tx: Tx, orgId: string, mailboxId: string) => {
    // The system delivers on behalf of the agent: its delegation chain goes with the event.
    const mb = await tx.selectFrom('mailboxes').select('agent_id').where('id', '=', mailboxId).executeTakeFirst();
    const agent = mb ? await d.repo.agent(tx, orgId, mb.agent_id) : undefined;
    const org = await d.repo.org(tx, orgId);
    return { ...systemActor(orgId), chain: agent && org ? await d.repo.agentChain(tx, agent, org.name) : [] };
  };

  const finish = async (job: OutboxTable, outcome: DeliveryOutcome & { rejected?: number }) => {
    const at = d.clock.now().toISOString();
    await d.db.transaction().execute(async (tx) => {
      // Only the current claimant may record the outcome (a lease taken over by another worker wins).
      const still = await tx.selectFrom('outbox').select(['id']).where('id', '=', job.id).where('claimed_by', '=', workerId).where('status', '=', 'sending').executeTakeFirst();
      if (!still) return;
      const m = await tx.selectFrom('messages').selectAll().where('id', '=', job.message_id).executeTakeFirstOrThrow();
      const actor = await actorFor(tx, m.org_id, m.mailbox_id);
      const target = { type: 'email', id: m.id };
      const delay = outcome.kind === 'defer' ? nextRetryDelay(d.retrySchedule, job.attempts) : null;
      const jobStatus = outcome.kind === 'accepted' ? 'done' : outcome.kind === 'bounce' ? 'bounced' : delay === null ? 'failed' : 'pending';
      const result = outcome.kind === 'accepted' ? 'accepted' : outcome.kind === 'bounce' ? 'bounced' : delay === null ? 'failed' : 'deferred';
      await tx
        .updateTable('outbox')
        .set({
          status: jobStatus,
          next_attempt_at: delay === null ? job.next_attempt_at : new Date(d.clock.now().getTime() + delay * 1000).toISOString(),
          lease_until: null,
          claimed_by: null,
          last_code: outcome.code === null ? (outcome.kind === 'accepted' ? null : outcome.category) : String(outcome.code),
          updated_at: at,
        })
        .where('id', '=', job.id)
        .execute();
      const attempt = { attempt: job.attempts, kind: job.kind, route: job.route === 'relay' ? 'relay' : 'mx', result, code: outcome.code, ...(outcome.kind !== 'accepted' ? { category: outcome.category } : {}), ...(delay !== null ? { retry_in_seconds: delay } : {}) };
      await addMessageEvent(tx, m.id, at, job.kind === 'copy' ? 'copy_attempted' : 'delivery_attempted', attempt);
      await d.audit.record(tx, { action: 'email.delivery_attempted', actor, target, details: attempt });
      if (job.kind === 'copy') return;

      if (outcome.kind === 'accepted') {
        const open_ = await tx.selectFrom('outbox').select('id').where('message_id', '=', m.id).where('kind', '=', 'deliver').where('status', '!=', 'done').executeTakeFirst();
        if (!open_) {
          await tx.updateTable('messages').set({ status: 'delivered', delivered_at: at, status_reason: null, updated_at: at }).where('id', '=', m.id).execute();
          await addMessageEvent(tx, m.id, at, 'delivered', {});
          await d.audit.record(tx, { action: 'email.delivered', actor, target, details: { attempts: job.attempts, rejected_recipients: outcome.rejected ?? 0 }, contentHash: m.raw_hash });
        }
      } else if (jobStatus === 'bounced' || jobStatus === 'failed') {
        const status = jobStatus === 'bounced' ? 'bounced' : 'failed';
        const reason = { code: status === 'bounced' ? 'smtp_permanent_failure' : 'retries_exhausted', smtp_code: outcome.code, category: outcome.category };
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
    try {
      const m = await d.db.selectFrom('messages').select(['id', 'org_id', 'mailbox_id', 'raw_sealed', 'status']).where('id', '=', job.message_id).executeTakeFirstOrThrow();
      if (!m.raw_sealed) throw new Error('message has no signed bytes');
      if (job.kind === 'deliver') {
        await d.db.updateTable('messages').set({ status: 'sending' }).where('id', '=', m.id).where('status', 'in', ['queued', 'deferred']).execute();
      }
      const raw = open(d.ring, m.raw_sealed, messageAad(m, 'raw'));
      const envelope = JSON.parse(open(d.ring, job.envelope_sealed, outboxAad(job.org_id, job.message_id, job.id)).toString()) as Envelope;
      outcome = await d.sender.deliver(job.route, envelope, raw);
    } catch (e) {
      // Never the message or addresses in the log: the job id and error class only.
      d.logger.error({ job: job.id, err: { type: (e as Error)?.name } }, 'delivery attempt failed internally');
      outcome = { kind: 'defer', code: null, category: 'internal' };
    }
    await finish(job, outcome);
  };

  /** One pass: expire approvals, claim due jobs, deliver them concurrently. Returns how many jobs it handled. */
  const runOnce = async (): Promise<number> => {
    if (d.sweep) await d.sweep();
    const jobs = await claimOutboxJobs(d.db, d.dialect, workerId, d.clock.now(), leaseMs, d.concurrency);
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

  /** Starts the loop (idempotent). */
  const start = () => {
    if (running) return;
    running = true;
    loop = (async () => {
      while (running) {
        let n = 0;
        try {
          n = await runOnce();
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
  };

  /** Wakes the loop at once (after a commit that queued mail). */
  const kick = () => {
    if (wake) wake();
    else kicked = true;
  };

  return { start, stop, runOnce, kick, workerId };
};

export type DeliveryWorker = ReturnType<typeof createDeliveryWorker>;
