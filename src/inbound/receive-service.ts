import type { AuditActor, AuditService } from '../audit/audit-service.js';
import type { IdentityRepo } from '../identity/identity-repo.js';
import { systemActor } from '../identity/principal.js';
import type { Clock } from '../kernel/clock.js';
import { sha256Hex } from '../kernel/crypto/hash.js';
import type { KeyRing } from '../kernel/crypto/keyring.js';
import { AppError, isAppError } from '../kernel/errors.js';
import { newId } from '../kernel/ids.js';
import type { Logger } from '../kernel/log.js';
import { sealContent, sealRaw } from '../mail/message-store.js';
import {
  addMessageEvent,
  duplicateIdOf,
  duplicateOf,
  holdMessage,
  insertMessage,
  messageRow,
  outboundByMessageIds,
} from '../mail/messages-repo.js';
import { authResultLabel, type MetricsSink } from '../kernel/metrics.js';
import { headerValue, type MessageContent, splitMessage } from '../mail/mime.js';
import { compiledFor, type Db, type Executor, runCompiled, type Tx } from '../store/db.js';
import type { MailboxesTable, MessagesTable } from '../store/schema.js';
import type { InboundAnalysis, InboundEnvelope } from './analyze-message.js';
import type { DsnReport } from './dsn.js';
import { inboundThread } from './threading.js';
import { type IndexKey, indexKeyOf } from '../mail/recipient-index.js';
import { moveMessage } from '../mail/message-lifecycle.js';
import { insertPendingApproval } from '../oversight/approvals-repo.js';
import { decideHold } from '../oversight/hold-policy.js';
import type { HoldReason } from '../oversight/oversight-modes.js';

type Deps = {
  db: Db;
  ring: KeyRing;
  clock: Clock;
  audit: Pick<AuditService, 'record'>;
  repo: IdentityRepo;
  logger: Logger;
  /** Authentication, parsing, PHI scan and tags (worker threads when configured). */
  analyze: (raw: Buffer, env: InboundEnvelope, orgDomains: string[]) => Promise<InboundAnalysis>;
  approvalTtlSeconds: number;
  /** Advances whenever identities (agents, departments, keys) may have changed: the auth cache's generation. */
  identityGeneration?: () => number;
  /** Runs the writes of one message; the default is one transaction each (see createCommitBatcher). */
  commit?: <T>(work: (tx: Tx) => Promise<T>) => Promise<T>;
  metrics?: Pick<MetricsSink, 'authResult'>;
};

export type RecipientCheck = { ok: true } | { ok: false; reason: 'relay_denied' | 'unknown_mailbox' | 'mailbox_inactive' };

export type ReceiveResult = { stored: { id: string; mailbox_id: string; status: string }[]; duplicates: number };

/** Statuses from which a delivery status notification can still turn an outbound message `bounced`. */
const BOUNCEABLE = ['queued', 'sending', 'deferred', 'delivered'];

/** 451 4.3.0: the sender keeps the message and retries (RFC 5321 4.2.5); nothing was stored. */
export const storeUnavailable = (cause?: unknown) =>
  new AppError('store_unavailable', 503, 'The message store is unavailable; try again later.', { temporary: true, cause });

const wrapStore = async <T>(fn: () => Promise<T>): Promise<T> => {
  try {
    return await fn();
  } catch (e) {
    if (isAppError(e)) throw e;
    throw storeUnavailable(e);
  }
};

/** The client's HELO name as recorded: host-name characters only (it is client text). */
const heloOf = (env: InboundEnvelope) => env.helo.replace(/[^A-Za-z0-9.:[\]-]/g, '').slice(0, 255);

const domainOf = (address: string) => address.slice(address.lastIndexOf('@') + 1).toLowerCase();

/** `domain` is the organisation's domain or one of its subdomains (RFC 7489 3.2: one organisational domain). */
const isOrgDomain = (domain: string | null | undefined, orgDomain: string | undefined) =>
  !!domain && !!orgDomain && (domain === orgDomain.toLowerCase() || domain.endsWith(`.${orgDomain.toLowerCase()}`));

