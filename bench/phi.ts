/**
 * PHI scanning throughput on the labelled corpus, one core, against a
 * baseline in the same run: a single combined regular expression (SSN | phone
 * | email | URL | IPv4 | numeric and month-name dates | ICD-10) over the same
 * text. The baseline finds far less (no names, labels, clinical words, no
 * context checks); it shows what the detector's extra passes cost.
 * Target: at least 20 MB/s for scanText; at least 5 MB/s for the message-level
 * judgement (assessMessage: the span scan, the who/what/identifier rules and the
 * trained classifier; the rules alone are measured too, assessRules), which
 * decides holds on the send path, measured against the span scanner in the same run.
 * Every scanner is measured in each of several rounds (MAILWARD_BENCH_ROUNDS, default 5) sharing
 * MAILWARD_BENCH_SECONDS (default 6) of CPU time each; the table shows medians and ranges, and the load average at
 * the start and the end (a shared machine slows every figure alike; compare within one run).
 *
 *
 * It measures the compiled build (dist/, from `npm run build`, which `npm run bench` runs first): the server runs
 * that (`npm start` runs bin/mailward.js, which runs dist/). Under tsx every named function inside a function costs
 * an extra call per run (esbuild's keepNames), so the source measured through tsx reads slower than production.
 * MAILWARD_BENCH_SOURCE=1 measures the source through tsx instead.
 *
 *   npm run build && node --import tsx bench/phi.ts
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const root = path.join(import.meta.dirname, '..');
const dist = path.join(root, 'dist', 'src', 'phi');
const fromSource = process.env.MAILWARD_BENCH_SOURCE === '1';
if (!fromSource && !fs.existsSync(path.join(dist, 'phi-context.js'))) {
  console.error('bench/phi.ts: no dist/ build; run `npm run build` first (or MAILWARD_BENCH_SOURCE=1)');
  process.exit(2);
}
const dir = fromSource ? path.join(root, 'src', 'phi') : dist;
const { loadCorpus } = (await import(path.join(dir, 'phi-eval.js'))) as typeof import('../src/phi/phi-eval.js');
const { assessMessage, assessRules } = (await import(path.join(dir, 'phi-context.js'))) as typeof import('../src/phi/phi-context.js');
const { scanMessage, scanText } = (await import(path.join(dir, 'phi-scanner.js'))) as typeof import('../src/phi/phi-scanner.js');

const seconds = Number(process.env.MAILWARD_BENCH_SECONDS ?? 6);
const { messages, options } = loadCorpus(path.join(import.meta.dirname, '..', 'test', 'fixtures', 'phi-corpus'));
const texts = messages.map((m) => m.text);
const bytes = texts.reduce((n, t) => n + Buffer.byteLength(t), 0);

const COMBINED =
  /\b\d{3}-\d{2}-\d{4}\b|(?:\(\d{3}\)\s?|\b\d{3}[\s.-])\d{3}[\s.-]\d{4}\b|\b[\w.%+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}\b|\bhttps?:\/\/[^\s<>"']+|\b(?:\d{1,3}\.){3}\d{1,3}\b|\b\d{1,2}\/\d{1,2}\/\d{2,4}\b|\b\d{4}-\d{2}-\d{2}\b|\b(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]*\.?\s+\d{1,2}(?:,\s+\d{4})?\b|\b[A-TV-Z]\d[0-9AB]\.[0-9A-Z]{1,4}\b/g;

const baseline = (t: string) => {
  let n = 0;
  COMBINED.lastIndex = 0;
  for (let m = COMBINED.exec(t); m !== null; m = COMBINED.exec(t)) n++;
  return n;
};

/**
 * Runs `fn` over the whole corpus repeatedly for `budget` seconds of CPU time; returns MB/s.
 * Throughput is per second of this process's CPU time (process.cpuUsage), so a machine shared with
 * other jobs does not count their time against it: "MB/s on one core".
 */
const cpuSeconds = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};
const measure = (fn: (t: string) => number, budget: number) => {
  let passes = 0;
  const start = cpuSeconds();
  let elapsed = 0;
  while (elapsed < budget) {
    for (const t of texts) fn(t);
    passes++;
    elapsed = cpuSeconds() - start;
  }
  return { mbps: (bytes * passes) / elapsed / 1e6, msgsPerSec: (texts.length * passes) / elapsed };
};

