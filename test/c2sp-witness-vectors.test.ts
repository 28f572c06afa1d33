import { createHash, generateKeyPairSync, sign } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  cosignatureTime,
  formatTlogProof,
  keyIdOf,
  parseNote,
  parseTlogProof,
  parseVkey,
  rootFromInclusion,
} from '../verifier/src/index.js';
import { readVector, vectorJsonFilesUnder } from './support/vectors.js';
import { consistent, parseAddCheckpoint, startWitness, type TestWitness } from './support/tlog-witness.js';

type ConsistencyVector = { size1: number; size2: number; root1: string; root2: string; proof: string[] | null; wantErr: boolean };
type InclusionVector = { leafIdx: number; treeSize: number; root: string; leafHash: string; proof: string[] | null; wantErr: boolean };
const b64 = (s: string) => Buffer.from(s, 'base64');
const sha256 = (...p: Buffer[]) => p.reduce((h, x) => h.update(x), createHash('sha256')).digest();

/** RFC 6962 2.1: MTH and SUBPROOF, the textbook recursion, to give the witness real proofs. */
const mth = (l: Buffer[]): Buffer => {
  if (l.length === 1) return sha256(Buffer.from([0]), l[0]!);
  let k = 1;
  while (k * 2 < l.length) k *= 2;
  return sha256(Buffer.from([1]), mth(l.slice(0, k)), mth(l.slice(k)));
};
const subproof = (m: number, l: Buffer[], b: boolean): Buffer[] => {
  const n = l.length;
  if (m === n) return b ? [] : [mth(l)];
  let k = 1;
  while (k * 2 < n) k *= 2;
  return m <= k ? [...subproof(m, l.slice(0, k), b), mth(l.slice(k))] : [...subproof(m - k, l.slice(k), false), mth(l.slice(0, k))];
};

describe('C2SP examples and transparency-dev vectors for the witness and the verifier', () => {
  it('parses the tlog-witness add-checkpoint example request', () => {
    const r = parseAddCheckpoint(readVector('c2sp/tlog-witness-add-checkpoint.txt').toString('utf8'));
    expect(r).toMatchObject({ old: 20852014, origin: 'example.com/behind-the-sofa', size: 20852163 });
    expect(r.proof).toHaveLength(4);
    expect(r.sigs.map((s) => [s.name, s.sig.length])).toEqual([
      ['example.com/behind-the-sofa', 68],
      ['example.com/behind-the-sofa', 68],
    ]);
    expect(r.root.toString('base64')).toBe('CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=');
  });

  it('reads the tlog-cosignature example: key ID, the timestamp of its signed message, a 64-byte signature', () => {
    const note = parseNote(readVector('c2sp/tlog-cosignature-example.txt').toString('utf8'));
    const cosig = note.signatures.find((s) => s.name === 'witness.example.com/w1')!;
    expect(cosig.sig.length).toBe(4 + 8 + 64);
    const time = cosig.sig.readBigUInt64BE(4);
    // The spec's signed message for this cosignature is "cosignature/v1\ntime <t>\n" followed by the note text.
    expect(`cosignature/v1\ntime ${time}\n${note.text}`).toBe(readVector('c2sp/tlog-cosignature-signed-message.txt').toString('utf8'));
  });

  it('parses and re-serialises the tlog-proof example byte for byte', () => {
    const text = readVector('c2sp/tlog-proof-example.txt').toString('utf8');
    const p = parseTlogProof(text);
    expect(p.index).toBe(73894);
    expect(p.proof).toHaveLength(5);
    expect(p.checkpoint.startsWith('example.com/fancylog\n109482\n')).toBe(true);
    expect(formatTlogProof(p)).toBe(text);
    expect(() => parseTlogProof(text.replace('index 73894', 'index 073894'))).toThrow();
    expect(() => parseTlogProof(text.replace('c2sp.org/tlog-proof@v1', 'c2sp.org/tlog-proof@v2'))).toThrow();
  });

  it("agrees with every transparency-dev consistency vector (the witness's RFC 9162 check)", () => {
    const vectors = vectorJsonFilesUnder<ConsistencyVector>('merkle/testdata/consistency/');
    expect(vectors.length).toBeGreaterThan(50);
    for (const [file, v] of vectors) {
      const root1 = b64(v.root1);
      const root2 = b64(v.root2);
      // As src/audit/merkle.test.ts: a "root" that is not 32 bytes is refused even where the Go verifier accepts it.
      const malformed = root1.length !== 32 || root2.length !== 32;
      const ok = !malformed && consistent(v.size1, v.size2, root1, root2, (v.proof ?? []).map(b64));
      expect(ok, file).toBe(!v.wantErr && !malformed);
    }
  });

  it("agrees with every transparency-dev inclusion vector (the verifier's RFC 6962 check)", () => {
    const vectors = vectorJsonFilesUnder<InclusionVector>('merkle/testdata/inclusion/');
    expect(vectors.length).toBeGreaterThan(40);
    for (const [file, v] of vectors) {
      const root = b64(v.root);
      const got = rootFromInclusion(v.leafIdx, v.treeSize, b64(v.leafHash), (v.proof ?? []).map(b64));
      expect(!!got && root.length === 32 && got.equals(root), file).toBe(!v.wantErr);
    }
  });
});

