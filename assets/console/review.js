// Mailward console: the queue's live update and the review page's keyboard navigation (CSP script-src 'self').
(() => {
  // The queue: an EventSource on /console/queue/stream says when approvals opened or closed; the page then
  // fetches its own rows (the same filters, an audited read) and swaps the table and the counts.
  const table = document.getElementById('queue-table');
  if (table && window.EventSource) {
    const status = document.getElementById('live-status');
    let busy = false;
    const refresh = async () => {
      if (busy) return;
      busy = true;
      try {
        const url = new URL(window.location.href);
        url.searchParams.set('part', 'rows');
        const r = await fetch(url, { credentials: 'same-origin', headers: { accept: 'application/json' } });
        if (!r.ok) return;
        const parts = await r.json();
        const doc = new DOMParser().parseFromString(`<div>${parts.counts}${parts.table}</div>`, 'text/html');
        const counts = doc.getElementById('queue-counts');
        const next = doc.getElementById('queue-table');
        if (counts) document.getElementById('queue-counts')?.replaceWith(counts);
        if (next) document.getElementById('queue-table')?.replaceWith(next);
        if (status) status.textContent = `Queue updated at ${new Date().toLocaleTimeString()}.`;
      } finally {
        busy = false;
      }
    };
    const es = new EventSource('/console/queue/stream');
    es.addEventListener('changed', refresh);
  }

  // The review page: n / p (or j / k) move between PHI findings; each finding's link focuses its mark.
  const marks = () => Array.from(document.querySelectorAll('mark[id^="finding-"], mark[id^="edit-finding-"]'));
  let at = -1;
  const focus = (i) => {
    const list = marks();
    if (list.length === 0) return;
    at = (i + list.length) % list.length;
    list[at].focus();
    list[at].scrollIntoView({ block: 'center' });
  };
  document.addEventListener('keydown', (e) => {
    const t = e.target;
    if (t instanceof HTMLInputElement || t instanceof HTMLTextAreaElement || t instanceof HTMLSelectElement) return;
    if (e.key === 'n' || e.key === 'j') focus(at + 1);
    else if (e.key === 'p' || e.key === 'k') focus(at - 1);
  });
  for (const a of document.querySelectorAll('a[data-finding]')) {
    a.addEventListener('click', (e) => {
      const target = document.getElementById(a.getAttribute('href').slice(1));
      if (!target) return;
      e.preventDefault();
      target.focus();
      target.scrollIntoView({ block: 'center' });
      at = marks().indexOf(target);
    });
  }
})();
