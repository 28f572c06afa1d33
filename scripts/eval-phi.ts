/**
 * Prints precision and recall per identifier type and overall for the PHI
 * detector on the labelled corpus (npm run eval:phi). Exit 1 when a target
 * is missed: recall >= 0.95 and precision >= 0.90 overall, recall >=
 * 0.98 for SSN, MRN, phone, email and dates of birth.
 *
 *   node --import tsx scripts/eval-phi.ts [--corpus dir] [--misses]
 */
import path from 'node:path';
import { evaluate, formatReport, loadCorpus, spansMatch } from '../src/phi/phi-eval.js';
import { scanText } from '../src/phi/phi-scanner.js';

const args = process.argv.slice(2);
const i = args.indexOf('--corpus');
const dir = i >= 0 && args[i + 1] ? args[i + 1]! : path.join('test', 'fixtures', 'phi-corpus');
const { messages, options } = loadCorpus(dir);
const report = evaluate(messages, options);
console.log(formatReport(report));

if (args.includes('--misses')) {
  // Synthetic corpus only: printing its text is fine; never run this on real mail.
  for (const m of messages) {
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
const failures = [
  report.overall.recall < 0.95 ? `overall recall ${report.overall.recall.toFixed(3)} < 0.95` : null,
  report.overall.precision < 0.9 ? `overall precision ${report.overall.precision.toFixed(3)} < 0.90` : null,
  ...report.perType.filter((s) => strict.includes(s.type) && s.recall < 0.98).map((s) => `${s.type} recall ${s.recall.toFixed(3)} < 0.98`),
].filter((x): x is string => x !== null);
if (failures.length > 0) {
  console.log(`\nTARGETS MISSED: ${failures.join('; ')}`);
  process.exitCode = 1;
} else {
  console.log('\nall targets met');
}