describe('the test witness follows c2sp.org/tlog-witness', () => {
  const origin = 'log.test/mailward-audit';
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const pub = (publicKey.export({ type: 'spki', format: 'der' }) as Buffer).subarray(-32);
  const logId = keyIdOf(origin, 0x01, pub);
  const logVkey = `${origin}+${logId.toString('hex')}+${Buffer.concat([Buffer.from([1]), pub]).toString('base64')}`;
  const leaves = Array.from({ length: 9 }, (_, i) => Buffer.from(`leaf ${i}`));
  let w: TestWitness;
  beforeAll(async () => {
    w = await startWitness(
      'witness.test/spec',
      () => new Map([[origin, [logVkey]]]),
      () => 1_700_000_000,
    );
  });
  afterAll(() => w.close());

  const note = (size: number, root = mth(leaves.slice(0, size)), name = origin) => {
    const text = `${name}\n${size}\n${root.toString('base64')}\n`;
    return `${text}\n\u2014 ${name} ${Buffer.concat([logId, sign(null, Buffer.from(text), privateKey)]).toString('base64')}\n`;
  };
  const add = async (old: number, proof: Buffer[], n: string) => {
    const res = await fetch(`${w.url}/add-checkpoint`, {
      method: 'POST',
      body: `old ${old}\n${proof.map((p) => `${p.toString('base64')}\n`).join('')}\n${n}`,
    });
    return { status: res.status, type: res.headers.get('content-type'), text: await res.text() };
  };

  it('answers 404, 403, 400, 409 and 422 as the spec says, and cosigns a consistent checkpoint', async () => {
    expect((await add(0, [], note(3, mth(leaves.slice(0, 3)), 'other.test/log'))).status).toBe(404);
    expect((await add(0, [], note(3).replace(/ [A-Za-z0-9+/=]+\n$/, ` ${Buffer.alloc(68).toString('base64')}\n`))).status).toBe(403);
    expect((await add(5, [], note(3))).status).toBe(400);

    const first = await add(0, [], note(3));
    expect(first.status).toBe(200);
    const key = parseVkey(w.vkey);
    expect(cosignatureTime(parseNote(note(3) + first.text), key)).toBe(1_700_000_000);

    const stale = await add(0, [], note(5));
    expect(stale).toMatchObject({ status: 409, type: 'text/x.tlog.size', text: '3\n' });
    const wrong = subproof(3, leaves.slice(0, 7), true).map((h, i) => (i === 0 ? sha256(h) : h));
    expect((await add(3, wrong, note(7))).status).toBe(422);
    const good = await add(3, subproof(3, leaves.slice(0, 7), true), note(7));
    expect(good.status).toBe(200);
    expect(cosignatureTime(parseNote(note(7) + good.text), key)).toBe(1_700_000_000);
    // Same size, another root: a fork, 409.
    expect((await add(7, [], note(7, sha256(Buffer.from('fork'))))).status).toBe(409);
    expect(w.state.get(origin)?.size).toBe(7);
  });
});
