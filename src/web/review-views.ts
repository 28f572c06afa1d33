/**
 * Pages of the reviewer console's work: the approval queue, the review page of one held message and
 * the audit trail. Server-rendered, every value escaped, no inline script or style (the console's CSP);
 * the message's own HTML only ever inside a sandboxed frame (html-sanitize.ts).
 */
import { esc, layout, type Viewer } from './console-views.js';
import { frameDocument } from './html-sanitize.js';

type Finding = { type: string; field: string; start: number; end: number; confidence: number; attachment?: number };

const hidden = (name: string, value: string) => `<input type="hidden" name="${esc(name)}" value="${esc(value)}">`;
const errorLine = (error?: string) => (error ? `<p class="error" role="alert" id="error">${esc(error)}</p>` : '');

/** A duration in words a reviewer reads at a glance (3 d 4 h, 5 h 12 min, 40 min). */
export const duration = (seconds: number) => {
  const s = Math.abs(seconds);
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  const text = d > 0 ? `${d} d ${h} h` : h > 0 ? `${h} h ${m} min` : `${m} min`;
  return seconds < 0 ? `expired ${text} ago` : text;
};

const REASON_LABEL: Record<string, string> = {
  oversight_mode: 'Oversight mode',
  phi: 'PHI',
  part2: '42 CFR Part 2',
  consent_unknown: 'Consent unknown',
  no_consent: 'No consent',
  dmarc_fail: 'DMARC failed',
  org_domain_unauthenticated: 'Own domain unauthenticated',
  agent_deactivated: 'Agent deactivated',
  revision: 'Revision',
};
const reasonLabel = (code: string) => REASON_LABEL[code] ?? code;

const reasonText = (r: { code: string; [k: string]: unknown }) => {
  if (r.code === 'oversight_mode') return `Oversight mode: ${String(r.mode ?? '')}`;
  if (r.code === 'phi' && Array.isArray(r.types)) return `PHI: ${r.types.join(', ')}`;
  return reasonLabel(r.code);
};

export type QueueRow = {
  id: string;
  email_id: string;
  mailbox_address: string;
  agent_name: string;
  department_name: string | null;
  direction: string;
  from: string;
  recipients: string[];
  subject: string;
  reasons: { code: string; [k: string]: unknown }[];
  phi_types: string[];
  is_revision: boolean;
  age_seconds: number;
  seconds_left: number;
};

export type QueueData = {
  rows: QueueRow[];
  next: string | null;
  counts: { total: number; by_reason: Record<string, number>; by_direction: Record<string, number> };
  filters: { reason?: string; mailbox?: string; direction?: string; sort: string };
  mailboxes: { id: string; address: string }[];
  reasons: readonly string[];
  firstPage: boolean;
  notify: { enabled: boolean; batch_minutes: number } | null;
};

const queueHref = (f: QueueData['filters'], extra: Record<string, string | undefined> = {}) => {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries({ ...f, ...extra })) if (v) q.set(k, v);
  const s = q.toString();
  return s ? `/console/queue?${s}` : '/console/queue';
};

const option = (value: string, label: string, selected?: string) =>
  `<option value="${esc(value)}"${value === (selected ?? '') ? ' selected' : ''}>${esc(label)}</option>`;

