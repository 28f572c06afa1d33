/**
 * `npm run eval:phi`: how well the PHI screen holds what it should.
 *
 * 1. Message level, on labelled JSONL files (eval/phi-messages/LABELING.md; one
 *    message a line with id, kind, hold, subject, text): hold precision and
 *    recall overall, per kind of message and for the hard messages, each file
 *    reported separately. Targets: recall >= 0.95, precision >= 0.90, every kind
 *    with holds at recall >= 0.90.
 * 2. Span level, on the synthetic span corpus (test/fixtures/phi-corpus): the
 *    detector's per-type precision and recall (targets: recall >= 0.95 and
 *    precision >= 0.90 overall, recall >= 0.98 for SSN, MRN, phone, email, DOB).
 *
 * Exit 1 when a target is missed on a file that was evaluated.
 *
 *   node --import tsx scripts/eval-phi.ts [FILE|GLOB ...] [--corpus DIR] [--part NAME] [--rules-only] [--span-corpus DIR] [--misses]
 *
 * With FILE or GLOB arguments (e.g. `npm run eval:phi -- '/data/heldout/*.jsonl'`), those files are scored: that is
 * how a held-out set is run, once. Without, every part of the corpus directory (or the one --part names) is scored;
 * those are the classifier's training data (src/phi/phi-classifier-weights.json lists them with their SHA-256),
 * so their figures are a fit, not an estimate; each such file is marked "TRAINED ON". The estimates are the
 * cross-validation figures of scripts/train-phi.ts. --rules-only scores the rules without the classifier.
 * --misses lists the ids (never the text) of the messages the screen gets wrong, only for files it was trained on,
 * and the span corpus's misses (synthetic text).
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import {
  evaluateMessages,
  formatMessageReport,
  holdsInMonitored,
  type LabelledMessage,
  loadMessageFile,
  targetFailures,
} from '../src/phi/message-eval.js';
import weights from '../src/phi/phi-classifier-weights.json' with { type: 'json' };
import { assessRules } from '../src/phi/phi-context.js';
import { evaluate, formatReport, loadCorpus, spansMatch } from '../src/phi/phi-eval.js';
import { scanText } from '../src/phi/phi-scanner.js';

const args = process.argv.slice(2);
const VALUED = new Set(['--corpus', '--part', '--span-corpus']);
const opt = (name: string) => {
  const i = args.indexOf(name);
  return i >= 0 && args[i + 1] ? args[i + 1]! : null;
};
const positional = args.filter((a, i) => !a.startsWith('--') && !VALUED.has(args[i - 1] ?? ''));
const corpus = opt('--corpus') ?? path.join('eval', 'phi-messages');
const part = opt('--part');
const spanDir = opt('--span-corpus') ?? path.join('test', 'fixtures', 'phi-corpus');
const misses = args.includes('--misses');
const rulesOnly = args.includes('--rules-only');

const expand = (p: string): string[] => (/[*?[]/.test(p) ? fs.globSync(p).sort() : [p]);
const files =
  positional.length > 0
    ? positional.flatMap(expand)
    : part
      ? [path.join(corpus, `${part}.jsonl`)]
      : fs
          .readdirSync(corpus)
          .filter((f) => f.endsWith('.jsonl'))
          .sort()
          .map((f) => path.join(corpus, f));
if (files.length === 0) {
  console.error('no labelled files matched');
  process.exit(2);
}
const trainedHashes = new Set((weights.trained_on ?? []).map((t: { sha256: string }) => t.sha256));
const decide = rulesOnly ? (m: LabelledMessage) => holdsInMonitored(assessRules({ subject: m.subject ?? '', text: m.text })) : undefined;

const failures: string[] = [];
for (const file of files) {
  if (!fs.existsSync(file)) {
    console.log(`\n${file}: missing (merge the corpus branch, or pass --corpus DIR)`);
    failures.push(`${file}: missing`);
    continue;
  }
  const trained = trainedHashes.has(createHash('sha256').update(fs.readFileSync(file)).digest('hex'));
  const name = path.basename(file).replace(/\.jsonl$/, '');
  const messages = loadMessageFile(file);
  const report = evaluateMessages(`${name}${trained ? ' (TRAINED ON: a fit, not an estimate)' : ''}`, messages, {}, decide);
  console.log(`\n${formatMessageReport(report)}`);
  failures.push(...targetFailures(report));
  if (misses && !trained) console.log(`--misses: not listed for ${file} (not training data: it may be held out)`);
  if (misses && trained) {
    for (const m of messages) {
      const pred = report.predictions.get(m.id);
      if (pred !== m.hold) console.log(`${m.hold ? 'MISSED HOLD' : 'FALSE HOLD'} ${m.id} (${m.kind})`);
    }
  }
}

// The span detector on the synthetic span corpus (its own targets).
const { messages: spanMessages, options } = loadCorpus(spanDir);
const span = evaluate(spanMessages, options);
console.log(`\nSpan level (highlights), synthetic corpus ${spanDir}:\n${formatReport(span)}`);
if (misses) {
  // Synthetic corpus only: printing its text is fine; never run this on real mail.
  for (const m of spanMessages) {
    const found = scanText(m.text, options).findings;
    for (const g of m.spans) {
      if (!found.some((f) => f.type === g.type && spansMatch(f, g)))
        console.log(`MISS ${m.id} ${g.type} ${JSON.stringify(m.text.slice(g.start, g.end))}`);
    }
    for (const f of found) {
      if (!m.spans.some((g) => f.type === g.type && spansMatch(f, g)))
        console.log(`FALSE ${m.id} ${f.type} ${JSON.stringify(m.text.slice(f.start, f.end))} (${f.detector})`);
    }
  }
}
const strict = ['ssn', 'mrn', 'phone', 'email', 'dob'];
failures.push(
  ...[
    span.overall.recall < 0.95 ? `span: overall recall ${span.overall.recall.toFixed(3)} < 0.95` : null,
    span.overall.precision < 0.9 ? `span: overall precision ${span.overall.precision.toFixed(3)} < 0.90` : null,
    ...span.perType
      .filter((s) => strict.includes(s.type) && s.recall < 0.98)
      .map((s) => `span: ${s.type} recall ${s.recall.toFixed(3)} < 0.98`),
  ].filter((x): x is string => x !== null),
);

if (failures.length > 0) {
  console.log(`\nTARGETS MISSED: ${failures.join('; ')}`);
  process.exitCode = 1;
} else {
  console.log('\nall targets met');
}
