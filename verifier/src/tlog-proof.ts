/** c2sp.org/tlog-proof@v1: the text format of an offline-verifiable inclusion proof. */

export const TLOG_PROOF_HEADER = 'c2sp.org/tlog-proof@v1';

export type TlogProof = { extra: Buffer | null; index: number; proof: Buffer[]; checkpoint: string };

const B64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** Parses a proof; throws with a short reason when it does not follow the format. */
export const parseTlogProof = (text: string): TlogProof => {
  const lines = text.split('\n');
  let i = 0;
  if (lines[i++] !== TLOG_PROOF_HEADER) throw new Error('not a c2sp.org/tlog-proof@v1');
  let extra: Buffer | null = null;
  if (lines[i]?.startsWith('extra ')) {
    const b = lines[i++]!.slice(6);
    if (!B64.test(b)) throw new Error('malformed extra line');
    extra = Buffer.from(b, 'base64');
  }
  const m = /^index (0|[1-9][0-9]*)$/.exec(lines[i++] ?? '');
  if (!m) throw new Error('malformed index line');
  const index = Number(m[1]);
  if (!Number.isSafeInteger(index)) throw new Error('index out of range');
  const proof: Buffer[] = [];
  while (i < lines.length && lines[i] !== '') {
    const l = lines[i++]!;
    const h = Buffer.from(l, 'base64');
    if (!B64.test(l) || h.length !== 32) throw new Error('malformed proof hash');
    proof.push(h);
  }
  if (lines[i++] !== '') throw new Error('missing checkpoint');
  const checkpoint = lines.slice(i).join('\n');
  if (!checkpoint) throw new Error('missing checkpoint');
  return { extra, index, proof, checkpoint };
};

export const formatTlogProof = (p: TlogProof): string =>
  [
    TLOG_PROOF_HEADER,
    ...(p.extra ? [`extra ${p.extra.toString('base64')}`] : []),
    `index ${p.index}`,
    ...p.proof.map((h) => h.toString('base64')),
    '',
    p.checkpoint,
  ].join('\n');