/** The rows and counts, also fetched by console.js when the queue changes (the live update swaps these parts). */
export const queueParts = (d: QueueData) => {
  const counts = `<ul id="queue-counts" class="counts" aria-label="Waiting per reason"><li><a href="${esc(queueHref({ sort: d.filters.sort }))}">All <strong data-count="all">${d.counts.total}</strong></a></li>${Object.entries(
    d.counts.by_reason,
  )
    .sort(([a], [b]) => a.localeCompare(b))
    .map(
      ([code, n]) =>
        `<li><a href="${esc(queueHref({ ...d.filters, reason: code, mailbox: d.filters.mailbox }, { cursor: undefined }))}">${esc(reasonLabel(code))} <strong data-count="${esc(code)}">${n}</strong></a></li>`,
    )
    .join('')}</ul>`;
  const rows = d.rows
    .map(
      (r) => `<tr data-approval="${esc(r.id)}">
<td><a href="/console/review/${esc(r.email_id)}">${esc(r.subject || '(no subject)')}</a></td>
<td>${esc(r.direction === 'inbound' ? `from ${r.from}` : r.recipients.join(', '))}</td>
<td>${esc(r.mailbox_address)}<br><small>${esc(r.agent_name)}${r.department_name ? ` · ${esc(r.department_name)}` : ''}</small></td>
<td>${esc(r.direction)}</td>
<td><ul class="reasons">${r.reasons.map((x) => `<li>${esc(reasonText(x))}</li>`).join('')}${r.is_revision ? '<li>Revision</li>' : ''}</ul></td>
<td>${esc(duration(r.age_seconds))}</td>
<td${r.seconds_left < 6 * 3600 ? ' class="urgent"' : ''}>${esc(duration(r.seconds_left))}</td></tr>`,
    )
    .join('');
  const table = `<div id="queue-table"><table><caption>Pending approvals${d.filters.reason ? `: ${esc(reasonLabel(d.filters.reason))}` : ''}</caption>
<thead><tr><th scope="col">Subject</th><th scope="col">Recipients / sender</th><th scope="col">Mailbox · agent · department</th><th scope="col">Direction</th><th scope="col">Reasons</th><th scope="col">Waiting</th><th scope="col">Time left</th></tr></thead>
<tbody>${rows || '<tr><td colspan="7">Nothing waits for review.</td></tr>'}</tbody></table>
<nav aria-label="Pages" class="pager">${d.firstPage ? '' : `<a href="${esc(queueHref(d.filters))}">First page</a> `}${d.next ? `<a id="next-page" href="${esc(queueHref(d.filters, { cursor: d.next }))}">Next page</a>` : ''}</nav></div>`;
  return { counts, table };
};

export const queuePage = (viewer: NonNullable<Viewer>, d: QueueData) => {
  const { counts, table } = queueParts(d);
  const f = d.filters;
  return layout(
    'Approval queue',
    `<p id="live-status" role="status" aria-live="polite"></p>${counts}
<form method="get" action="/console/queue" class="filters" aria-label="Filter the queue">
<label for="f-reason">Reason</label><select id="f-reason" name="reason">${option('', 'Any')}${d.reasons.map((r) => option(r, reasonLabel(r), f.reason)).join('')}</select>
<label for="f-mailbox">Mailbox</label><select id="f-mailbox" name="mailbox">${option('', 'Any')}${d.mailboxes.map((m) => option(m.id, m.address, f.mailbox)).join('')}</select>
<label for="f-direction">Direction</label><select id="f-direction" name="direction">${option('', 'Any')}${option('outbound', 'Outbound', f.direction)}${option('inbound', 'Inbound', f.direction)}</select>
<label for="f-sort">Sort</label><select id="f-sort" name="sort">${option('oldest', 'Oldest first', f.sort)}${option('newest', 'Newest first', f.sort)}${option('expiring', 'Expiring soonest', f.sort)}</select>
<button type="submit">Apply</button></form>${table}${
      d.notify
        ? `<section id="notifications" aria-labelledby="notifications-h"><h2 id="notifications-h">Notifications</h2><p>An email tells you how many messages wait (counts and a link, never their content).</p>
<form method="post" action="/console/notifications">${hidden('csrf', viewer.csrf)}<label><input type="checkbox" id="notify-enabled" name="enabled"${d.notify.enabled ? ' checked' : ''}> Email me when messages wait</label>
<label for="notify-minutes">At most every (minutes)</label><input id="notify-minutes" name="batch_minutes" type="number" min="1" max="1440" value="${d.notify.batch_minutes}"><button type="submit" id="notify-save">Save</button></form></section>`
        : ''
    }`,
    viewer,
    { script: 'review.js' },
  );
};