const scanners: [string, (t: string) => number][] = [
  ['combined regex (baseline)', baseline],
  ['scanText (no org options)', (t) => scanText(t).findings.length],
  ['scanText (org contacts, MRN, allow-lists)', (t) => scanText(t, options).findings.length],
  ['scanMessage (text as html too)', (t) => scanMessage({ subject: 'Message', text: t, html: `<p>${t}</p>` }, options).findings.length / 2],
  ['assessMessage (message-level judgement)', (t) => assessMessage({ subject: 'Message', text: t }, options).disclosures.length],
  ['assessRules (the rules alone, no classifier)', (t) => assessRules({ subject: 'Message', text: t }, options).disclosures.length],
];
// Several rounds, each measuring every scanner in turn (so a change in the machine's load touches all of them
// alike), after a warm-up; the figures are the medians over the rounds, with their range.
const rounds = Math.max(1, Number(process.env.MAILWARD_BENCH_ROUNDS ?? 5));
const load0 = os.loadavg();
const found = scanners.map(([, fn]) => {
  let n = 0;
  for (const t of texts) n += fn(t);
  for (let i = 0; i < 20; i++) for (const t of texts) fn(t);
  return n;
});
const runs = scanners.map(() => [] as { mbps: number; msgsPerSec: number }[]);
for (let r = 0; r < rounds; r++)
  scanners.forEach(([, fn], i) => {
    runs[i]!.push(measure(fn, seconds / rounds));
  });
const load1 = os.loadavg();
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const rows = scanners.map(([name], i) => {
  const mb = runs[i]!.map((x) => x.mbps);
  return {
    name,
    mbps: median(mb),
    min: Math.min(...mb),
    max: Math.max(...mb),
    msgsPerSec: median(runs[i]!.map((x) => x.msgsPerSec)),
    found: found[i]!,
  };
});

const fmtLoad = (l: number[]) => l.map((x) => x.toFixed(2)).join(' ');
console.log(`code measured: ${fromSource ? 'the source (src/, through tsx)' : 'the compiled build (dist/, what the server runs)'}`);
console.log(
  `PHI scan throughput per CPU-second (one core), corpus of ${texts.length} messages (${(bytes / 1024).toFixed(0)} KiB), ${rounds} rounds of ${(seconds / rounds).toFixed(2)}s each`,
);
console.log(`load average (1, 5, 15 min): ${fmtLoad(load0)} at the start, ${fmtLoad(load1)} at the end, on ${os.cpus().length} CPUs`);
console.log(`${'scanner'.padEnd(44)}${'MB/s'.padStart(9)}${'range'.padStart(15)}${'msgs/s'.padStart(11)}${'findings'.padStart(10)}`);
for (const r of rows) {
  console.log(
    `${r.name.padEnd(44)}${r.mbps.toFixed(1).padStart(9)}${`${r.min.toFixed(1)}-${r.max.toFixed(1)}`.padStart(15)}${Math.round(r.msgsPerSec).toString().padStart(11)}${String(Math.round(r.found)).padStart(10)}`,
  );
}
const main = rows[2]!.mbps;
const judged = rows[4]!.mbps;
const rulesOnly = rows[5]!.mbps;
console.log(
  `\ntarget >= 20 MB/s for scanText with org options: ${main >= 20 ? 'met' : 'MISSED'} (${main.toFixed(1)} MB/s; ${(rows[0]!.mbps / main).toFixed(1)}x slower than the single-regex baseline)`,
);
console.log(
  `target >= 5 MB/s for the message-level judgement: ${judged >= 5 ? 'met' : 'MISSED'} (${judged.toFixed(1)} MB/s; ${(main / judged).toFixed(1)}x the cost of scanText alone)`,
);
console.log(
  `the trained classifier's share: assessMessage ${judged.toFixed(1)} MB/s against the rules alone ${rulesOnly.toFixed(1)} MB/s (${((rulesOnly / judged - 1) * 100).toFixed(0)}% more time)`,
);
if (main < 20 || judged < 5) process.exitCode = 1;
