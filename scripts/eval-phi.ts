/**
 * `npm run eval:phi`: how well the PHI screen holds what it should.
 *
 * 1. Message level, on the independent corpora (default eval/phi-messages:
 *    LABELING.md; development parts dev.jsonl and dev2.jsonl, held-out parts
 *    test.jsonl and test2.jsonl, each written by a different writer pair): hold
 *    precision and recall overall, per kind of message and for the hard messages,
 *    each part reported separately. Targets: recall >= 0.95, precision >= 0.90,
 *    every kind with holds at recall >= 0.90.
 * 2. Span level, on the synthetic span corpus (test/fixtures/phi-corpus): the
 *    detector's per-type precision and recall (targets: recall >= 0.95 and
 *    precision >= 0.90 overall, recall >= 0.98 for SSN, MRN, phone, email, DOB).
 *
 * Exit 1 when a target is missed on a part that was evaluated.
 *
 *   node --import tsx scripts/eval-phi.ts [--corpus DIR] [--part dev|dev2|test|test2|all] [--held-out] [--span-corpus DIR] [--misses]
 *
 * `all` (the default) is the development parts that exist (dev, dev2). A
 * held-out part (test, test2) is scored only when named and confirmed with
 * --held-out: it is run once, to report, and never tuned on. --misses lists the
 * ids (never the text) of the development messages the screen gets wrong, and
 * the span corpus's misses (synthetic text); never for a held-out part.
 */
import fs from 'node:fs';
import path from 'node:path';
import { evaluateMessages, formatMessageReport, loadMessageCorpus, targetFailures } from '../src/phi/message-eval.js';
import { evaluate, formatReport, loadCorpus, spansMatch } from '../src/phi/phi-eval.js';
import { scanText } from '../src/phi/phi-scanner.js';

const args = process.argv.slice(2);
const opt = (name: string) => {
  const i = args.indexOf(name);
  return i >= 0 && args[i + 1] ? args[i + 1]! : null;
};
const corpus = opt('--corpus') ?? path.join('eval', 'phi-messages');
const part = opt('--part') ?? 'all';
const spanDir = opt('--span-corpus') ?? path.join('test', 'fixtures', 'phi-corpus');
const misses = args.includes('--misses');
const DEVELOPMENT = ['dev', 'dev2'];
const HELD_OUT = ['test', 'test2'];
if (![...DEVELOPMENT, ...HELD_OUT, 'all'].includes(part)) {
  console.error('--part must be dev, dev2, test, test2 or all');
  process.exit(2);
}
if (HELD_OUT.includes(part) && !args.includes('--held-out')) {
  console.error(`${part} is a held-out part: it is scored once, to report, never to tune; add --held-out to confirm`);
  process.exit(2);
}
if (HELD_OUT.includes(part) && misses) {
  console.error('--misses is refused on a held-out part');
  process.exit(2);
}

const failures: string[] = [];
const parts = part === 'all' ? DEVELOPMENT.filter((p) => p === 'dev' || fs.existsSync(path.join(corpus, `${p}.jsonl`))) : [part];
for (const p of parts) {
  const file = path.join(corpus, `${p}.jsonl`);
  if (!fs.existsSync(file)) {
    console.log(`\n${file}: missing (merge the corpus branch, or pass --corpus DIR)`);
    failures.push(`${p}: corpus part missing`);
    continue;
  }
  const messages = loadMessageCorpus(corpus, p);
  const report = evaluateMessages(p, messages);
  console.log(`\n${formatMessageReport(report)}`);
  failures.push(...targetFailures(report));
  if (misses && DEVELOPMENT.includes(p)) {
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
