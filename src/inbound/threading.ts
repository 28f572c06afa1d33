import type { KeyRing } from '../kernel/crypto/keyring.js';
import { newId } from '../kernel/ids.js';
import { openContent } from '../mail/message-store.js';
import { recentSmallMessages, threadLinksOf } from '../mail/messages-repo.js';
import type { Executor } from '../store/db.js';
import type { MailboxesTable } from '../store/schema.js';

/** Reply and forward prefixes in common mail clients' languages (Re, Fwd, AW, WG, SV, VS, Antw, Doorst, TR, RV). */
const PREFIX = /^\s*(?:(?:re|fw|fwd|aw|wg|sv|vs|antw|doorst|tr|rv|r)\s*(?:\[\d+\])?\s*:\s*)+/i;

/** The subject a thread is recognised by: reply/forward prefixes removed, whitespace collapsed, lower case. */
export const baseSubject = (s: string) => s.replace(PREFIX, '').replace(/\s+/g, ' ').trim().toLowerCase();

const SUBJECT_WINDOW_MS = 30 * 24 * 3600 * 1000;
const SUBJECT_CANDIDATES = 50;
/** Messages larger than this are not opened for a subject comparison (their content holds attachments). */
const SUBJECT_MAX_BYTES = 2 * 1024 * 1024;

export type InboundThreading = { threadId: string; parentId: string | null; by: 'in_reply_to' | 'references' | 'subject' | 'new' };

/**
 * The thread of a received message in `mailbox`, shared with outbound
 * messages (their Message-IDs are stored alike, see send-service threadingFor):
 * In-Reply-To first, then References newest to oldest (RFC 5322 3.6.4). Subject is
 * only a fallback, for a reply (a prefixed subject) that names no known
 * message: the newest message of the last 30 days with the same base subject
 * exchanged with the same correspondent. Subjects are sealed, so at most 50
 * recent messages are opened for it.
 */
export const inboundThread = async (
  ex: Executor,
  ring: KeyRing,
  mailbox: Pick<MailboxesTable, 'id' | 'org_id'>,
  m: { inReplyTo: string | null; references: string[]; subject: string; from: string; now: Date },
): Promise<InboundThreading> => {
  const wanted = [...new Set([...(m.inReplyTo ? [m.inReplyTo] : []), ...[...m.references].reverse()])].slice(0, 50);
  if (wanted.length > 0) {
    const rows = await threadLinksOf(ex, mailbox, wanted);
    for (const id of wanted) {
      const hit = rows.find((r) => r.message_id === id);
      if (hit) return { threadId: hit.thread_id, parentId: hit.id, by: id === m.inReplyTo ? 'in_reply_to' : 'references' };
    }
  }
  if (PREFIX.test(m.subject) && baseSubject(m.subject) !== '') {
    const want = baseSubject(m.subject);
    const from = m.from.toLowerCase();
    const since = new Date(m.now.getTime() - SUBJECT_WINDOW_MS).toISOString();
    const rows = await recentSmallMessages(ex, mailbox.id, { since, maxBytes: SUBJECT_MAX_BYTES, limit: SUBJECT_CANDIDATES });
    for (const r of rows) {
      try {
        const c = openContent(ring, r, r.content_sealed);
        if (baseSubject(c.subject) !== want) continue;
        const party =
          r.direction === 'outbound'
            ? [...c.to, ...c.cc].map((a) => a.toLowerCase()).includes(from)
            : c.from.address.toLowerCase() === from;
        if (party) return { threadId: r.thread_id, parentId: r.id, by: 'subject' };
      } catch {
        // A row that does not open is not this message's thread; reading it reports the integrity failure.
      }
    }
  }
  return { threadId: newId('thread'), parentId: null, by: 'new' };
};
