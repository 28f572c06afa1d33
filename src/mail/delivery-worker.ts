import { randomUUID } from 'node:crypto';
import type { AuditService } from '../audit/audit-service.js';
import type { EventFeed } from '../events/event-feed.js';
import { createJobWorker } from '../queue/job-worker.js';
import { systemActor } from '../identity/principal.js';
import type { Clock } from '../kernel/clock.js';
import { open, type SealedValue, seal } from '../kernel/crypto/envelope.js';
import { sha256Hex } from '../kernel/crypto/hash.js';
import type { KeyRing } from '../kernel/crypto/keyring.js';
import { AppError, isAppError } from '../kernel/errors.js';
import { newId } from '../kernel/ids.js';
import type { Logger } from '../kernel/log.js';
import { type DeliveryResult, type MetricsSink, noopMetrics, smtpClassOf } from '../kernel/metrics.js';
import { moveMessage } from './message-lifecycle.js';
import {
  claimOutboxJobs,
  hasOpenDeliveryJob,
  insertOutboxJob,
  type OutboxRecord,
  recordJobOutcome,
  nextOutboxDue,
  renewLeases as renewOutboxLeases,
  rerouteJob,
} from '../queue/outbox-repo.js';
import { type Db, type Dialect, inGroupCommit, type Tx, transact } from '../store/db.js';
import type { DeliveryOutcome } from './bounce-rules.js';
import { messageAad, sealRaw } from './message-store.js';
import { addMessageEvent, addMessageEventPair, messageForDelivery, signedBytesOf, storeSignedOnce } from './messages-repo.js';
import { type Envelope, type OutboundPipeline, outboxAad } from './outbound-pipeline.js';
import { recordReceipt } from './receipt-event.js';
import { nextRetryDelay } from './retry-schedule.js';
import type { SmtpSender } from './smtp-deliver.js';

/**
 * What an attempt sent: the signed bytes, whether the message went through an approval, and its `email.submitted`
 * event's id (0047; null before it). `store`: bytes signed for this attempt and not stored yet; the attempt's
 * outcome commit stores them (rawFor says when).
 */
type Signed = {
  raw: Buffer;
  rawHash: string | null;
  approved: boolean;
  submissionEventId: string | null;
  store?: { sealed: SealedValue; size: number };
  /** The message has had no outbox job but this one, and this attempt makes none (rawFor). */
  soleJob: boolean;
};

type Outcome = DeliveryOutcome & { rejected?: number; host?: string; tls?: string; tls_version?: string; tls_cipher?: string };

/** The outbox job's state after an attempt with this result. */
const JOB_STATUS = { delivered: 'done', bounced: 'bounced', failed: 'failed', deferred: 'pending' } as const;

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
  /** Chores run by `runOnce` (expiring approvals; `serve` sweeps them on the sweeps leader: approvals-service.ts). */
  sweep?: () => Promise<unknown>;
  /** The domain-event feed: commits of other processes that queued mail wake the loop. */
  events?: Pick<EventFeed, 'subscribe'>;
  metrics?: MetricsSink;
};

/**
 * The outbox worker: claims due jobs (see claimOutboxJobs), sends the sealed
 * signed bytes, and records every attempt as a message event and an audit
 * event in one transaction with the job's new state. Runs inside `mailward
 * serve`; tests start it, or drive it with `runOnce`.
 *
 * Exactly once (README, "Exactly once"): a job is claimed only when a slot can
 * send it, its lease is renewed while this process lives, and a 250 is
 * committed in the next store commit. The one window left is RFC 1047's: a
 * crash after the relay wrote its 250 and before our commit sends that message
 * again when the lease has run out. Nothing is lost.
 */
