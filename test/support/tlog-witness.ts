import { createHash, createPublicKey, generateKeyPairSync, type KeyObject, sign, verify } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A transparency-log witness for the tests, written from c2sp.org/tlog-witness,
 * c2sp.org/tlog-cosignature and c2sp.org/signed-note alone (it imports nothing
 * of the server), so the server's submissions are checked by a second reading
 * of the specs: it verifies the log's signature, the old size and the RFC 6962
 * consistency proof against the checkpoint it last cosigned, answers 404 / 403
 * / 400 / 409 (with text/x.tlog.size) / 422 as the spec says, persists its state
 * before answering, and cosigns with an Ed25519 cosignature/v1 (type 0x04).
 */

const SPKI_ED25519 = Buffer.from('302a300506032b6570032100', 'hex');
const sha256 = (...parts: Uint8Array[]) => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
};
const rawPub = (k: KeyObject) =>
  ((k.type === 'public' ? k : createPublicKey(k)).export({ type: 'spki', format: 'der' }) as Buffer).subarray(-32);
const keyId = (name: string, type: number, pub: Buffer) => sha256(Buffer.from(`${name}\n`), Buffer.from([type]), pub).subarray(0, 4);
const node = (l: Buffer, r: Buffer) => sha256(Buffer.from([1]), l, r);

/** RFC 9162 2.1.4.2: verifies a consistency proof from (size1, root1) to (size2, root2). */
export const consistent = (size1: number, size2: number, root1: Buffer, root2: Buffer, proof: Buffer[]): boolean => {
  if (size1 > size2 || proof.some((p) => p.length !== 32)) return false;
  if (size1 === size2) return proof.length === 0 && root1.equals(root2);
  if (size1 === 0) return proof.length === 0;
  if (proof.length === 0) return false;
  let path = [...proof];
  // If size1 is an exact power of two, prepend root1 to the path.
  if ((size1 & (size1 - 1)) === 0) path = [root1, ...path];
  if (path.length === 0) return false;
  let fn = size1 - 1;
  let sn = size2 - 1;
  while (fn % 2 === 1) {
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  let fr = path[0]!;
  let sr = path[0]!;
  for (const c of path.slice(1)) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      fr = node(c, fr);
      sr = node(c, sr);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      sr = node(sr, c);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return fr.equals(root1) && sr.equals(root2) && sn === 0;
};

/** tlog-witness add-checkpoint request body: old size, proof lines, blank line, checkpoint. Throws on a malformed body. */
export const parseAddCheckpoint = (body: string) => {
  const lines = body.split('\n');
  const m = /^old (0|[1-9][0-9]*)$/.exec(lines[0] ?? '');
  if (!m) throw new Error('bad old line');
  const proof: Buffer[] = [];
  let i = 1;
  for (; i < lines.length && lines[i] !== ''; i++) {
    const h = Buffer.from(lines[i]!, 'base64');
    if (h.length !== 32) throw new Error('bad proof line');
    proof.push(h);
  }
  if (lines[i] !== '' || proof.length > 63) throw new Error('bad proof');
  const note = lines.slice(i + 1).join('\n');
  const split = note.lastIndexOf('\n\n');
  if (split < 0) throw new Error('bad note');
  const text = note.slice(0, split + 1);
  const [origin, size, root] = text.split('\n');
  if (!origin || !size || !/^(0|[1-9][0-9]*)$/.test(size) || !root || Buffer.from(root, 'base64').length !== 32)
    throw new Error('bad checkpoint');
  const sigs = note
    .slice(split + 2)
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const s = /^\u2014 (\S+) (\S+)$/.exec(l);
      if (!s) throw new Error('bad signature line');
      return { name: s[1]!, sig: Buffer.from(s[2]!, 'base64') };
    });
  return { old: Number(m[1]), proof, note, text, origin, size: Number(size), root: Buffer.from(root, 'base64'), sigs };
};