/** Text with each finding of `field` marked where it is (offsets into the text, as the scan stored them). */
export const markedText = (text: string, findings: Finding[], field: string, idPrefix: string) => {
  const own = findings
    .map((f, i) => ({ ...f, i }))
    .filter((f) => f.field === field && f.attachment === undefined && f.start >= 0 && f.end <= text.length && f.end > f.start)
    .sort((a, b) => a.start - b.start);
  let out = '';
  let at = 0;
  for (const f of own) {
    if (f.start < at) continue; // overlapping findings: the first one marks the span
    out += esc(text.slice(at, f.start));
    out += `<mark id="${idPrefix}-${f.i}" data-type="${esc(f.type)}" tabindex="-1" title="${esc(`${f.type}, confidence ${f.confidence.toFixed(2)}`)}">${esc(text.slice(f.start, f.end))}<span class="sr-only"> (${esc(f.type)})</span></mark>`;
    at = f.end;
  }
  return out + esc(text.slice(at));
};

const findingsList = (findings: Finding[], idPrefix: string, listId: string) =>
  findings.length === 0
    ? `<p id="${listId}" data-findings="0">No PHI found.</p>`
    : `<ol id="${listId}" data-findings="${findings.length}">${findings
        .map(
          (f, i) =>
            `<li><a href="#${idPrefix}-${i}" data-finding="${esc(f.type)}">${esc(f.type)}</a> in ${esc(f.field)}${f.attachment === undefined ? '' : ` (attachment ${f.attachment + 1})`}, confidence ${esc(f.confidence.toFixed(2))}</li>`,
        )
        .join('')}</ol>`;

export type ReviewData = {
  email: {
    id: string;
    direction: string;
    status: string;
    from: string;
    from_name: string | null;
    to: string[];
    cc: string[];
    subject: string;
    text: string | null;
    html: string | null;
    attachments: { index: number; filename: string; content_type: string; size: number }[];
    phi_findings: Finding[];
    phi_sensitivity: string | null;
    created_at: string;
    message_id: string | null;
    approval: {
      id: string;
      status: string;
      reasons: { code: string; [k: string]: unknown }[];
      expires_at: string;
      comment: string | null;
      signature: { signer_name: string; signed_at: string; meaning: string } | null;
    } | null;
    revision: { of_email_id: string; rejection_comment: string | null; text_diff: string | null } | null;
  };
  previews: Map<number, string>;
  consents: { address: string; status: string; categories: string[] }[];
  thread: { id: string; subject: string | null; from: string; created_at: string; status: string; current: boolean }[];
  canDecide: boolean;
  needsStepUp: boolean;
  edit?: {
    fields: { subject: string; text: string; html: string; to: string; cc: string };
    findings: Finding[];
    diff: string;
  };
  error?: string;
  done?: string;
};

