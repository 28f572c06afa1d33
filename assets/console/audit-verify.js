// Mailward console: checks an audit event's inclusion in the signed log in this browser, trusting no
// verdict of the server. WebCrypto only: SHA-256 and Ed25519.
//  1. event hash = SHA-256(prev_hash || RFC 8785 JSON of the event's fields) (the chain's rule)
//  2. RFC 6962 2.1.1: leaf = SHA-256(0x00 || event hash); node = SHA-256(0x01 || left || right); the
//     audit path from leaf index to tree size gives the root
//  3. c2sp.org/tlog-checkpoint: the note's third line is that root (base64), its second the tree size
//  4. c2sp.org/signed-note: the note's Ed25519 signature under the log's verifier key
(() => {
  const button = document.getElementById('verify');
  const out = document.getElementById('verify-result');
  if (!button || !out) return;
  const enc = new TextEncoder();
  const hex = (b) => Array.from(new Uint8Array(b), (x) => x.toString(16).padStart(2, '0')).join('');
  const unhex = (h) => new Uint8Array(h.match(/../g).map((x) => Number.parseInt(x, 16)));
  const b64 = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
  const cat = (...parts) => {
    const n = parts.reduce((a, p) => a + p.length, 0);
    const o = new Uint8Array(n);
    let i = 0;
    for (const p of parts) {
      o.set(p, i);
      i += p.length;
    }
    return o;
  };
  const sha = async (b) => new Uint8Array(await crypto.subtle.digest('SHA-256', b));
  // RFC 8785: members sorted by UTF-16 code units, ECMAScript number and string forms.
  const jcs = (v) => {
    if (v === null || typeof v !== 'object') return JSON.stringify(v);
    if (Array.isArray(v)) return `[${v.map(jcs).join(',')}]`;
    return `{${Object.keys(v)
      .sort()
      .filter((k) => v[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${jcs(v[k])}`)
      .join(',')}}`;
  };
  // RFC 9162 2.1.3.2: the root from a leaf's inclusion path.
  const rootFrom = async (index, size, leaf, path) => {
    let fn = index;
    let sn = size - 1;
    let r = leaf;
    for (const p of path) {
      if (sn === 0) throw new Error('the proof is longer than the tree');
      if (fn % 2 === 1 || fn === sn) {
        r = await sha(cat(new Uint8Array([1]), p, r));
        if (fn % 2 === 0) {
          while (fn % 2 === 0 && fn !== 0) {
            fn >>= 1;
            sn >>= 1;
          }
        }
      } else r = await sha(cat(new Uint8Array([1]), r, p));
      fn >>= 1;
      sn >>= 1;
    }
    if (sn !== 0) throw new Error('the proof is shorter than the tree');
    return r;
  };
  const verifyNote = async (note, vkey) => {
    const [name, keyHex, keyB64] = [vkey.split('+')[0], vkey.split('+')[1], vkey.split('+').slice(2).join('+')];
    const raw = b64(keyB64);
    if (raw.length !== 33 || raw[0] !== 1) throw new Error('the verifier key is not Ed25519');
    const pub = raw.slice(1);
    const id = (await sha(cat(enc.encode(`${name}\n`), new Uint8Array([1]), pub))).slice(0, 4);
    if (hex(id) !== keyHex) throw new Error('the verifier key id does not match its key');
    const split = note.indexOf('\n\n');
    const text = note.slice(0, split + 1);
    const lines = note.slice(split + 2).split('\n').filter((l) => l !== '');
    const key = await crypto.subtle.importKey('raw', pub, { name: 'Ed25519' }, false, ['verify']);
    for (const l of lines) {
      const m = /^\u2014 (\S+) (\S+)$/.exec(l);
      if (!m || m[1] !== name) continue;
      const sig = b64(m[2]);
      if (hex(sig.slice(0, 4)) !== keyHex) continue;
      if (await crypto.subtle.verify({ name: 'Ed25519' }, key, sig.slice(4), enc.encode(text))) return text;
    }
    throw new Error('the checkpoint signature does not verify');
  };
  button.addEventListener('click', async () => {
    out.textContent = 'Checking…';
    out.className = '';
    try {
      const r = await fetch(`/console/audit/${button.dataset.seq}/proof`, { credentials: 'same-origin' });
      if (!r.ok) throw new Error('the proof could not be fetched');
      const p = await r.json();
      const { prev_hash: prev, hash: _stored, ...fields } = p.event;
      const eventHash = await sha(cat(unhex(prev), enc.encode(jcs(fields))));
      const leaf = await sha(cat(new Uint8Array([0]), eventHash));
      const root = await rootFrom(p.leaf_index, p.tree_size, leaf, p.audit_path.map(unhex));
      if (!p.checkpoint) throw new Error('no signed checkpoint covers this event yet');
      const text = await verifyNote(p.checkpoint.note, p.checkpoint.verifier_key);
      const [, size, rootB64] = text.split('\n');
      if (Number(size) !== p.tree_size) throw new Error('the checkpoint is of another tree size');
      if (hex(b64(rootB64)) !== hex(root)) throw new Error("the event's fields do not lead to the signed root: the log was changed");
      out.textContent = `Verified in this browser: event ${p.seq} is in the signed log of ${p.tree_size} events.`;
      out.className = 'ok';
      out.dataset.verdict = 'pass';
    } catch (e) {
      out.textContent = `Verification failed: ${e.message}`;
      out.className = 'error';
      out.dataset.verdict = 'fail';
    }
  });
})();
