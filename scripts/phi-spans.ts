/**
 * The span findings, pinned: for every message of the synthetic span corpus
 * (test/fixtures/phi-corpus) and of the message corpus (eval/phi-messages/*.jsonl
 * and developer/*.jsonl), a SHA-256 of every finding the span scanner reports
 * (type, start, end, confidence, detector; field and attachment where the message
 * scan sets them), over several readings: scanText with and without the
 * organisation's settings, and scanMessage of subject + text + the text as HTML.
 * A change made for speed must leave all of them unchanged: `--check` compares
 * against the committed snapshot (test/phi-spans.json). Only ids and digests are
 * stored, never the text. The message-level decision is pinned apart
 * (scripts/phi-decisions.ts).
 *
 * The snapshot changes only when what the scanner finds changes (a word list, a
 * pattern): then `--write` records it again, and the commit says why.
 *
 *   node --import tsx scripts/phi-spans.ts --check   # exit 1 on any difference
 *   node --import tsx scripts/phi-spans.ts --write   # record the current findings
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { loadMessageFile } from '../src/phi/message-eval.js';
import { loadCorpus } from '../src/phi/phi-eval.js';
import { scanMessage, scanText } from '../src/phi/phi-scanner.js';
import type { Finding, ScanOptions } from '../src/phi/phi-types.js';

const root = path.join(import.meta.dirname, '..');
export const SPAN_SNAPSHOT = path.join(root, 'test', 'phi-spans.json');

export type SpanDigest = { key: string; count: number; digest: string };

const corpusFiles = () => {
  const dir = path.join(root, 'eval', 'phi-messages');
  const list = (d: string) =>
    fs.existsSync(d)
      ? fs
          .readdirSync(d)
          .filter((f) => f.endsWith('.jsonl'))
          .sort()
          .map((f) => path.join(d, f))
      : [];
  return [...list(dir), ...list(path.join(dir, 'developer'))];
};

const row = (f: Finding) => [f.type, f.start, f.end, f.confidence, f.detector, f.field ?? null, f.attachment ?? null];

/** Every reading of one message, digested together. */
const digestOf = (subject: string, text: string, options: ScanOptions): { count: number; digest: string } => {
  const readings = [
    scanText(text, options).findings,
    scanText(text).findings,
    scanMessage({ subject, text, html: `<p>${text.replace(/\n/g, '<br>\n')}</p>` }, options).findings,
  ];
  const count = readings.reduce((n, r) => n + r.length, 0);
  const digest = createHash('sha256')
    .update(JSON.stringify(readings.map((r) => r.map(row))))
    .digest('hex')
    .slice(0, 16);
  return { count, digest };
};

/** Every message's span digest, keyed by file and id. */
export const computeSpanDigests = (): SpanDigest[] => {
  const span = loadCorpus(path.join(root, 'test', 'fixtures', 'phi-corpus'));
  const out: SpanDigest[] = [];
  for (const m of span.messages) out.push({ key: `span/${m.id}`, ...digestOf('Message', m.text, span.options) });
  for (const file of corpusFiles()) {
    const name = path.relative(path.join(root, 'eval', 'phi-messages'), file).replace(/\.jsonl$/, '');
    for (const m of loadMessageFile(file)) out.push({ key: `${name}/${m.id}`, ...digestOf(m.subject ?? '', m.text, span.options) });
  }
  return out;
};

/** The differences between the snapshot and the current findings (empty when none). */
export const compareSpanDigests = (expected: readonly SpanDigest[], actual: readonly SpanDigest[]): string[] => {
  const diffs: string[] = [];
  const now = new Map(actual.map((d) => [d.key, d]));
  for (const e of expected) {
    const a = now.get(e.key);
    if (!a) diffs.push(`${e.key}: missing`);
    else if (a.count !== e.count || a.digest !== e.digest) diffs.push(`${e.key}: findings changed (${e.count} -> ${a.count})`);
    now.delete(e.key);
  }
  for (const k of now.keys()) diffs.push(`${k}: not in the snapshot`);
  return diffs;
};

export const readSpanSnapshot = (): SpanDigest[] =>
  (JSON.parse(fs.readFileSync(SPAN_SNAPSHOT, 'utf8')) as { digests: SpanDigest[] }).digests;

if (process.argv[1] && path.resolve(process.argv[1]) === path.resolve(import.meta.filename)) {
  const actual = computeSpanDigests();
  if (process.argv.includes('--write')) {
    // One digest a line, so a rewrite diffs by line.
    const line = (d: SpanDigest) => `    { "key": ${JSON.stringify(d.key)}, "count": ${d.count}, "digest": "${d.digest}" }`;
    const head = `{\n  "format": "mailward-phi-spans/1",\n  "count": ${actual.length},\n  "digests": [\n`;
    fs.writeFileSync(SPAN_SNAPSHOT, `${head}${actual.map(line).join(',\n')}\n  ]\n}\n`);
    console.log(`${actual.length} span digests written to ${path.relative(root, SPAN_SNAPSHOT)}`);
  } else {
    const diffs = compareSpanDigests(readSpanSnapshot(), actual);
    for (const d of diffs.slice(0, 50)) console.log(d);
    console.log(`${actual.length} messages compared, ${diffs.length} differ`);
    if (diffs.length > 0) process.exitCode = 1;
  }
}