const decisionForms = (csrf: string, d: ReviewData) => {
  const e = d.email;
  const a = e.approval;
  if (a?.status !== 'pending') return '';
  if (!d.canDecide) return '<section id="decide"><h2>Decision</h2><p>Your role may read this message but not decide it.</p></section>';
  const base = `/console/review/${esc(e.id)}`;
  const stepUp = d.needsStepUp
    ? `<p id="step-up-needed">Signing a decision needs a fresh second-factor check. <a id="step-up-link" href="/console/step-up?return_to=${esc(encodeURIComponent(`/console/review/${e.id}`))}">Confirm it's you</a> first.</p>`
    : '';
  if (e.direction === 'inbound') {
    return `<section id="decide" aria-labelledby="decide-h"><h2 id="decide-h">Decision</h2>${stepUp}
<form method="post" action="${base}/release">${hidden('csrf', csrf)}${hidden('approval_id', a.id)}<label for="release-comment">Comment (optional)</label><input id="release-comment" name="comment" type="text" maxlength="2000"><button type="submit" id="release">Sign and release to the agent</button></form>
<form method="post" action="${base}/reject">${hidden('csrf', csrf)}${hidden('approval_id', a.id)}<label for="keep-comment">Why it stays held (required)</label><textarea id="keep-comment" name="comment" required maxlength="2000"></textarea><button type="submit" id="keep-held">Sign and keep held</button></form></section>`;
  }
  const f = d.edit?.fields ?? {
    subject: e.subject,
    text: e.text ?? '',
    html: e.html ?? '',
    to: e.to.join(', '),
    cc: e.cc.join(', '),
  };
  const preview = d.edit
    ? `<section id="edit-preview" aria-labelledby="edit-preview-h"><h2 id="edit-preview-h">Your edits</h2><h3>Changes</h3><pre id="edit-diff">${esc(d.edit.diff || '(no change)')}</pre>
<h3>PHI scan of the edited message</h3>${findingsList(d.edit.findings, 'edit-finding', 'edit-findings')}
<pre id="edited-text" class="body">${markedText(f.text, d.edit.findings, 'text', 'edit-finding')}</pre>
<form method="post" action="${base}/approve">${hidden('csrf', csrf)}${hidden('approval_id', a.id)}${hidden('edited', '1')}${hidden('subject', f.subject)}${hidden('text', f.text)}${hidden('html', f.html)}${hidden('to', f.to)}${hidden('cc', f.cc)}
<label for="edit-comment">Comment (optional)</label><input id="edit-comment" name="comment" type="text" maxlength="2000">
<button type="submit" id="approve-edited">Sign and approve the edited message</button></form></section>`
    : '';
  return `<section id="decide" aria-labelledby="decide-h"><h2 id="decide-h">Decision</h2>${stepUp}
<form method="post" action="${base}/approve">${hidden('csrf', csrf)}${hidden('approval_id', a.id)}<label for="approve-comment">Comment (optional)</label><input id="approve-comment" name="comment" type="text" maxlength="2000"><button type="submit" id="approve">Sign and approve as is</button></form>
<form method="post" action="${base}/reject">${hidden('csrf', csrf)}${hidden('approval_id', a.id)}<label for="reject-comment">Reason for rejecting (required; the agent reads it)</label><textarea id="reject-comment" name="comment" required maxlength="2000"></textarea><button type="submit" id="reject">Sign and reject</button></form>
<details${d.edit ? ' open' : ''}><summary>Approve with edits</summary>
<form method="post" action="${base}/preview">${hidden('csrf', csrf)}${hidden('approval_id', a.id)}
<label for="edit-subject">Subject</label><input id="edit-subject" name="subject" type="text" value="${esc(f.subject)}" maxlength="998">
<label for="edit-to">To (comma-separated)</label><input id="edit-to" name="to" type="text" value="${esc(f.to)}">
<label for="edit-cc">Cc (comma-separated)</label><input id="edit-cc" name="cc" type="text" value="${esc(f.cc)}">
<label for="edit-text">Text</label><textarea id="edit-text" name="text" rows="12">${esc(f.text)}</textarea>
<label for="edit-html">HTML</label><textarea id="edit-html" name="html" rows="6">${esc(f.html)}</textarea>
<button type="submit" id="preview-edits">Scan and show the changes</button></form></details>${preview}</section>`;
};