/** Whether the mailbox's agent may still receive mail: a deactivated agent must not be sent PHI (45 CFR 164.308(a)(3)(ii)(C)). */
const agentIsActive = async (ex: Executor, mailbox: Pick<MailboxesTable, 'org_id' | 'agent_id'>) => {
  // Compiled once (src/store/db.ts compiledFor): every RCPT TO asks it.
  const compiled = compiledFor(ex, 'receive:agentIsActive', 2, ([agent, org]) =>
    ex
      .selectFrom('agents')
      .select('is_active')
      .where('id', '=', agent as string)
      .where('org_id', '=', org as string),
  );
  return (await runCompiled(ex, compiled(mailbox.agent_id, mailbox.org_id))).rows[0]?.is_active === 1;
};

/**
 * The stored Message-ID of a message whose header holds no valid msg-id
 * (RFC 5322 3.6.4: printable US-ASCII in angle brackets), e.g. one with NUL
 * or bytes that are not UTF-8. It is derived from bytes, never from decoded
 * text: the SHA-256 of the header's raw value (or of the whole message when
 * there is no Message-ID header), so a retransmission maps to the same key on
 * every dialect and duplicate suppression (same key and same raw_hash) holds.
 * The result is plain ASCII, which every store keeps as it is.
 */
const derivedMessageId = (raw: Buffer, rawHash: string, domain: string) => {
  const value = headerValue(splitMessage(raw).header, 'Message-ID');
  // headerValue reads the header as latin1: one char per byte, so this restores the exact bytes.
  const digest = value ? sha256Hex(Buffer.from(value, 'latin1')) : rawHash;
  return `<inbound.${value ? 'h' : 'r'}${digest.slice(0, 40)}@${domain}>`;
};

/**
 * Stores received mail: one message row per recipient mailbox, the
 * raw bytes and the parsed content sealed at rest, status `received`,
 * `pending_approval` (gated_all) or `quarantined` (DMARC failure in a mailbox
 * that quarantines), its thread, and an `email.received` audit event with the
 * SHA-256 of the raw bytes, all in one transaction. A delivery status
 * notification also turns the outbound message it reports on `bounced`.
 */
