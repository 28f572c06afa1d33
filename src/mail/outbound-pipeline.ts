import type { Config } from '../app/config.js';
import { createIdentityRepo } from '../identity/identity-repo.js';
import { activeSigningKey, dkimSelectorOf, openPrivateKey } from '../identity/signing-keys.js';
import type { Clock } from '../kernel/clock.js';
import { seal } from '../kernel/crypto/envelope.js';
import { sha256Hex } from '../kernel/crypto/hash.js';
import type { KeyRing } from '../kernel/crypto/keyring.js';
import { AppError } from '../kernel/errors.js';
import { newId } from '../kernel/ids.js';
import type { Executor } from '../store/db.js';
import type { MailboxesTable, MessagesTable, SigningKeysTable } from '../store/schema.js';
import { dkimSignMessage } from './dkim.js';
import { IDENTITY_HEADER, signIdentityHeader } from './identity-header.js';
import { addMessageEvent, messageAad, openContent } from './message-store.js';
import { composeMime, foldedHeader, relaxedBodyHash, splitMessage } from './mime.js';

export const outboxAad = (orgId: string, messageId: string, jobId: string) => `mailward/outbox/v1|${orgId}|${messageId}|${jobId}`;

export type Envelope = { from: string; to: string[] };

type Deps = { ring: KeyRing; clock: Clock; config: Pick<Config, 'smtp'> };

/**
 * Turns an accepted message into signed bytes and outbox jobs: MIME, the
 * X-Agent-Identity JWS over the body hash, both DKIM signatures covering it,
 * the raw bytes sealed, one job per route. Runs inside the caller's transaction.
 */
export const createOutboundPipeline = ({ ring, clock, config }: Deps) => {
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

  const key = async (tx: Executor, purpose: SigningKeysTable['purpose'], orgId: string) => {
    const k = await activeSigningKey(tx, purpose, orgId);
    if (!k) throw new AppError('signing_key_missing', 500, `The organization has no active ${purpose} key.`);
    return k;
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
   * Signs and queues `msg`. Throws 413 message_too_large when the signed bytes
   * exceed MAILWARD_MAX_MESSAGE_BYTES, 500 when a key is missing. Writes the
   * sealed raw message, outbox rows and a `queued` message event.
   */
  const queue = async (
    tx: Executor,
    msg: MessagesTable,
    mailbox: MailboxesTable,
    approval: { approvedBy: string | null; approvalId: string | null },
  ): Promise<{ rawHash: string; size: number }> => {
    const now = clock.now();
    const org = await repo.org(tx, msg.org_id);
    const agent = await repo.agent(tx, msg.org_id, mailbox.agent_id);
    if (!org || !agent) throw new AppError('internal', 500, 'Message owner not found.');
    const human = await repo.human(tx, msg.org_id, agent.responsible_human_id);
    const chain = await repo.agentChain(tx, agent, org.name);
    const content = openContent(ring, msg, msg.content_sealed);

    const mime = await composeMime(content, { messageId: msg.message_id, inReplyTo: msg.in_reply_to, references: JSON.parse(msg.references_ids) }, now);
    const bodyHash = relaxedBodyHash(splitMessage(mime).body);
    const idKey = await key(tx, 'identity-es256', msg.org_id);
    const jws = await signIdentityHeader(
      {
        ai_generated: true,
        iss: org.domain,
        sub: agent.id,
        agent_address: mailbox.address,
        delegation_chain: chain,
        responsible_human: { id: human?.id ?? agent.responsible_human_id, name: human?.name ?? '' },
        oversight_mode: msg.oversight_mode,
        approved_by: approval.approvedBy,
        approval_id: approval.approvalId,
        message_id: msg.message_id,
        body_hash: bodyHash,
        iat: Math.floor(now.getTime() / 1000),
      },
      idKey.kid,
      pem(idKey),
    );
    const unsigned = Buffer.concat([Buffer.from(foldedHeader(IDENTITY_HEADER, jws)), mime]);
    const ed = await key(tx, 'dkim-ed25519', msg.org_id);
    const rsa = await key(tx, 'dkim-rsa', msg.org_id);
    const raw = await dkimSignMessage(
      unsigned,
      org.domain,
      [
        { selector: dkimSelectorOf(ed.kid), privateKeyPem: pem(ed), algorithm: 'ed25519-sha256' },
        { selector: dkimSelectorOf(rsa.kid), privateKeyPem: pem(rsa), algorithm: 'rsa-sha256' },
      ],
      now,
    );
    if (raw.length > config.smtp.maxMessageBytes) {
      throw new AppError('message_too_large', 413, `The message is larger than ${config.smtp.maxMessageBytes} bytes.`);
    }
    const rawHash = sha256Hex(raw);
    const at = now.toISOString();
    await tx
      .updateTable('messages')
      .set({ raw_sealed: seal(ring, raw, messageAad(msg, 'raw')), raw_hash: rawHash, size_bytes: raw.length, status: 'queued', updated_at: at })
      .where('id', '=', msg.id)
      .execute();

    const recipients = [...new Set([...content.to, ...content.cc, ...content.bcc].map((a) => a.toLowerCase()))];
    const jobs: { kind: 'deliver' | 'copy'; route: string; rcpt: string[] }[] = [...routesFor(recipients)].map(([route, rcpt]) => ({ kind: 'deliver', route, rcpt }));
    // CONTRACT.md: monitored mode sends a copy to forward_to.
    if (mailbox.oversight_mode === 'monitored' && mailbox.forward_to && msg.oversight_mode === 'monitored') {
      for (const [route, rcpt] of routesFor([mailbox.forward_to])) jobs.push({ kind: 'copy', route, rcpt });
    }
    for (const j of jobs) {
      const id = newId('message').replace('msg_', 'obx_');
      const envelope: Envelope = { from: mailbox.address, to: j.rcpt };
      await tx
        .insertInto('outbox')
        .values({
          id,
          org_id: msg.org_id,
          message_id: msg.id,
          kind: j.kind,
          route: j.route,
          envelope_sealed: seal(ring, JSON.stringify(envelope), outboxAad(msg.org_id, msg.id, id)),
          status: 'pending',
          attempts: 0,
          next_attempt_at: at,
          lease_until: null,
          claimed_by: null,
          last_code: null,
          created_at: at,
          updated_at: at,
        })
        .execute();
    }
    await addMessageEvent(tx, msg.id, at, 'queued', { routes: jobs.filter((j) => j.kind === 'deliver').length, copies: jobs.filter((j) => j.kind === 'copy').length, size: raw.length });
    return { rawHash, size: raw.length };
  };

  return { queue };
};

export type OutboundPipeline = ReturnType<typeof createOutboundPipeline>;
