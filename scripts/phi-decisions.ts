/**
 * The message-level decision, pinned: for every message of every corpus file
 * (eval/phi-messages/*.jsonl, which since round 5 holds the burnt held-out parts test3a,
 * test3b, test4a and test4b, the developer's untrained supplement eval/phi-messages/developer/*.jsonl,
 * and the synthetic span corpus test/fixtures/phi-corpus), read in
 * several ways (subject + text; the body as HTML; with the organisation's names,
 * contacts and MRN patterns of the span corpus), the hold a monitored mailbox
 * makes, the classifier's probability, and a SHA-256 of everything else the
 * judgement returns (findings, cues, about, disclosures, identifiers, Part 2,
 * sensitivity, the classifier's top features). A change made for speed must leave
 * all of it unchanged: `--check` compares against the committed snapshot
 * (test/phi-decisions.json): same hold, same digest, probability within 1e-9.
 * Only the ids, decisions and digests are stored, never the text.
 *
 * The snapshot changes only with the decision itself (new weights from
 * `npm run train:phi`, a new rule): then `--write` records it again, and the
 * commit says why. Held-out parts are only compared, never scored here.
 *
 *   node --import tsx scripts/phi-decisions.ts --check   # exit 1 on any difference
 *   node --import tsx scripts/phi-decisions.ts --write   # record the current decisions
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { holdsInMonitored, loadMessageFile } from '../src/phi/message-eval.js';
import { type Assessment, assessMessage, type ContextOptions } from '../src/phi/phi-context.js';
import { loadCorpus } from '../src/phi/phi-eval.js';
import type { MessageToScan } from '../src/phi/phi-scanner.js';

const root = path.join(import.meta.dirname, '..');
export const SNAPSHOT = path.join(root, 'test', 'phi-decisions.json');

export type Decision = { key: string; hold: boolean; probability: number; digest: string };

/** The files compared: the corpus's training parts (since round 5 also the burnt held-out parts test3a..test4b), developer/. */
const corpusFiles = () => {
  const dir = path.join(root, 'eval', 'phi-messages');
  const top = fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.jsonl'))
    .sort()
    .map((f) => path.join(dir, f));
  const developer = fs.existsSync(path.join(dir, 'developer'))
    ? fs
        .readdirSync(path.join(dir, 'developer'))
        .filter((f) => f.endsWith('.jsonl'))
        .sort()
        .map((f) => path.join(dir, 'developer', f))
    : [];
  return [...top, ...developer];
};

const digestOf = (a: Assessment) => {
  // The probability and the confidence the classifier derives from it are compared numerically, not hashed.
  const { classifier, confidence: _confidence, ...rest } = a;
  const rules = { ...rest, classifier: classifier ? { threshold: classifier.threshold, top: classifier.top } : null };
  return createHash('sha256').update(JSON.stringify(rules)).digest('hex').slice(0, 16);
};

/** Every decision, keyed by file, id and reading. */
export const computeDecisions = (): Decision[] => {
  const span = loadCorpus(path.join(root, 'test', 'fixtures', 'phi-corpus'));
  const org: ContextOptions = {
    ...span.options,
    orgNames: ['Riverbend Family Practice', 'Saltmarsh Health Centre', 'Harbor Recovery Services', 'Kestrel Valley Medical'],
  };
  const out: Decision[] = [];
  const judge = (key: string, msg: MessageToScan, options?: ContextOptions) => {
    const a = assessMessage(msg, options);
    out.push({ key, hold: holdsInMonitored(a), probability: a.classifier?.probability ?? -1, digest: digestOf(a) });
  };
  for (const file of corpusFiles()) {
    const name = path.relative(path.join(root, 'eval', 'phi-messages'), file).replace(/\.jsonl$/, '');
    for (const m of loadMessageFile(file)) {
      const subject = m.subject ?? '';
      judge(`${name}/${m.id}`, { subject, text: m.text });
      judge(`${name}/${m.id}/html`, { subject, html: `<p>${m.text.replace(/\n/g, '<br>\n')}</p>` });
      judge(`${name}/${m.id}/org`, { subject, text: m.text }, org);
    }
  }
  for (const m of span.messages) {
    judge(`span/${m.id}`, { subject: 'Message', text: m.text }, span.options);
    judge(`span/${m.id}/plain`, { text: m.text });
  }
  return out;
};

/** The differences between the snapshot and the current decisions (empty when none). */
export const compareDecisions = (expected: readonly Decision[], actual: readonly Decision[]): string[] => {
  const diffs: string[] = [];
  const now = new Map(actual.map((d) => [d.key, d]));
  for (const e of expected) {
    const a = now.get(e.key);
    if (!a) diffs.push(`${e.key}: missing`);
    else if (a.hold !== e.hold) diffs.push(`${e.key}: hold ${e.hold} -> ${a.hold}`);
    else if (a.digest !== e.digest) diffs.push(`${e.key}: judgement changed (digest ${e.digest} -> ${a.digest})`);
    else if (Math.abs(a.probability - e.probability) > 1e-9) diffs.push(`${e.key}: probability ${e.probability} -> ${a.probability}`);
    now.delete(e.key);
  }
  for (const k of now.keys()) diffs.push(`${k}: not in the snapshot`);
  return diffs;
};

export const readSnapshot = (): Decision[] => (JSON.parse(fs.readFileSync(SNAPSHOT, 'utf8')) as { decisions: Decision[] }).decisions;

if (process.argv[1] && path.resolve(process.argv[1]) === path.resolve(import.meta.filename)) {
  const actual = computeDecisions();
  if (process.argv.includes('--write')) {
    // Written as the formatter (biome) lays it out, one decision a line, so a rewrite diffs by line.
    const line = (d: Decision) =>
      `    { "key": ${JSON.stringify(d.key)}, "hold": ${d.hold}, "probability": ${JSON.stringify(d.probability)}, "digest": "${d.digest}" }`;
    const head = `{\n  "format": "mailward-phi-decisions/1",\n  "count": ${actual.length},\n  "decisions": [\n`;
    fs.writeFileSync(SNAPSHOT, `${head}${actual.map(line).join(',\n')}\n  ]\n}\n`);
    console.log(`${actual.length} decisions written to ${path.relative(root, SNAPSHOT)}`);
  } else {
    const diffs = compareDecisions(readSnapshot(), actual);
    for (const d of diffs.slice(0, 50)) console.log(d);
    console.log(`${actual.length} decisions compared, ${diffs.length} differ`);
    if (diffs.length > 0) process.exitCode = 1;
  }
}