export const createReceiveService = (d: Deps) => {
  const commit = d.commit ?? (<T>(work: (tx: Tx) => Promise<T>) => d.db.transaction().execute(work));

  // The agent's delegation chain for audit events, per mailbox. It changes only with identity changes, which
  // advance the auth cache's generation (in this process at commit, in others within MAILWARD_AUTH_CACHE_MS);
  // 60 s bounds an entry when that cache is off.
  const chains = new Map<string, { chain: AuditActor['chain']; until: number; generation: number }>();
  const generation = d.identityGeneration ?? (() => 0);
  const actorFor = async (ex: Executor, mailbox: MailboxesTable): Promise<AuditActor> => {
    const hit = chains.get(mailbox.id);
    const gen = generation();
    if (hit && hit.until > Date.now() && hit.generation === gen) return { ...systemActor(mailbox.org_id), chain: hit.chain };
    const agent = await d.repo.agent(ex, mailbox.org_id, mailbox.agent_id);
    const org = await d.repo.org(ex, mailbox.org_id);
    const chain = agent && org ? await d.repo.agentChain(ex, agent, org.name) : [];
    if (chains.size > 10_000) chains.clear();
    chains.set(mailbox.id, { chain, until: Date.now() + 60_000, generation: gen });
    return { ...systemActor(mailbox.org_id), chain };
  };

  // Which addresses have mailboxes, for RCPT and routing (10 s; only hits are kept, so a new mailbox is found at once).
  // Mode and DMARC policy are read again inside the transaction that stores the message.
  const known = new Map<string, { row: MailboxesTable; until: number }>();
  const mailboxesAt = async (addresses: string[]): Promise<MailboxesTable[]> => {
    const now = Date.now();
    const out: MailboxesTable[] = [];
    const missing: string[] = [];
    for (const a of addresses) {
      const hit = known.get(a);
      if (hit && hit.until > now) out.push(hit.row);
      else missing.push(a);
    }
    if (missing.length > 0) {
      if (known.size > 10_000) known.clear();
      for (const row of await d.db.selectFrom('mailboxes').selectAll().where('address', 'in', missing).execute()) {
        known.set(row.address, { row, until: now + 10_000 });
        out.push(row);
      }
    }
    return out;
  };
  // Organisation domains never change.
  const domains = new Map<string, string>();
  const domainsOf = async (orgIds: string[]) => {
    const missing = orgIds.filter((id) => !domains.has(id));
    if (missing.length > 0)
      for (const o of await d.db.selectFrom('organizations').select(['id', 'domain']).where('id', 'in', missing).execute())
        domains.set(o.id, o.domain);
    return orgIds.flatMap((id) => domains.get(id) ?? []);
  };

  /**
   * Whether mail for `address` is accepted: only provisioned mailbox
   * addresses; an address on no organisation's domain is a relay attempt.
   * Throws 503 store_unavailable (temporary) when the store cannot answer.
   */
  const checkRecipient = (address: string): Promise<RecipientCheck> =>
    wrapStore(async () => {
      const a = address.toLowerCase();
      // Mailbox addresses are printable ASCII (mail-schemas emailAddress); anything else cannot be one of ours.
      if (!/^[\x21-\x3f\x41-\x7e]{1,64}@[\x21-\x3f\x41-\x7e]{1,253}$/.test(a)) return { ok: false, reason: 'unknown_mailbox' };
      const boxes = await mailboxesAt([a]);
      if (boxes.length > 0) {
        // Read fresh, never cached: the agent may have been deactivated a moment ago. The SMTP reply is the
        // same as for an unknown mailbox (550 5.1.1), so it says nothing about the agent.
        for (const b of boxes) if (!(await agentIsActive(d.db, b))) return { ok: false, reason: 'mailbox_inactive' };
        return { ok: true };
      }
      const org = await d.db.selectFrom('organizations').select('id').where('domain', '=', domainOf(a)).executeTakeFirst();
      return { ok: false, reason: org ? 'unknown_mailbox' : 'relay_denied' };
    });

  /**
   * Mail from outside whose From (or DMARC) domain is the mailbox organisation's own but that did not pass
   * DMARC: the organisation knows its own mail is authenticated, so this is a spoof whatever its p= says
   * (none, no record or a DNS error included). Flagged in the stored results as `org_domain_unauthenticated`.
   */
  const claimsOrgUnauthenticated = (mailbox: MailboxesTable, a: InboundAnalysis) =>
    a.auth.dmarc?.result !== 'pass' &&
    [domainOf(a.content.from.address), a.auth.dmarc?.domain?.toLowerCase()].some((x) => isOrgDomain(x, domains.get(mailbox.org_id)));

  const authFor = (mailbox: MailboxesTable, a: InboundAnalysis) =>
    claimsOrgUnauthenticated(mailbox, a) ? { ...a.auth, flags: [...a.auth.flags, 'org_domain_unauthenticated'] } : a.auth;

  const statusFor = (mailbox: MailboxesTable, a: InboundAnalysis, agentActive: boolean) => {
    const dmarcFail = a.auth.flags.includes('dmarc_fail');
    const spoofsOrg = claimsOrgUnauthenticated(mailbox, a);
    const authReasons: HoldReason[] = [
      ...(dmarcFail ? [{ code: 'dmarc_fail', policy: a.auth.dmarc?.policy ?? null }] : []),
      ...(spoofsOrg ? [{ code: 'org_domain_unauthenticated', dmarc: a.auth.dmarc?.result ?? null }] : []),
    ];
    // The sender's domain asked receivers to quarantine or reject what fails (RFC 7489 6.3), or the mail spoofs the
    // organisation's own domain: oversight's hold policy decides what that means for this mailbox.
    const decision = decideHold({
      direction: 'inbound',
      mode: mailbox.oversight_mode,
      agentActive,
      authReasons,
      quarantineAsked: (dmarcFail && a.dmarcEnforced) || spoofsOrg,
      dmarcFailure: mailbox.dmarc_failure,
    });
    return decision.kind === 'hold'
      ? { status: decision.status, reasons: decision.reasons as Record<string, unknown>[] }
      : { status: 'received' as const, reasons: [] as Record<string, unknown>[] };
  };

  /** Turns the outbound messages a DSN reports on `bounced` (failed) or notes the delay. Returns the changed ones. */
  const applyDsn = async (
    tx: Tx,
    mailbox: MailboxesTable,
    actor: AuditActor,
    reportId: string,
    dsn: DsnReport,
    at: string,
  ): Promise<number> => {
    if (dsn.originalIds.length === 0) return 0;
    const originals = await outboundByMessageIds(tx, mailbox, dsn.originalIds);
    const failed = dsn.recipients.filter((r) => r.action === 'failed');
    let out = 0;
    for (const o of originals) {
      const target = { type: 'email', id: o.id };
      if (failed.length > 0 && BOUNCEABLE.includes(o.status)) {
        const first = failed[0]!;
        const reason = {
          code: 'dsn',
          action: 'failed',
          status: first.status,
          diagnostic: first.diagnostic,
          failed_recipients: failed.length,
          report_email_id: reportId,
        };
        // Compare-and-set: a message another process moved on meanwhile (cancelled, say) is left as it is.
        if ((await moveMessage(tx, o.id, 'bounce', { status_reason: JSON.stringify(reason), updated_at: at })) === 0) continue;
        await addMessageEvent(tx, o.id, at, 'bounced', reason);
        // The diagnostic text stays out of the audit log (it can name the recipient): status code and counts only.
        await d.audit.record(tx, {
          action: 'email.bounced',
          actor,
          target,
          contentHash: o.raw_hash,
          details: {
            source: 'dsn',
            status: first.status,
            failed_recipients: failed.length,
            report_email_id: reportId,
            previous_status: o.status,
          },
        });
        out++;
      } else {
        const kinds = [...new Set(dsn.recipients.map((r) => r.action))];
        await addMessageEvent(tx, o.id, at, 'delivery_report', {
          actions: kinds,
          statuses: [...new Set(dsn.recipients.map((r) => r.status).filter(Boolean))],
          report_email_id: reportId,
        });
      }
    }
    return out;
  };

  /**
   * Stores one received message for every recipient mailbox in one
   * transaction; a message already stored with the same Message-ID and raw
   * bytes (a sender retrying after a lost 250) is not stored twice. Publishes
   * mail events after the commit. Throws 503 store_unavailable (temporary):
   * nothing was stored and the sender must retry.
   */
  let arrivingNow = 0;
  const receive = async (env: InboundEnvelope, raw: Buffer): Promise<ReceiveResult> => {
    const addresses = [...new Set(env.rcptTo.map((a) => a.toLowerCase()))];
    const { mailboxes, orgDomains } = await wrapStore(async () => {
      const mbx = addresses.length > 0 ? await mailboxesAt(addresses) : [];
      return { mailboxes: mbx, orgDomains: await domainsOf([...new Set(mbx.map((m) => m.org_id))]) };
    });
    if (mailboxes.length === 0) throw new AppError('no_recipients', 550, 'No valid recipients.');
    // On its way to the commit (the batcher waits for such messages, commit-batcher.ts) until it gets there or fails.
    arrivingNow++;
    let arrived = false;
    const arrive = () => {
      if (!arrived) arrivingNow--;
      arrived = true;
    };
    try {
      return await receiveFor(env, raw, mailboxes, orgDomains, arrive);
    } finally {
      arrive();
    }
  };

  const receiveFor = async (
    env: InboundEnvelope,
    raw: Buffer,
    mailboxes: MailboxesTable[],
    orgDomains: string[],
    arrive: () => void,
  ): Promise<ReceiveResult> => {
    let analysis: InboundAnalysis;
    try {
      analysis = await d.analyze(raw, env, orgDomains);
    } catch (e) {
      // Analysis never fails on content; anything here is ours: the sender retries.
      d.logger.error({ err: { type: (e as Error)?.name } }, 'inbound analysis failed');
      throw new AppError('analysis_failed', 503, 'The message could not be processed; try again later.', { temporary: true, cause: e });
    }
    const rawHash = sha256Hex(raw);
    const now = d.clock.now();
    const at = now.toISOString();

    // Everything that needs no transaction: ids, threads, sealing.
    const drafts = await wrapStore(() =>
      Promise.all(
        mailboxes.map(async (mailbox) => {
          const id = newId('message');
          const own = mailbox.address.toLowerCase();
          const content: MessageContent = {
            ...analysis.content,
            bcc: analysis.content.to.includes(own) || analysis.content.cc.includes(own) ? [] : [own],
          };
          const thread = await inboundThread(d.db, d.ring, mailbox, {
            inReplyTo: analysis.inReplyTo ?? (analysis.dsn ? (analysis.dsn.originalIds[0] ?? null) : null),
            references: analysis.dsn ? [...analysis.references, ...analysis.dsn.originalIds] : analysis.references,
            subject: content.subject,
            from: content.from.address,
            now,
          });
          const key = { org_id: mailbox.org_id, mailbox_id: mailbox.id, id };
          // The raw bytes are kept (sealed); the parsed document leaves out the attachments' bytes they hold
          // (the analysis already returns it so, analyze-message.ts).
          const sealed = sealContent(d.ring, key, content);
          // Status, reason and mode are decided in the transaction, under the mailbox as it is then.
          const row = messageRow({
            id,
            orgId: mailbox.org_id,
            mailboxId: mailbox.id,
            direction: 'inbound',
            status: 'received',
            threadId: thread.threadId,
            messageId: analysis.messageId ?? derivedMessageId(raw, rawHash, domainOf(own)),
            inReplyTo: analysis.inReplyTo,
            references: analysis.references,
            createdBy: { type: 'system', id: null },
            contentSealed: sealed.sealed,
            contentHash: sealed.hash,
            rawSealed: sealRaw(d.ring, key, raw),
            rawHash,
            sizeBytes: raw.length,
            // Content-derived tags are the system's (system_tags); the agent's own start empty.
            systemTags: analysis.tags,
            oversightMode: mailbox.oversight_mode,
            isRead: false,
            at,
            phiFindings: analysis.findings,
            phiSensitivity: analysis.sensitivity,
            authResults: authFor(mailbox, analysis),
          });
          return { mailbox, draft: row, thread, content };
        }),
      ),
    );

    arrive();
    const result = await wrapStore(() =>
      commit(async (tx) => {
        const stored: ReceiveResult['stored'] = [];
        let duplicates = 0;
        for (const { mailbox: before, draft, thread, content } of drafts) {
          // A mode tightened to gated_all while this message was analysed holds it.
          // The mailbox and its agent's state as they are now, whether this message is already stored (a retry after
          // a lost 250: same Message-ID and raw bytes) and the organisation's newest content-index key, in one
          // statement: the same reads as one statement each, in the same transaction (on PostgreSQL, one snapshot
          // instead of three), one round trip instead of three. Compiled once (src/store/db.ts compiledFor).
          const nowQuery = compiledFor(tx, 'receive:mailboxNow', 5, ([mailboxId, org, messageId, mbx, hash]) =>
            tx
              .selectFrom('mailboxes')
              .leftJoin('agents', (j) => j.onRef('agents.id', '=', 'mailboxes.agent_id').onRef('agents.org_id', '=', 'mailboxes.org_id'))
              .selectAll('mailboxes')
              .select('agents.is_active as agent_is_active')
              .select((eb) => [
                duplicateIdOf(eb, { org_id: org as string, message_id: messageId as string, mailbox_id: mbx as string }, hash as string).as(
                  'duplicate_id',
                ),
                ...(['version', 'key_wrapped'] as const).map((col) =>
                  eb
                    .selectFrom('recipient_index_keys')
                    .select(`recipient_index_keys.${col}`)
                    .whereRef('recipient_index_keys.org_id', '=', 'mailboxes.org_id')
                    .where('recipient_index_keys.retired_at', 'is', null)
                    .orderBy('recipient_index_keys.version', 'desc')
                    .limit(1)
                    .as(`index_key_${col}`),
                ),
              ])
              .where('mailboxes.id', '=', mailboxId as string),
          );
          const fresh = (await runCompiled(tx, nowQuery(before.id, draft.org_id, draft.message_id, draft.mailbox_id, rawHash))).rows[0];
          let mailbox = before;
          let agentActive: boolean;
          let dup: string | null | undefined;
          let indexKey: IndexKey | undefined;
          if (fresh) {
            const { agent_is_active, duplicate_id, index_key_version, index_key_key_wrapped, ...row } = fresh;
            mailbox = row as MailboxesTable;
            agentActive = agent_is_active === 1;
            dup = duplicate_id as string | null;
            if (index_key_version !== null && index_key_key_wrapped !== null)
              indexKey = indexKeyOf(d.ring, draft.org_id, Number(index_key_version), index_key_key_wrapped as string);
          } else agentActive = await agentIsActive(tx, mailbox);
          const { status, reasons } = statusFor(mailbox, analysis, agentActive);
          const row: MessagesTable = {
            ...draft,
            status,
            oversight_mode: mailbox.oversight_mode,
            status_reason: reasons.length > 0 ? JSON.stringify({ code: status === 'quarantined' ? 'quarantined' : 'held', reasons }) : null,
          };
          if (!fresh) dup = await duplicateOf(tx, row, rawHash);
          if (dup) {
            duplicates++;
            continue;
          }
          const actor = await actorFor(tx, mailbox);
          const target = { type: 'email', id: row.id };
          await insertMessage(tx, row, { ring: d.ring, content, key: indexKey });
          await addMessageEvent(tx, row.id, at, 'received', {
            client_ip: env.clientIp,
            helo: heloOf(env),
            tls: env.tls,
            auth_flags: analysis.auth.flags,
            threaded_by: thread.by,
          });
          await d.audit.record(tx, {
            action: 'email.received',
            actor,
            target,
            clientIp: env.clientIp,
            contentHash: rawHash,
            details: {
              mailbox_id: mailbox.id,
              status: row.status,
              size: raw.length,
              helo: heloOf(env),
              tls: env.tls,
              attachments: analysis.content.attachments.length,
              thread_id: row.thread_id,
              threaded_by: thread.by,
              auth: {
                spf: analysis.auth.spf?.result ?? null,
                dkim: analysis.auth.dkim.map((x) => x.result),
                dmarc: analysis.auth.dmarc?.result ?? null,
                arc: analysis.auth.arc?.result ?? null,
                flags: analysis.auth.flags,
              },
              phi: { sensitivity: analysis.sensitivity, types: analysis.findingTypes, findings: analysis.findings.length },
              tags: analysis.tags,
              unparsed: analysis.unparsed,
              dsn: analysis.dsn !== null,
            },
          });
          if (reasons.length > 0) {
            // Held or quarantined: the reviewers' queue can release it (approvals-service, direction inbound).
            const approvalId = newId('approval');
            const expires = new Date(now.getTime() + d.approvalTtlSeconds * 1000).toISOString();
            await insertPendingApproval(tx, {
              id: approvalId,
              orgId: row.org_id,
              messageId: row.id,
              mailboxId: mailbox.id,
              direction: 'inbound',
              reasons,
              createdAt: at,
              expiresAt: expires,
            });
            await holdMessage(tx, row, { approvalId, reasons, at, expiresAt: expires });
            const type = row.status === 'quarantined' ? 'quarantined' : 'held';
            await addMessageEvent(tx, row.id, at, type, { approval_id: approvalId, reasons, expires_at: expires });
            await d.audit.record(tx, {
              action: row.status === 'quarantined' ? 'email.quarantined' : 'email.held',
              actor,
              target,
              details: { approval_id: approvalId, reasons, expires_at: expires },
            });
          }
          if (analysis.dsn) await applyDsn(tx, mailbox, actor, row.id, analysis.dsn, at);
          stored.push({ id: row.id, mailbox_id: mailbox.id, status: row.status });
        }
        return { stored, duplicates };
      }),
    );
    // One message's verdicts once, however many mailboxes it was stored for (a duplicate was counted the first time).
    if (d.metrics && result.stored.length > 0) {
      const a = analysis.auth;
      d.metrics.authResult('spf', authResultLabel(a.spf?.result ?? 'none'));
      for (const k of a.dkim.length > 0 ? a.dkim : [{ result: 'none' }]) d.metrics.authResult('dkim', authResultLabel(k.result));
      d.metrics.authResult('dmarc', authResultLabel(a.dmarc?.result ?? 'none'));
      d.metrics.authResult('arc', authResultLabel(a.arc?.result ?? 'none'));
    }
    return { stored: result.stored, duplicates: result.duplicates };
  };

  /** Messages accepted for analysis that have not reached their commit yet (the commit batcher's `arriving`). */
  const arriving = () => arrivingNow;

  return { checkRecipient, receive, arriving };
};

export type ReceiveService = ReturnType<typeof createReceiveService>;