export const reviewPage = (viewer: NonNullable<Viewer>, d: ReviewData) => {
  const e = d.email;
  const a = e.approval;
  const findings = e.phi_findings;
  const headers = `<dl class="headers" id="headers"><dt>From</dt><dd>${esc(e.from_name ? `${e.from_name} <${e.from}>` : e.from)}</dd>
<dt>To</dt><dd id="to">${esc(e.to.join(', '))}</dd>${e.cc.length ? `<dt>Cc</dt><dd>${esc(e.cc.join(', '))}</dd>` : ''}
<dt>Subject</dt><dd id="subject">${markedText(e.subject, findings, 'subject', 'finding')}</dd><dt>Date</dt><dd>${esc(e.created_at)}</dd>
<dt>Status</dt><dd id="status">${esc(e.status)}</dd></dl>`;
  const approval = a
    ? `<section id="approval" aria-labelledby="approval-h"><h2 id="approval-h">Why it is held</h2><ul>${a.reasons.map((r) => `<li>${esc(reasonText(r))}</li>`).join('')}</ul>
<p>Approval ${esc(a.status)}; expires ${esc(a.expires_at)}.</p>${a.signature ? `<p id="signature">Signed by ${esc(a.signature.signer_name)} at ${esc(a.signature.signed_at)}: ${esc(a.signature.meaning)}.</p>` : ''}${a.comment ? `<p>Comment: ${esc(a.comment)}</p>` : ''}</section>`
    : '';
  const revision = e.revision
    ? `<section id="revision" aria-labelledby="revision-h"><h2 id="revision-h">Revision of a rejected message</h2><p>The reviewer's comment on <a href="/console/review/${esc(e.revision.of_email_id)}">the rejected version</a>: <q id="rejection-comment">${esc(e.revision.rejection_comment ?? '')}</q></p>${e.revision.text_diff ? `<pre id="revision-diff">${esc(e.revision.text_diff)}</pre>` : ''}</section>`
    : '';
  const body = `<section id="body" aria-labelledby="body-h"><h2 id="body-h">Message</h2>
<h3>PHI findings (${findings.length}${e.phi_sensitivity ? `, sensitivity ${esc(e.phi_sensitivity)}` : ''})</h3>${findingsList(findings, 'finding', 'findings')}
<h3>Text</h3><pre id="text" class="body">${e.text === null ? '(no text part)' : markedText(e.text, findings, 'text', 'finding')}</pre>
${e.html === null ? '' : `<h3>HTML, as rendered (scripts, remote content and links disabled)</h3><iframe id="html-frame" title="The message's HTML part, rendered without scripts or remote content" sandbox="" referrerpolicy="no-referrer" srcdoc="${esc(frameDocument(e.html))}"></iframe>`}
<h3>Attachments</h3>${
    e.attachments.length === 0
      ? '<p>None.</p>'
      : `<ul id="attachments">${e.attachments
          .map(
            (x) =>
              `<li>${esc(x.filename)} (${esc(x.content_type)}, ${x.size} bytes)${
                d.previews.has(x.index)
                  ? `<pre class="attachment-preview">${markedText(
                      d.previews.get(x.index)!,
                      findings.filter((f) => f.attachment === x.index).map((f) => ({ ...f, attachment: undefined, field: 'attachment' })),
                      'attachment',
                      `att-${x.index}`,
                    )}</pre>`
                  : ''
              }</li>`,
          )
          .join('')}</ul>`
  }</section>`;
  const consents = `<section id="consents" aria-labelledby="consents-h"><h2 id="consents-h">Recipients' consent</h2><table><thead><tr><th scope="col">Address</th><th scope="col">Consent</th><th scope="col">Categories</th></tr></thead><tbody>${d.consents
    .map(
      (c) =>
        `<tr><td>${esc(c.address)}</td><td data-consent="${esc(c.status)}">${esc(c.status)}</td><td>${esc(c.categories.join(', ') || '-')}</td></tr>`,
    )
    .join('')}</tbody></table></section>`;
  const thread =
    d.thread.length > 1
      ? `<section id="thread" aria-labelledby="thread-h"><h2 id="thread-h">Thread</h2><ol>${d.thread
          .map(
            (m) =>
              `<li>${m.current ? '<strong>this message</strong>: ' : ''}<a href="/console/review/${esc(m.id)}">${esc(m.subject ?? '(held)')}</a> · ${esc(m.from)} · ${esc(m.created_at)} · ${esc(m.status)}</li>`,
          )
          .join('')}</ol></section>`
      : '';
  return layout(
    e.subject || '(no subject)',
    `${errorLine(d.error)}${d.done ? `<p class="done" role="status" id="done">${esc(d.done)}</p>` : ''}<p><a href="/console/queue">Back to the queue</a></p>${headers}${approval}${revision}${body}${consents}${thread}${decisionForms(viewer.csrf, d)}`,
    viewer,
    { script: 'review.js' },
  );
};

