import { createPublicKey } from 'node:crypto';
import { type ChainedEvent, type EventRow, rowOfChained, GENESIS_HASH } from './audit-chain.js';
import { type NoteVerifier, openNote, parseCheckpointText, parseVerifierKey, rawPublicKey, verifierKey } from './signed-note.js';
import {
  type Boundary,
  type CheckpointRoot,
  checkBoundary,
  createChainVerifier,
  type StartPoint,
  type VerifyProblem,
  type VerifyReport,
} from './audit-chain-verifier.js';

// Verification of an export file (JSONL) with nothing but its lines and a public key: no store involved.

/** One line of an export file (JSONL), see audit-export.ts. */
export type ExportEvent = ChainedEvent & { type: 'event'; prev_hash: string; hash: string };

export const rowOfExportEvent = (e: ExportEvent): EventRow => rowOfChained(e, e.prev_hash, e.hash);

/** Accepts a C2SP verifier key string or a JWKS document (its Ed25519 keys), for a given origin. */
export const verifiersFrom = (keyText: string, origin: string): NoteVerifier[] => {
  const t = keyText.trim();
  if (t.startsWith('{')) {
    const jwks = JSON.parse(t) as { keys?: { kty?: string; crv?: string; x?: string }[] };
    return (jwks.keys ?? [])
      .filter((k) => k.kty === 'OKP' && k.crv === 'Ed25519' && k.x)
      .map((k) =>
        parseVerifierKey(
          verifierKey(origin, rawPublicKey(createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: k.x! }, format: 'jwk' }))),
        ),
      );
  }
  return [parseVerifierKey(t)];
};

/**
 * Verifies an export file with nothing but its lines and a public key
 * (`key`: verifier key string or JWKS). Without `key`, the key named in the
 * file is used and the report says so (a forger could replace both).
 * `open` is called twice: once for the header and checkpoints, once to
 * stream the events, so memory stays O(log n).
 */
export const verifyExportLines = async (
  open: () => AsyncIterable<string> | Iterable<string>,
  key?: string,
): Promise<VerifyReport & { key_pinned: boolean }> => {
  type Header = { format?: string; origin?: string; verifier_key?: string; prefix?: Boundary };
  let header: Header | null = null;
  const problems: VerifyProblem[] = [];
  const checkpoints: { tree_size: number; root_hash: string; note: string }[] = [];
  let start: StartPoint = { size: 0, compact: [], anchor: GENESIS_HASH };
  let lineNo = 0;
  for await (const raw of open()) {
    lineNo++;
    // Cheap pre-filter: events are most lines and are parsed in the second pass.
    if (!raw.startsWith('{"type":"header"') && !raw.startsWith('{"type":"checkpoint"')) continue;
    try {
      const obj = JSON.parse(raw) as { type: string };
      if (obj.type === 'header' && !header) header = obj as Header;
      else if (obj.type === 'checkpoint') checkpoints.push(obj as unknown as (typeof checkpoints)[number]);
    } catch {
      problems.push({ code: 'malformed_line', message: `line ${lineNo} is not JSON` });
    }
  }
  if (!header?.prefix) problems.push({ code: 'no_header', message: 'the file has no header line' });
  else {
    try {
      start = checkBoundary(header.prefix);
    } catch (e) {
      problems.push({ code: 'boundary_invalid', message: `export prefix does not verify: ${(e as Error).message}` });
    }
  }
  const origin = header?.origin ?? '';
  let verifiers: NoteVerifier[] = [];
  try {
    verifiers = key ? verifiersFrom(key, origin) : header?.verifier_key ? [parseVerifierKey(header.verifier_key)] : [];
  } catch (e) {
    problems.push({ code: 'bad_key', message: `public key: ${(e as Error).message}` });
  }
  let signatures = 0;
  const good: CheckpointRoot[] = [];
  for (const cp of checkpoints) {
    let okSig = false;
    for (const ver of verifiers) {
      try {
        const { text } = openNote(cp.note, ver);
        const body = parseCheckpointText(text);
        if (body.origin !== origin || body.size !== cp.tree_size || body.root.toString('hex') !== cp.root_hash)
          throw new Error('checkpoint fields differ from the signed note');
        okSig = true;
        break;
      } catch {
        /* try the next key */
      }
    }
    if (okSig) {
      signatures++;
      good.push({ tree_size: cp.tree_size, root_hash: cp.root_hash });
    } else
      problems.push({
        code: 'bad_checkpoint',
        tree_size: cp.tree_size,
        message: `checkpoint at size ${cp.tree_size} is not signed by the given key`,
      });
  }
  const v = createChainVerifier(start, good);
  if (problems.length === 0) {
    lineNo = 0;
    for await (const raw of open()) {
      lineNo++;
      if (!raw.startsWith('{"type":"event"')) continue;
      let row: EventRow;
      try {
        row = rowOfExportEvent(JSON.parse(raw) as ExportEvent);
      } catch {
        v.fail({ code: 'malformed_line', message: `line ${lineNo} is not an event` }, null);
        break;
      }
      if (!v.push(row)) break;
    }
  }
  const lastSigned = good.length ? Math.max(...good.map((c) => c.tree_size)) : 0;
  const f = v.finish(lastSigned);
  if (f.problems.length === 0 && problems.length === 0 && lastSigned !== f.last) {
    problems.push({ code: 'unsigned_tail', seq: lastSigned + 1, message: `no signed checkpoint covers seq ${lastSigned + 1}..${f.last}` });
  }
  const all = [...problems, ...f.problems];
  const bad = [f.firstBad, ...problems.map((p) => p.seq ?? null)].filter((x): x is number => x !== null);
  return {
    ok: all.length === 0,
    source: 'file',
    key_pinned: !!key,
    events_checked: f.checked,
    first_seq: f.firstSeq,
    last_seq: f.last,
    tree_size: f.treeSize,
    root_hash: f.root,
    purged_through: start.size,
    checkpoints: { total: checkpoints.length, roots_checked: f.rootsChecked, signatures_checked: signatures, before_retention: 0 },
    first_bad_seq: bad.length ? Math.min(...bad) : null,
    problems: all,
    threads: 1,
  };
};
