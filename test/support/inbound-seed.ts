import type { InboundAuthResults } from '../../src/inbound/auth-results.js';
import { appendEvents } from '../../src/events/events-log.js';
import { newId } from '../../src/kernel/ids.js';
import { sealContent } from '../../src/mail/message-store.js';
import { addMessageEvent } from '../../src/mail/messages-repo.js';
import type { MessageContent } from '../../src/mail/mime.js';
import { activeIndexKey } from '../../src/mail/recipient-index.js';
import { insertSearchEntry, searchEntryFor, searchKeyOf } from '../../src/mail/search-index.js';
import type { MessagesTable } from '../../src/store/schema.js';
import type { TestApp } from './test-app.js';

export type SeedMessage = {
  from: string;
  fromName?: string;
  to?: string[];
  subject: string;
  text?: string | null;
  html?: string | null;
  attachments?: MessageContent['attachments'];
  direction?: 'inbound' | 'outbound';
  /** Inbound: received (default), pending_approval (gets a pending approval), quarantined. Outbound: any outbound status. */
  status?: string;
  /** The agent's own tags. */
  tags?: string[];
  /** Tags Mailward derived from the content (phi, part2, categories). */
  systemTags?: string[];
  /** Inbound only; defaults to everything passing. */
  authFlags?: string[];
  createdAt?: string;
  threadId?: string;
  isRead?: boolean;
  /** Stored as before the search index (0032): searched by decrypting until the back-fill indexes it. */
  unindexed?: boolean;
};

const passing = (flags: string[]): InboundAuthResults => ({
  spf: { result: flags.includes('spf_fail') ? 'fail' : 'pass', domain: 'lab.example' },
  dkim: [
    { result: flags.includes('dkim_fail') ? 'fail' : 'pass', domain: 'lab.example', selector: 's1', algo: 'rsa-sha256', aligned: true },
  ],
  dmarc: { result: flags.includes('dmarc_fail') ? 'fail' : 'pass', policy: 'reject', domain: 'lab.example' },
  arc: null,
  flags,
});

/**
 * Rows of the shape the inbound store writes:
 * direction inbound, content sealed like outbound, auth_results JSON, is_read 0,
 * and a pending approval (direction inbound) for held or quarantined mail.
 * Inserted straight into the store so reading tests control times and statuses.
 */
export const seedMessages = async (
  t: TestApp,
  mailbox: { id: string; address: string },
  messages: SeedMessage[],
  /** Fold the new search entries into segments afterwards (default), or leave them pending as a fresh message's are. */
  opts: { compact?: boolean } = {},
): Promise<string[]> => {
  const db = t.c.store.db;
  const ids: string[] = [];
  const rows: MessagesTable[] = [];
  const approvals: { id: string; message: MessagesTable }[] = [];
  const contents = new Map<string, MessageContent>();
  for (const s of messages) {
    const id = newId('message');
    const direction = s.direction ?? 'inbound';
    const status = s.status ?? (direction === 'inbound' ? 'received' : 'delivered');
    const at = s.createdAt ?? new Date().toISOString();
    const content: MessageContent = {
      from: { name: s.fromName ?? '', address: s.from },
      to: s.to ?? [mailbox.address],
      cc: [],
      bcc: [],
      subject: s.subject,
      text: s.text === undefined ? `Body of ${s.subject}` : s.text,
      html: s.html ?? null,
      attachments: s.attachments ?? [],
    };
    const key = { org_id: t.orgId, mailbox_id: mailbox.id, id };
    const sealed = sealContent(t.c.ring, key, content);
    const held = direction === 'inbound' && (status === 'pending_approval' || status === 'quarantined');
    const row: MessagesTable = {
      ...key,
      direction,
      status,
      thread_id: s.threadId ?? newId('thread'),
      message_id: `<${id}@${direction === 'inbound' ? 'lab.example' : t.domain}>`,
      in_reply_to: null,
      references_ids: '[]',
      created_by_type: direction === 'inbound' ? 'system' : 'agent',
      created_by_id: null,
      content_sealed: sealed.sealed,
      original_sealed: null,
      raw_sealed: null,
      content_hash: sealed.hash,
      raw_hash: null,
      size_bytes: 1000,
      tags: JSON.stringify(s.tags ?? []),
      system_tags: JSON.stringify(s.systemTags ?? []),
      status_reason: held
        ? JSON.stringify({
            code: status === 'quarantined' ? 'quarantined' : 'held',
            reasons: [status === 'quarantined' ? { code: 'dmarc_fail', policy: 'reject' } : { code: 'oversight_mode', mode: 'gated_all' }],
          })
        : null,
      approval_id: null,
      oversight_mode: 'autonomous',
      is_read: direction === 'outbound' || s.isRead ? 1 : 0,
      created_at: at,
      updated_at: at,
      delivered_at: null,
      phi_findings: '[]',
      phi_sensitivity: 'none',
      auth_results: direction === 'inbound' ? JSON.stringify(passing(s.authFlags ?? [])) : null,
      category: null,
      content_purged_at: null,
      revision_of: null,
    };
    if (held) {
      const approvalId = newId('approval');
      row.approval_id = approvalId;
      approvals.push({ id: approvalId, message: row });
    }
    if (!s.unindexed) contents.set(id, content);
    rows.push(row);
    ids.push(id);
  }
  for (let i = 0; i < rows.length; i += 200) {
    const chunk = rows.slice(i, i + 200);
    await db.transaction().execute(async (tx) => {
      // The search entries the repo writes with a stored message (search-index.ts), unless asked not to.
      const k = searchKeyOf(await activeIndexKey(tx, t.c.ring, t.orgId, new Date().toISOString()));
      for (const r of chunk) r.search_key_version = contents.has(r.id) ? k.version : null;
      await tx.insertInto('messages').values(chunk).execute();
      for (const r of chunk) {
        const c = contents.get(r.id);
        if (c) await insertSearchEntry(tx, searchEntryFor(r, c, k));
      }
      // The domain events the repo writes with a stored message, so waiters and feeds see seeded mail too.
      await appendEvents(
        tx,
        chunk.map((r) => ({
          orgId: r.org_id,
          type: r.direction === 'outbound' ? 'email.submitted' : 'email.received',
          at: r.created_at,
          mailboxId: r.mailbox_id,
          emailId: r.id,
          data: { status: r.status, direction: r.direction },
        })),
      );
    });
  }
  for (const a of approvals) {
    const m = a.message;
    await db
      .insertInto('approvals')
      .values({
        id: a.id,
        org_id: m.org_id,
        message_id: m.id,
        mailbox_id: m.mailbox_id,
        direction: 'inbound',
        status: 'pending',
        reasons: JSON.stringify((JSON.parse(m.status_reason ?? '{}') as { reasons?: unknown[] }).reasons ?? []),
        created_at: m.created_at,
        expires_at: new Date(Date.parse(m.created_at) + 86_400_000).toISOString(),
        decided_at: null,
        decided_by: null,
        decision_reason: null,
        comment_sealed: null,
        edits: null,
      })
      .execute();
    await addMessageEvent(db, m.id, m.created_at, 'held', { approval_id: a.id });
  }
  // The compactor as `serve` runs it (on PostgreSQL it also vacuums the folded rows' space for reuse).
  if (opts.compact !== false) await t.c.mail.searchCompactor.runOnce({ force: true, mailboxId: mailbox.id });
  return ids;
};