export const createDeliveryWorker = (d: Deps) => {
  const workerId = `wrk_${randomUUID()}`;
  const leaseMs = d.leaseMs ?? 5 * 60_000;
  // The general worker is created below; a split route wakes it to send the new jobs at once.
  let kick = () => {};
  // The general worker's `dueAt`: a deferral this worker records wakes its idle loop at the retry's time.
  let later = (_at: Date) => {};

  // The system delivers on behalf of the agent: the chain snapshot taken when the message was queued goes with every event.
  const actorFor = (job: OutboxRecord) => ({
    ...systemActor(job.org_id),
    chain: job.actor_chain,
  });

  const metrics = d.metrics ?? noopMetrics;

  /** What an attempt's outcome makes of the job: its result and, for a deferral, the seconds to the next attempt. */
  const resultOf = (job: OutboxRecord, outcome: Outcome): { result: DeliveryResult; delay: number | null } => {
    const delay = outcome.kind === 'defer' ? nextRetryDelay(d.retrySchedule, job.attempts) : null;
    const result: DeliveryResult =
      outcome.kind === 'accepted'
        ? 'delivered'
        : outcome.kind === 'bounce'
          ? 'bounced'
          : outcome.kind === 'fail' || delay === null
            ? 'failed'
            : 'deferred';
    return { result, delay };
  };

  /**
   * One line per attempt, like Postfix's `status=` lines: our message id (never
   * the Message-ID header or addresses), the host that answered, status, SMTP
   * code and enhanced code or the network error, delay since queueing, TLS.
   */
  const logAttempt = (job: OutboxRecord, route: string, outcome: Outcome, result: DeliveryResult, delay: number | null) => {
    const reply = outcome.kind === 'accepted' ? null : outcome.smtp_reply;
    const error = outcome.kind === 'accepted' ? null : outcome.error;
    d.logger.info(
      {
        delivery: {
          message: job.message_id,
          job: job.id,
          attempt: job.attempts,
          route: route === 'relay' ? 'relay' : 'mx',
          relay: outcome.host ?? null,
          status: result === 'delivered' ? 'sent' : result,
          code: outcome.code,
          enhanced_status: reply?.enhanced_status ?? null,
          reply: reply?.text ?? null,
          error: error ? [error.code, error.message].filter(Boolean).join(' ') : null,
          delay_seconds: Math.max(0, (d.clock.now().getTime() - Date.parse(job.created_at)) / 1000),
          tls: outcome.tls ?? null,
          tls_version: outcome.tls_version ?? null,
          tls_cipher: outcome.tls_cipher ?? null,
          ...(delay !== null ? { retry_in_seconds: delay } : {}),
        },
      },
      `delivery ${result === 'delivered' ? 'sent' : result}`,
    );
  };

  /**
   * Writes one attempt's outcome inside `tx`: the job's new state, the message status, events and audit.
   * `signed` is what this attempt sent (the stored signed bytes and whether the message went through an
   * approval), so the receipt needs neither a second read of the bytes nor a look-up of an approval that never was.
   */
  const finishIn = async (tx: Tx, job: OutboxRecord, route: string, signed: Signed | null, outcome: Outcome) => {
    const rawHash = signed?.rawHash ?? null;
    const at = d.clock.now().toISOString();
    const { result: r, delay } = resultOf(job, outcome);
    const jobStatus = JOB_STATUS[r];
    // The attempt event keeps its first-wave word for a 250: `accepted`.
    const result = r === 'delivered' ? 'accepted' : r;
    // Only the current claimant may record the outcome (a lease taken over by another worker wins), except a 250:
    // the relay has the message, so it is delivered whoever holds the lease now (that worker's own outcome is then dropped).
    const recorded = await recordJobOutcome(
      tx,
      { id: job.id, workerId, accepted: outcome.kind === 'accepted' },
      {
        status: jobStatus,
        next_attempt_at: delay === null ? job.next_attempt_at : new Date(d.clock.now().getTime() + delay * 1000).toISOString(),
        last_code: outcome.kind === 'accepted' ? null : outcome.code === null ? outcome.category : String(outcome.code),
        updated_at: at,
      },
    );
    if (!recorded) return;
    if (jobStatus === 'pending' && delay !== null) later(new Date(d.clock.now().getTime() + delay * 1000));
    const m = { id: job.message_id, raw_hash: rawHash };
    // The bytes this attempt signed, kept with its outcome (rawFor): from now on every retry sends them. False only
    // when a worker that took the lease over stored its own first, or the content was purged meanwhile: the receipt
    // below is still over the bytes this attempt sent.
    if (signed?.store) await storeSignedOnce(tx, m.id, signed.store.sealed, rawHash!, signed.store.size);
    const actor = actorFor(job);
    const target = { type: 'email', id: m.id };
    // What the peer said (or the network error), scrubbed of addresses: operators see why without reading mail.
    const detail =
      outcome.kind === 'accepted'
        ? { ...(outcome.smtp_reply ? { smtp_reply: outcome.smtp_reply } : {}) }
        : { ...(outcome.smtp_reply ? { smtp_reply: outcome.smtp_reply } : {}), ...(outcome.error ? { error: outcome.error } : {}) };
    const attempt = {
      attempt: job.attempts,
      kind: job.kind,
      route: route === 'relay' ? 'relay' : 'mx',
      ...(outcome.host ? { host: outcome.host } : {}),
      ...(outcome.tls ? { tls: outcome.tls } : {}),
      ...(outcome.tls_version ? { tls_version: outcome.tls_version, tls_cipher: outcome.tls_cipher } : {}),
      result,
      code: outcome.code,
      ...(outcome.kind !== 'accepted' ? { category: outcome.category } : {}),
      ...detail,
      ...(delay !== null ? { retry_in_seconds: delay } : {}),
    };
    const attemptType = job.kind === 'copy' ? 'copy_attempted' : 'delivery_attempted';
    // A 250 of a delivery job writes its attempt's message event together with `delivered` below (one statement).
    const pairs = outcome.kind === 'accepted' && job.kind !== 'copy';
    if (!pairs) await addMessageEvent(tx, m.id, at, attemptType, attempt);
    await d.audit.record(tx, { action: 'email.delivery_attempted', actor, target, details: attempt });
    if (job.kind === 'copy') return;

    if (outcome.kind === 'accepted') {
      // Through a relay a message has one delivery job; by MX one per recipient domain (also after a split, see routeFor): all must be done.
      // A message whose only job this is (rawFor counted them; this attempt split none off) has none open: its job
      // was set done above, in this transaction, so the look-up is skipped.
      const last = signed?.soleJob === true || !(await hasOpenDeliveryJob(tx, m.id));
      // Compare-and-set: when two routes finish at once in two processes, one of them delivers the message.
      const delivers = last && (await moveMessage(tx, m.id, 'deliver', { delivered_at: at, status_reason: null, updated_at: at })) !== 0;
      if (!delivers) {
        await addMessageEvent(tx, m.id, at, attemptType, attempt);
        return;
      }
      await addMessageEventPair(tx, m.id, at, { type: attemptType, details: attempt }, { type: 'delivered', details: {} });
      const delivered = await d.audit.record(tx, {
        action: 'email.delivered',
        actor,
        target,
        details: { attempts: job.attempts, rejected_recipients: outcome.rejected ?? 0 },
        contentHash: m.raw_hash,
      });
      // The transparency receipt's leaf, in the same transaction (receipt-event.ts), over the bytes just sent
      // (the signed bytes as stored: before sending, read back on a retry, or stored above in this transaction).
      if (signed)
        await recordReceipt(tx, d.audit, m.id, signed.raw, m.raw_hash, delivered.id, {
          approved: signed.approved,
          submissionEventId: signed.submissionEventId,
        });
    } else if (jobStatus === 'bounced' || jobStatus === 'failed') {
      const status = jobStatus === 'bounced' ? 'bounced' : 'failed';
      const bounceCode = outcome.code === null ? 'dns_permanent_failure' : 'smtp_permanent_failure';
      const reason = {
        code: status === 'bounced' ? bounceCode : outcome.kind === 'fail' ? outcome.category : 'retries_exhausted',
        smtp_code: outcome.code,
        category: outcome.category,
        ...detail,
      };
      if (
        (await moveMessage(tx, m.id, status === 'bounced' ? 'bounce' : 'fail', {
          status_reason: JSON.stringify(reason),
          updated_at: at,
        })) === 0
      )
        return;
      await addMessageEvent(tx, m.id, at, status, reason);
      await d.audit.record(tx, {
        action: status === 'bounced' ? 'email.bounced' : 'email.failed',
        actor,
        target,
        details: reason,
        contentHash: m.raw_hash,
      });
    } else {
      await moveMessage(tx, m.id, 'defer', {
        status_reason: JSON.stringify({ code: 'deferred', smtp_code: outcome.code, category: outcome.category, ...detail }),
        updated_at: at,
      });
    }
  };

  /*
   * Group commit. An outcome is committed as soon as the store's writer is free,
   * together with every other outcome that arrived meanwhile: the time between
   * the relay's 250 and our commit (the only window in which a crash makes a
   * message go out twice, see README "Exactly once") is at most one commit, not
   * a queue of one commit per message. Each outcome keeps its audit events in the
   * same transaction as its state change.
   */
  type Pending = {
    job: OutboxRecord;
    route: string;
    signed: Signed | null;
    outcome: Outcome;
    resolve: () => void;
    reject: (e: unknown) => void;
  };
  const outcomes: Pending[] = [];
  let committing = false;
  const commitOne = async (p: Pending) => {
    // A lost commit after a 250 means a resend after the lease: retry a transient store error before giving up.
    for (let i = 0; ; i++) {
      try {
        await transact(d.db, (tx) => finishIn(tx, p.job, p.route, p.signed, p.outcome));
        p.resolve();
        return;
      } catch (e) {
        if (i >= 4) {
          p.reject(e);
          return;
        }
        await new Promise((r) => setTimeout(r, 50 * 2 ** i));
      }
    }
  };
  const flush = async () => {
    if (committing) return;
    committing = true;
    try {
      while (outcomes.length > 0) {
        const group = outcomes.splice(0, 16);
        try {
          // In a commit shared with whatever else this process is writing at that moment (sends, signed bytes
          // being stored: store/db.ts inGroupCommit), so a delivered message costs no commit of its own.
          await inGroupCommit(d.db, async (tx) => {
            for (const p of group) await finishIn(tx, p.job, p.route, p.signed, p.outcome);
          });
          for (const p of group) p.resolve();
        } catch {
          // One bad outcome must not hold back the others: commit them one by one.
          for (const p of group) await commitOne(p);
        }
      }
    } finally {
      committing = false;
    }
  };
  const finish = (job: OutboxRecord, route: string, signed: Signed | null, outcome: Outcome) =>
    new Promise<void>((resolve, reject) => {
      outcomes.push({ job, route, signed, outcome, resolve, reject });
      void flush();
    });

  /*
   * At most PREPARING jobs read the store and sign at once (the signing pool has
   * one thread by default, so more would only queue there). On SQLite every
   * statement takes the one connection in turn: a deep queue of delivery reads
   * would sit in front of each statement of a `send` request (accept latency).
   * Sending (network I/O) and commits are not limited by this.
   */
  const PREPARING = 2;
  let preparing = 0;
  const prepQueue: (() => void)[] = [];
  const prepared = async <T>(fn: () => Promise<T>): Promise<T> => {
    if (preparing >= PREPARING) await new Promise<void>((r) => prepQueue.push(r));
    else preparing++;
    try {
      return await fn();
    } finally {
      const next = prepQueue.shift();
      if (next) next();
      else preparing--;
    }
  };

  /** The signed bytes of a job's message: signed and stored on the first attempt, read back on a retry. */
  const rawFor = async (job: OutboxRecord): Promise<Signed> => {
    const m = await messageForDelivery(d.db, job.message_id);
    if (!m) throw new AppError('internal', 500, 'The message of an outbox job is missing.');
    const approved = m.approval_id !== null;
    const submissionEventId = m.submission_event_id ?? null;
    // The message's only job (one route, no copy), and no split of a relay job into routes is coming (routeFor).
    const soleJob = m.outbox_jobs === 1 && (d.sender.relayConfigured || job.route !== 'relay');
    if (m.raw_sealed)
      return { raw: open(d.ring, m.raw_sealed, messageAad(m, 'raw')), rawHash: m.raw_hash, approved, submissionEventId, soleJob };
    // First attempt: sign now and keep the bytes, so every retry and route sends the same message.
    const raw = await d.pipeline.sign(d.db, m);
    const hash = sha256Hex(raw);
    const sealed = sealRaw(d.ring, m, raw);
    // The message's only job: no other attempt of this message can be signing now but one that took this job's
    // lease over after it ran out. Its bytes are then stored in this attempt's outcome commit (finishIn), with the job's new state, not in a
    // commit of their own before sending: one commit less per message. Every attempt whose outcome is recorded
    // (delivered, bounced, failed, deferred) keeps its bytes, so a retry after a deferral sends the same bytes as
    // before. What changes is only the crash window: a process that dies between sending and that commit (the
    // window of README "Exactly once", in which the relay may have the message already) leaves no bytes, and the
    // retry signs again: the same Message-ID and content with a new Date and new signatures, instead of the same bytes.
    if (soleJob) return { raw, rawHash: hash, approved, submissionEventId, soleJob, store: { sealed, size: raw.length } };
    // Stored (committed) before the first byte is sent, in a commit shared with whatever else is being written
    // at that moment (sends, other messages' signed bytes: store/db.ts inGroupCommit); one UPDATE, no other lock.
    // Two routes of one message may race to sign: the first stored bytes win, the other reads them.
    if (await inGroupCommit(d.db, (tx) => storeSignedOnce(tx, m.id, sealed, hash, raw.length)))
      return { raw, rawHash: hash, approved, submissionEventId, soleJob };
    const stored = await signedBytesOf(d.db, m.id);
    if (!stored?.raw_sealed) throw new AppError('internal', 500, 'The signed bytes of a message are missing.');
    return { raw: open(d.ring, stored.raw_sealed, messageAad(m, 'raw')), rawHash: stored.raw_hash, approved, submissionEventId, soleJob };
  };

  /**
   * The route of this attempt, decided now and not when the message was queued:
   * MAILWARD_SMTP_RELAY as it is set now (CONTRACT.md, "Outbound delivery"),
   * else the recipient domain's MX (RFC 5321 5.1). A job queued for a relay that
   * has since been unset holds recipients of several domains: it keeps the first
   * domain's and new jobs take the others, in one transaction, only while this
   * worker holds the job.
   */
  const routeFor = async (job: OutboxRecord, envelope: Envelope): Promise<{ route: string; envelope: Envelope }> => {
    if (d.sender.relayConfigured) return { route: 'relay', envelope };
    if (job.route !== 'relay') return { route: job.route, envelope };
    const byDomain = new Map<string, string[]>();
    for (const r of envelope.to) {
      const domain = r.slice(r.lastIndexOf('@') + 1).toLowerCase();
      byDomain.set(domain, [...(byDomain.get(domain) ?? []), r]);
    }
    const [first, ...rest] = [...byDomain];
    if (!first) return { route: job.route, envelope };
    const [domain, rcpt] = first;
    const mine = { from: envelope.from, to: rcpt };
    const at = d.clock.now().toISOString();
    await d.db.transaction().execute(async (tx) => {
      const held = await rerouteJob(
        tx,
        { id: job.id, workerId },
        {
          route: domain,
          envelope_sealed: seal(d.ring, JSON.stringify(mine), outboxAad(job.org_id, job.message_id, job.id)),
          updated_at: at,
        },
      );
      if (!held) throw new Error('outbox job lease lost before routing');
      for (const [other, to] of rest) {
        const id = newId('message').replace('msg_', 'obx_');
        await insertOutboxJob(
          tx,
          {
            id,
            org_id: job.org_id,
            message_id: job.message_id,
            kind: job.kind,
            actor_chain: JSON.stringify(job.actor_chain),
            route: other,
            envelope_sealed: seal(d.ring, JSON.stringify({ from: envelope.from, to }), outboxAad(job.org_id, job.message_id, id)),
          },
          at,
        );
      }
    });
    if (rest.length > 0) kick();
    return { route: domain, envelope: mine };
  };

  const process1 = async (job: OutboxRecord) => {
    let outcome: Outcome;
    let sent: Signed | null = null;
    let route = job.route;
    try {
      let signed: Signed;
      try {
        signed = await prepared(() => rawFor(job));
      } catch (e) {
        if (isAppError(e) && e.status < 500) {
          await finish(job, route, null, { kind: 'fail', code: null, category: e.code });
          return;
        }
        throw e;
      }
      sent = signed;
      const queued = JSON.parse(open(d.ring, job.envelope_sealed, outboxAad(job.org_id, job.message_id, job.id)).toString()) as Envelope;
      const routed = await routeFor(job, queued);
      route = routed.route;
      outcome = await d.sender.deliver(route, routed.envelope, signed.raw);
    } catch (e) {
      // Never the message or addresses in the log: the job id and error class only.
      d.logger.error({ job: job.id, err: { type: (e as Error)?.name } }, 'delivery attempt failed internally');
      outcome = { kind: 'defer', code: null, category: 'internal' };
    }
    await finish(job, route, sent, outcome);
    const { result, delay } = resultOf(job, outcome);
    if (job.kind === 'deliver') {
      metrics.deliveryAttempt(result, smtpClassOf(outcome.code));
      if (result === 'delivered') metrics.deliveryLatency((d.clock.now().getTime() - Date.parse(job.created_at)) / 1000);
    }
    logAttempt(job, route, outcome, result, delay);
  };

  // One commit for the claim and the messages' new status `sending` (CONTRACT.md statuses). On SQLite (one writer,
  // no row locks) that commit is shared with whatever else is being written at that moment (sends, signed bytes,
  // outcomes: store/db.ts inGroupCommit), so a claim costs no commit of its own; on PostgreSQL the claim's
  // SKIP LOCKED row locks are not held through a group (inGroupCommit's rules), it commits alone.
  const claimIn = async (tx: Tx, n: number, until: Date) => {
    const jobs = await claimOutboxJobs(tx, d.dialect, workerId, d.clock.now(), until.getTime() - d.clock.now().getTime(), n);
    const delivering = jobs.filter((j) => j.kind === 'deliver').map((j) => j.message_id);
    await moveMessage(tx, delivering, 'claim');
    return jobs;
  };
  const claim = (_worker: string, n: number, until: Date) =>
    d.dialect === 'sqlite' ? inGroupCommit(d.db, (tx) => claimIn(tx, n, until)) : transact(d.db, (tx) => claimIn(tx, n, until));

  const worker = createJobWorker<OutboxRecord>(
    {
      name: 'delivery',
      id: (job) => job.id,
      claim,
      // Rows an outcome commit holds are being finished anyway: skipping them keeps the two from deadlocking.
      renew: (_worker, until) => renewOutboxLeases(d.db, d.dialect, workerId, until.toISOString()),
      run: (job) => process1(job),
      nextDue: () => nextOutboxDue(d.db, workerId),
    },
    {
      workerId,
      concurrency: d.concurrency,
      pollMs: d.pollMs,
      leaseMs,
      logger: d.logger,
      now: () => d.clock.now(),
      sweep: d.sweep,
      // Mail queued or approved by any process sharing the store (another server, `mailward mcp`) wakes this one.
      wakeOn: d.events ? (kick) => d.events!.subscribe((w) => (w === '*' || WAKES_DELIVERY.has(w.type) ? kick() : undefined)) : undefined,
    },
  );
  kick = worker.kick;
  later = worker.dueAt;

  const stop = async () => {
    await worker.stop();
    d.sender.close();
  };

  return { start: worker.start, stop, runOnce: worker.runOnce, kick: worker.kick, workerId };
};

/** Domain events after which due outbox jobs may exist. */
const WAKES_DELIVERY = new Set(['email.queued', 'email.approved']);

export type DeliveryWorker = ReturnType<typeof createDeliveryWorker>;
