import part2Notice from './part2-notice.json' with { type: 'json' };
import type { MailConfig } from './mail-config.js';
import { createIdentityRepo } from '../identity/identity-repo.js';
import { activeSigningKey, dkimSelectorOf, openPrivateKey } from '../identity/signing-keys.js';
import type { Clock } from '../kernel/clock.js';
import { seal } from '../kernel/crypto/envelope.js';
import type { KeyRing } from '../kernel/crypto/keyring.js';
import { AppError } from '../kernel/errors.js';
import { newId } from '../kernel/ids.js';
import { insertOutboxJob } from '../queue/outbox-repo.js';
import { compiledFor, type Executor, runCompiled } from '../store/db.js';
import type { MessageRecord } from '../store/records.js';
import type { MailboxesTable, MessagesTable, OrganizationsTable, SigningKeysTable } from '../store/schema.js';
import { approvalById } from '../oversight/approvals-repo.js';
import { moveMessage } from './message-lifecycle.js';
import { openContent } from './message-store.js';
import { addMessageEvent } from './messages-repo.js';
import type { MessageContent } from './mime.js';
import { type SignInput, signMessage } from './sign-message.js';

export const outboxAad = (orgId: string, messageId: string, jobId: string) => `mailward/outbox/v1|${orgId}|${messageId}|${jobId}`;

export type Envelope = { from: string; to: string[] };

/** Where a queued message goes: one job per route, and the chain it is sent under. */
export type DeliveryPlan = {
  jobs: { kind: 'deliver' | 'copy'; route: string; rcpt: string[] }[];
  chain: { type: string; id: string; name: string }[];
  from: string;
};

type Deps = { ring: KeyRing; clock: Clock; config: Pick<MailConfig, 'smtp'>; signer?: { sign: (i: SignInput) => Promise<Buffer> } };

/**
 * From an accepted message to signed bytes. Accepting only plans and queues
 * (cheap, inside the request); the delivery worker signs once, just before the
 * first attempt: MIME, the X-Agent-Identity JWS over the body hash, both DKIM
 * signatures covering it. The signed bytes are stored sealed, so every retry
 * sends exactly the same message (with the first attempt's outcome, or before
 * it for a message with several routes: delivery-worker.ts rawFor).
 */
/** The notice of 42 CFR 2.32, as data (src/mail/part2-notice.json). */
export const PART2_NOTICE: string = part2Notice.statement;

const escapeHtml = (s: string) => s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);

/** The content as delivered: Part 2 messages (system tag `part2`) end with the 2.32 notice in every body. */
export const withPart2Notice = (msg: Pick<MessageRecord, 'system_tags'>, c: MessageContent): MessageContent => {
  if (!msg.system_tags.includes('part2')) return c;
  const html =
    c.html === null
      ? null
      : /<\/body>/i.test(c.html)
        ? c.html.replace(/<\/body>/i, `<p>${escapeHtml(PART2_NOTICE)}</p></body>`)
        : `${c.html}<p>${escapeHtml(PART2_NOTICE)}</p>`;
  return { ...c, text: `${c.text ?? ''}${c.text ? '\n\n' : ''}${PART2_NOTICE}\n`, html };
};