export type AuditRow = {
  seq: number;
  at: string;
  action: string;
  actor: { type: string; id: string | null };
  target: { type: string; id: string } | null;
  outcome: string;
};

export const auditPage = (
  viewer: NonNullable<Viewer>,
  d: { events: AuditRow[]; next: string | null; filters: Record<string, string | undefined> },
) => {
  const f = d.filters;
  const href = (extra: Record<string, string>) => {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries({ ...f, ...extra })) if (v) q.set(k, v);
    return `/console/audit?${q}`;
  };
  const input = (name: string, label: string, type = 'text') =>
    `<label for="a-${name}">${esc(label)}</label><input id="a-${name}" name="${name}" type="${type}" value="${esc(f[name] ?? '')}">`;
  return layout(
    'Audit trail',
    `<form method="get" action="/console/audit" class="filters" aria-label="Filter events">${input('actor', 'Actor id')}${input('action', 'Action')}${input('target', 'Target id')}${input('since', 'Since (ISO time)')}${input('until', 'Until (ISO time)')}<button type="submit">Apply</button></form>
<table id="audit-table"><caption>Events, oldest first</caption><thead><tr><th scope="col">#</th><th scope="col">Time</th><th scope="col">Action</th><th scope="col">Actor</th><th scope="col">Target</th><th scope="col">Outcome</th></tr></thead><tbody>${d.events
      .map(
        (e) =>
          `<tr data-seq="${e.seq}"><td><a href="/console/audit/${e.seq}">${e.seq}</a></td><td>${esc(e.at)}</td><td>${esc(e.action)}</td><td>${esc(e.actor.type)} ${esc(e.actor.id ?? '')}</td><td>${e.target ? `${esc(e.target.type)} ${esc(e.target.id)}` : '-'}</td><td>${esc(e.outcome)}</td></tr>`,
      )
      .join('')}</tbody></table>
<nav aria-label="Pages" class="pager">${d.next ? `<a id="next-page" href="${esc(href({ cursor: d.next }))}">Next page</a>` : ''}</nav>`,
    viewer,
  );
};

export const auditEventPage = (viewer: NonNullable<Viewer>, e: AuditRow & Record<string, unknown>) =>
  layout(
    `Audit event ${e.seq}`,
    `<p><a href="/console/audit">Back to the audit trail</a></p>
<dl class="headers"><dt>Action</dt><dd>${esc(e.action)}</dd><dt>Time</dt><dd>${esc(e.at)}</dd><dt>Actor</dt><dd>${esc(e.actor.type)} ${esc(e.actor.id ?? '')}</dd><dt>Target</dt><dd>${e.target ? `${esc(e.target.type)} ${esc(e.target.id)}` : '-'}</dd><dt>Outcome</dt><dd>${esc(e.outcome)}</dd></dl>
<h2>Detail</h2><pre id="event-detail">${esc(JSON.stringify(e, null, 2))}</pre>
<h2>Inclusion in the signed log</h2><p>The check runs in this browser (SHA-256 and Ed25519 through WebCrypto): it recomputes the event's hash from its fields, its RFC 6962 inclusion proof up to the signed checkpoint's root, and the checkpoint's signature.</p>
<button type="button" id="verify" data-seq="${e.seq}">Verify</button><p id="verify-result" role="status" aria-live="polite"></p>`,
    viewer,
    { script: 'audit-verify.js' },
  );
