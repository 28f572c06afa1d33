import { createTwoFilesPatch } from 'diff';
import type { Principal } from '../identity/principal.js';
import type { KeyRing } from '../kernel/crypto/keyring.js';
import type { Executor } from '../store/db.js';
import { MESSAGE_META, type MessageMeta, type MessageMetaRow, type MessageRecord } from '../store/records.js';
import { approvalView } from '../oversight/approval-views.js';
import { approvalById } from '../oversight/approvals-repo.js';
import { messageById } from './messages-repo.js';
import { openContent } from './message-store.js';
import { attachmentSize, type MessageContent } from './mime.js';

// The views of a message the read service answers with: head, summary (list, thread, search), full view, held view.

/** The audit target of a message. */
export const emailTarget = (id: string) => ({ type: 'email', id });

/**
 * Held inbound mail (`gated_all`): an inbound message a reviewer has not released
 * shows an agent only that it exists (sender, time, status and its reason),
 * never its subject, body or attachments. Only `received` is released: held
 * (`pending_approval`), `quarantined` (a failed DMARC check waiting for a
 * reviewer) and any status added later stay hidden, failing closed.
 * Reviewers and admins see everything.
 */
export const isContentHidden = (p: Principal, m: Pick<MessageRecord, 'direction' | 'status'>) =>
  p.type === 'agent' && m.direction === 'inbound' && m.status !== 'received';

/**
 * The tags a reader may see: the agent's own always; the system's (derived
 * from content: phi, part2, categories) only where the content itself is
 * visible, so a held or quarantined message tells an agent nothing of what
 * it says (45 CFR 164.502(b) minimum necessary). `tags` is the union.
 */
export const tagFields = (m: Pick<MessageRecord, 'tags' | 'system_tags'>, contentVisible: boolean) => {
  const agent = m.tags;
  const system = contentVisible ? m.system_tags : [];
  return { tags: [...new Set([...system, ...agent])], system_tags: system, agent_tags: agent };
};

/** The columns a list needs, without the sealed blobs (fetched separately, in bounded batches). */
export const META = MESSAGE_META;
export type Meta = MessageMeta;
export type MetaRow = MessageMetaRow;

const eventsOf = async (ex: Executor, id: string) =>
  (await ex.selectFrom('message_events').selectAll().where('message_id', '=', id).orderBy('id').execute()).map((e) => ({
    at: e.at,
    type: e.type,
    details: JSON.parse(e.details) as Record<string, unknown>,
  }));

const attachmentsOf = (c: MessageContent) =>
  c.attachments.map((a, index) => ({
    index,
    filename: a.filename,
    content_type: a.content_type,
    size: attachmentSize(a),
  }));

const readState = (m: Pick<MessageRecord, 'is_read'>) => ({ is_read: m.is_read !== 0, unread: m.is_read === 0 });

/** What every view of a message starts with: identity, place and status with its reason. */
export const headOf = (m: Pick<MessageRecord, 'id' | 'mailbox_id' | 'direction' | 'status' | 'status_reason'>) => ({
  id: m.id,
  mailbox_id: m.mailbox_id,
  direction: m.direction,
  status: m.status,
  status_reason: m.status_reason,
});

/** What a revision changed against the rejected message it replaces, and the reviewer's comment that rejected it. */
const revisionOf = async (ex: Executor, ring: KeyRing, m: MessageRecord, after: MessageContent) => {
  const rejected = await messageById(ex, m.revision_of!);
  if (!rejected) return null;
  const before = openContent(ring, rejected, rejected.content_sealed);
  const approval = rejected.approval_id ? await approvalById(ex, rejected.approval_id) : undefined;
  const changes = (['subject', 'to', 'cc', 'bcc', 'html'] as const)
    .filter((f) => JSON.stringify(before[f]) !== JSON.stringify(after[f]))
    .map((f) => ({ field: f, before: before[f], after: after[f] }));
  const textChanged = (before.text ?? '') !== (after.text ?? '');
  return {
    of_email_id: rejected.id,
    of_approval_id: rejected.approval_id,
    rejection_comment: approval ? approvalView(ring, approval).comment : null,
    changes: textChanged ? [...changes, { field: 'text', before: before.text, after: after.text }] : changes,
    text_diff: textChanged
      ? createTwoFilesPatch('rejected', 'revision', before.text ?? '', after.text ?? '', '', '', { context: 2 })
      : null,
  };
};

/** The clinician a message was sent for (the grant it was sent under). */
export type { OnBehalfOf } from '../store/records.js';

export const fullView = async (ex: Executor, ring: KeyRing, m: MessageRecord) => {
  const c = openContent(ring, m, m.content_sealed);
  const approval = m.approval_id ? await approvalById(ex, m.approval_id) : undefined;
  let original: Record<string, unknown> | null = null;
  if (m.original_sealed) {
    // The agent sees what a reviewer changed: its own fields before the edit.
    const o = openContent(ring, m, m.original_sealed, 'original');
    const a = approval ? approvalView(ring, approval) : null;
    original = Object.fromEntries((a?.edits ?? []).map((d) => [d.field, (o as unknown as Record<string, unknown>)[d.field]]));
  }
  return {
    ...headOf(m),
    content_hidden: false as const,
    from: c.from.address,
    from_name: c.from.name || null,
    to: c.to,
    cc: c.cc,
    bcc: c.bcc,
    subject: c.subject,
    text: c.text,
    html: c.html,
    attachments: attachmentsOf(c),
    ...tagFields(m, true),
    phi_findings: m.phi_findings,
    phi_sensitivity: m.phi_sensitivity,
    auth_results: m.auth_results,
    ...readState(m),
    thread_id: m.thread_id,
    message_id: m.message_id,
    in_reply_to: m.in_reply_to,
    references: m.references_ids,
    oversight_mode: m.oversight_mode,
    created_at: m.created_at,
    delivered_at: m.delivered_at,
    content_purged_at: m.content_purged_at,
    on_behalf_of: m.on_behalf_of,
    approval: approval ? approvalView(ring, approval, m) : null,
    original,
    revision: m.revision_of ? await revisionOf(ex, ring, m, c) : null,
    events: await eventsOf(ex, m.id),
  };
};

/** What an agent sees of a held inbound message: that it exists, its sender and time, and where its review stands. */
export const heldView = async (ex: Executor, m: MessageRecord, c: MessageContent) => {
  const a = m.approval_id ? await approvalById(ex, m.approval_id) : undefined;
  return {
    ...headOf(m),
    content_hidden: true as const,
    from: c.from.address,
    ...tagFields(m, false),
    auth_results: m.auth_results,
    ...readState(m),
    thread_id: m.thread_id,
    created_at: m.created_at,
    approval: a ? { id: a.id, status: a.status, created_at: a.created_at, expires_at: a.expires_at } : null,
  };
};

/** One row of a list, thread or search: the content an agent may see, or for a held inbound message its sender and time only. */
export const summaryOf = (p: Principal, m: Meta, c: MessageContent) => {
  const hidden = isContentHidden(p, m);
  const auth = m.auth_results;
  return {
    ...headOf(m),
    content_hidden: hidden,
    from: c.from.address,
    to: hidden ? [] : c.to,
    subject: hidden ? null : c.subject,
    attachment_count: hidden ? null : c.attachments.length,
    auth_flags: auth ? auth.flags : null,
    ...readState(m),
    thread_id: m.thread_id,
    message_id: hidden ? null : m.message_id,
    ...tagFields(m, !hidden),
    created_at: m.created_at,
  };
};

export type Summary = ReturnType<typeof summaryOf>;