export const createOutboundPipeline = ({ ring, clock, config, signer = { sign: signMessage } }: Deps) => {
  const repo = createIdentityRepo();
  const pemCache = new Map<string, string>();
  const pem = (row: SigningKeysTable) => {
    let p = pemCache.get(row.kid);
    if (!p) {
      p = openPrivateKey(ring, row);
      pemCache.set(row.kid, p);
    }
    return p;
  };

  // Active keys change only by rotation; a minute's cache keeps the key lookups off every message.
  const keyCache = new Map<string, { row: SigningKeysTable; until: number }>();
  const key = async (ex: Executor, purpose: SigningKeysTable['purpose'], orgId: string) => {
    const k = `${orgId}|${purpose}`;
    const hit = keyCache.get(k);
    if (hit && hit.until > Date.now()) return hit.row;
    const row = await activeSigningKey(ex, purpose, orgId);
    if (!row) throw new AppError('signing_key_missing', 500, `The organization has no active ${purpose} key.`);
    keyCache.set(k, { row, until: Date.now() + 60_000 });
    return row;
  };

  /** Routes: everything through the relay, else one job per recipient domain (its MX). */
  const routesFor = (recipients: string[]): Map<string, string[]> => {
    const m = new Map<string, string[]>();
    for (const r of recipients) {
      const route = config.smtp.relay ? 'relay' : r.slice(r.lastIndexOf('@') + 1).toLowerCase();
      m.set(route, [...(m.get(route) ?? []), r]);
    }
    return m;
  };

  /**
   * The delivery plan of a message (no signing): routes, the forward_to copy of monitored mode, the delegation chain.
   * `org`: the message's organisation as the caller already read it in this transaction (else it is read here).
   */
  const plan = async (
    ex: Executor,
    msg: Pick<MessagesTable, 'org_id' | 'oversight_mode'>,
    content: MessageContent,
    mailbox: MailboxesTable,
    known: { org?: OrganizationsTable } = {},
  ): Promise<DeliveryPlan> => {
    const org = known.org?.id === msg.org_id ? known.org : await repo.org(ex, msg.org_id);
    const agent = await repo.agent(ex, msg.org_id, mailbox.agent_id);
    if (!org || !agent) throw new AppError('internal', 500, 'Message owner not found.');
    const recipients = [...new Set([...content.to, ...content.cc, ...content.bcc].map((a) => a.toLowerCase()))];
    const jobs: DeliveryPlan['jobs'] = [...routesFor(recipients)].map(([route, rcpt]) => ({ kind: 'deliver', route, rcpt }));
    // CONTRACT.md: monitored mode sends a copy to forward_to.
    if (mailbox.oversight_mode === 'monitored' && mailbox.forward_to && msg.oversight_mode === 'monitored') {
      for (const [route, rcpt] of routesFor([mailbox.forward_to])) jobs.push({ kind: 'copy', route, rcpt });
    }
    return { jobs, chain: await repo.agentChain(ex, agent, org.name), from: mailbox.address };
  };

  /** Queues a planned message inside the caller's transaction: status `queued`, outbox rows, a `queued` event. */
  const write = async (tx: Executor, msg: Pick<MessagesTable, 'id' | 'org_id'>, p: DeliveryPlan) => {
    const at = clock.now().toISOString();
    await moveMessage(tx, msg.id, 'queue', { updated_at: at });
    for (const j of p.jobs) {
      const id = newId('message').replace('msg_', 'obx_');
      const envelope: Envelope = { from: p.from, to: j.rcpt };
      await insertOutboxJob(
        tx,
        {
          id,
          org_id: msg.org_id,
          message_id: msg.id,
          kind: j.kind,
          route: j.route,
          envelope_sealed: seal(ring, JSON.stringify(envelope), outboxAad(msg.org_id, msg.id, id)),
          actor_chain: JSON.stringify(p.chain),
        },
        at,
      );
    }
    await addMessageEvent(tx, msg.id, at, 'queued', {
      routes: p.jobs.filter((j) => j.kind === 'deliver').length,
      copies: p.jobs.filter((j) => j.kind === 'copy').length,
    });
  };

  /** plan + write inside the caller's transaction. */
  const queue = async (tx: Executor, msg: MessageRecord, mailbox: MailboxesTable) =>
    write(tx, msg, await plan(tx, msg, openContent(ring, msg, msg.content_sealed), mailbox));

  /**
   * The mailbox, organisation, agent and responsible human a message is signed for, as they are now, in one
   * statement (each was a statement of its own: four round trips per message on PostgreSQL), compiled once
   * (src/store/db.ts compiledFor). Undefined when the mailbox, the organisation or the agent is missing; `human`
   * undefined when the responsible human is.
   */
  const signerOf = async (ex: Executor, mailboxId: string, orgId: string) => {
    const compiled = compiledFor(ex, 'outbound.signerOf', 2, ([org, mailbox]) =>
      ex
        .selectFrom('mailboxes as m')
        .innerJoin('organizations as o', (j) => j.on('o.id', '=', org as string))
        .innerJoin('agents as a', (j) => j.onRef('a.id', '=', 'm.agent_id').onRef('a.org_id', '=', 'o.id'))
        .leftJoin('humans as h', (j) => j.onRef('h.id', '=', 'a.responsible_human_id').onRef('h.org_id', '=', 'o.id'))
        .select([
          'm.address as mailbox_address',
          'o.domain as org_domain',
          'o.name as org_name',
          'a.id as agent_id',
          'a.name as agent_name',
          'a.department_id as agent_department_id',
          'a.responsible_human_id as agent_responsible_human_id',
          'h.id as human_id',
          'h.name as human_name',
          'h.email as human_email',
        ])
        .where('m.id', '=', mailbox as string),
    );
    const r = (await runCompiled(ex, compiled(orgId, mailboxId))).rows[0];
    if (!r) return undefined;
    return {
      mailbox: { address: r.mailbox_address },
      org: { domain: r.org_domain, name: r.org_name },
      agent: {
        id: r.agent_id,
        org_id: orgId,
        name: r.agent_name,
        department_id: r.agent_department_id,
        responsible_human_id: r.agent_responsible_human_id,
      },
      human: r.human_id === null ? undefined : { id: r.human_id, name: r.human_name!, email: r.human_email! },
    };
  };

  /**
   * Signs a queued message (no transaction held): the identity claims come
   * from the store as they are now (agent, chain, responsible human, the
   * approval's reviewer). Throws 413 message_too_large past
   * MAILWARD_MAX_MESSAGE_BYTES, 500 when a key is missing.
   */
  const sign = async (ex: Executor, msg: MessageRecord): Promise<Buffer> => {
    const now = clock.now();
    const owner = await signerOf(ex, msg.mailbox_id, msg.org_id);
    if (!owner) throw new AppError('internal', 500, 'Message owner not found.');
    const { mailbox, org, agent, human } = owner;
    // An MCP client sent it with a human's OAuth consent: that human joins the chain and is the one the agent acts for.
    const granted = msg.granted_by ? (JSON.parse(msg.granted_by) as { id: string; name: string }) : null;
    const chain = [
      ...(await repo.agentChain(ex, agent, org.name)),
      ...(granted ? [{ type: 'human' as const, id: granted.id, name: granted.name }] : []),
    ];
    const approval = msg.approval_id ? await approvalById(ex, msg.approval_id) : undefined;
    if (approval && approval.status !== 'approved')
      throw new AppError('not_approved', 409, 'A held message is signed only after approval.');
    // 42 CFR 2.32: a disclosure of Part 2 records carries the notice; added here, so every route and retry sends it
    // and both DKIM signatures and the identity header's body hash cover it.
    const content = withPart2Notice(msg, openContent(ring, msg, msg.content_sealed));
    const onBehalf = msg.on_behalf_of;
    const clinician = onBehalf ? await repo.human(ex, msg.org_id, onBehalf.id) : undefined;

    const idKey = await key(ex, 'identity-es256', msg.org_id);
    const ed = await key(ex, 'dkim-ed25519', msg.org_id);
    const rsa = await key(ex, 'dkim-rsa', msg.org_id);
    const raw = await signer.sign({
      content,
      threading: { messageId: msg.message_id, inReplyTo: msg.in_reply_to, references: msg.references_ids },
      dateMs: now.getTime(),
      domain: org.domain,
      claims: {
        ai_generated: true,
        iss: org.domain,
        sub: agent.id,
        agent_address: mailbox.address,
        delegation_chain: chain,
        responsible_human: { id: human?.id ?? agent.responsible_human_id, name: human?.name ?? '' },
        oversight_mode: msg.oversight_mode,
        approved_by: approval?.decided_by ?? null,
        approval_id: approval?.id ?? null,
        message_id: msg.message_id,
        iat: Math.floor(now.getTime() / 1000),
        // RFC 8693 4.1: the agent is the acting party; the nested actor is the clinician it acts for (with the
        // clinician's NPI), or else the human it answers to.
        act: onBehalf
          ? { sub: agent.id, type: 'agent', act: { sub: onBehalf.id, type: 'clinician', name: onBehalf.name, npi: onBehalf.npi } }
          : { sub: agent.id, type: 'agent', act: { sub: granted?.id ?? human?.id ?? agent.responsible_human_id, type: 'human' } },
        ...(onBehalf
          ? {
              on_behalf_of: {
                sub: onBehalf.id,
                name: onBehalf.name,
                npi: onBehalf.npi,
                category: onBehalf.category,
                grant_id: onBehalf.grant_id,
              },
            }
          : {}),
      },
      attribution: {
        agent: { address: mailbox.address, name: agent.name },
        responsible: human ? [{ name: human.name, email: human.email }] : [],
        onBehalfOf: onBehalf && clinician ? { name: onBehalf.name, email: clinician.email } : null,
        operator: org.domain,
      },
      identityKey: { kid: idKey.kid, pem: pem(idKey) },
      dkim: { ed25519: { selector: dkimSelectorOf(ed.kid), pem: pem(ed) }, rsa: { selector: dkimSelectorOf(rsa.kid), pem: pem(rsa) } },
    });
    if (raw.length > config.smtp.maxMessageBytes) {
      throw new AppError('message_too_large', 413, `The message is larger than ${config.smtp.maxMessageBytes} bytes.`);
    }
    return raw;
  };

  return { plan, write, queue, sign };
};

export type OutboundPipeline = ReturnType<typeof createOutboundPipeline>;