export type TestWitness = {
  name: string;
  url: string;
  /** cosignature/v1 verifier key: `<name>+<id>+base64(0x04 || key)`. */
  vkey: string;
  requests: { status: number; old: number; size: number }[];
  /** The witness's stored view of a log (what it last cosigned). */
  state: Map<string, { size: number; root: Buffer }>;
  close: () => Promise<void>;
};

/** Starts a witness on a loopback port that trusts `logs` (origin -> Ed25519 note verifier keys, type 0x01). */
export const startWitness = async (
  name: string,
  logs: () => Map<string, string[]>,
  now = () => Math.floor(Date.now() / 1000),
): Promise<TestWitness> => {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const pub = rawPub(publicKey);
  const myId = keyId(name, 0x04, pub);
  const state = new Map<string, { size: number; root: Buffer }>();
  const requests: TestWitness['requests'] = [];
  let lock = Promise.resolve();

  const handle = (body: string): { status: number; type?: string; text: string } => {
    let r: ReturnType<typeof parseAddCheckpoint>;
    try {
      r = parseAddCheckpoint(body);
    } catch {
      return { status: 400, text: 'malformed\n' };
    }
    const trusted = logs().get(r.origin);
    if (!trusted) return { status: 404, text: 'unknown origin\n' };
    // Signatures by unknown keys are ignored; at least one trusted key must verify.
    const ok = trusted.some((vk) => {
      const parts = vk.split('+');
      const raw = Buffer.from(parts.slice(2).join('+'), 'base64');
      const key = createPublicKey({ key: Buffer.concat([SPKI_ED25519, raw.subarray(1)]), format: 'der', type: 'spki' });
      const id = Buffer.from(parts[1]!, 'hex');
      return r.sigs.some(
        (s) => s.name === parts[0] && s.sig.subarray(0, 4).equals(id) && verify(null, Buffer.from(r.text), key, s.sig.subarray(4)),
      );
    });
    if (!ok) return { status: 403, text: 'no trusted signature\n' };
    if (r.old > r.size) return { status: 400, text: 'old size above checkpoint size\n' };
    const known = state.get(r.origin) ?? { size: 0, root: Buffer.alloc(0) };
    if (r.old !== known.size) return { status: 409, type: 'text/x.tlog.size', text: `${known.size}\n` };
    if (r.old === r.size) {
      if (!r.root.equals(known.root)) return { status: 409, type: 'text/x.tlog.size', text: `${known.size}\n` };
    } else if (r.old === 0) {
      if (r.proof.length > 0) return { status: 400, text: 'proof must be empty from size 0\n' };
    } else if (!consistent(r.old, r.size, known.root, r.root, r.proof)) {
      return { status: 422, text: 'consistency proof does not verify\n' };
    }
    // Persisted before answering; requests are serialised, so check-and-update is atomic.
    state.set(r.origin, { size: r.size, root: r.root });
    const t = now();
    const ts = Buffer.alloc(8);
    ts.writeBigUInt64BE(BigInt(t));
    const sig = sign(null, Buffer.from(`cosignature/v1\ntime ${t}\n${r.text}`), privateKey);
    return { status: 200, text: `\u2014 ${name} ${Buffer.concat([myId, ts, sig]).toString('base64')}\n` };
  };

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      lock = lock.then(() => {
        if (req.method !== 'POST' || req.url !== '/add-checkpoint') {
          res.writeHead(404).end();
          return;
        }
        const body = Buffer.concat(chunks).toString('utf8');
        const out = handle(body);
        let old = -1;
        let size = -1;
        try {
          const p = parseAddCheckpoint(body);
          old = p.old;
          size = p.size;
        } catch {
          /* recorded as -1 */
        }
        requests.push({ status: out.status, old, size });
        res.writeHead(out.status, { 'content-type': out.type ?? 'text/plain; charset=utf-8' }).end(out.text);
      });
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    name,
    url: `http://127.0.0.1:${port}`,
    vkey: `${name}+${myId.toString('hex')}+${Buffer.concat([Buffer.from([0x04]), pub]).toString('base64')}`,
    requests,
    state,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
};
