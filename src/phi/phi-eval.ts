import fs from 'node:fs';
import path from 'node:path';
import { scanText } from './phi-scanner.js';
import { FINDING_TYPES, type Finding, type ScanOptions } from './phi-types.js';

/** One labelled message of the corpus (test/fixtures/phi-corpus/corpus.jsonl). */
export type CorpusMessage = { id: string; kind: string; text: string; spans: { type: string; start: number; end: number }[] };

export type TypeScore = { type: string; gold: number; predicted: number; tp: number; precision: number; recall: number };
export type EvalReport = { messages: number; perType: TypeScore[]; overall: TypeScore; identifiers: TypeScore; clinical: TypeScore };

export const loadCorpus = (dir: string): { messages: CorpusMessage[]; options: ScanOptions } => {
  const messages = fs
    .readFileSync(path.join(dir, 'corpus.jsonl'), 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as CorpusMessage);
  const org = JSON.parse(fs.readFileSync(path.join(dir, 'org.json'), 'utf8')) as ScanOptions;
  return {
    messages,
    options: {
      contacts: org.contacts,
      mrnPatterns: org.mrnPatterns,
      orgPhones: org.orgPhones,
      orgDomains: org.orgDomains,
      orgAddresses: org.orgAddresses,
    },
  };
};

/**
 * Span-level matching (documented in test/fixtures/phi-corpus/README.md): a
 * prediction matches a gold span when the types are equal and the overlap is
 * at least half of the shorter of the two; each gold span and each prediction
 * is matched at most once (greedy, in order of start).
 */
export const spansMatch = (a: { start: number; end: number }, b: { start: number; end: number }) => {
  const overlap = Math.min(a.end, b.end) - Math.max(a.start, b.start);
  return overlap > 0 && overlap * 2 >= Math.min(a.end - a.start, b.end - b.start);
};

const score = (type: string, gold: number, predicted: number, tp: number): TypeScore => ({
  type,
  gold,
  predicted,
  tp,
  precision: predicted === 0 ? 1 : tp / predicted,
  recall: gold === 0 ? 1 : tp / gold,
});

const CLINICAL = new Set(['icd10', 'medication', 'diagnosis', 'lab_value', 'part2']);

/** Runs scanText over every message and scores the findings against the gold spans. */
export const evaluate = (
  messages: readonly CorpusMessage[],
  options: ScanOptions,
  scan: (text: string) => Finding[] = (t) => scanText(t, options).findings,
): EvalReport => {
  const counts = new Map<string, { gold: number; predicted: number; tp: number }>();
  const bump = (type: string, k: 'gold' | 'predicted' | 'tp') => {
    const c = counts.get(type) ?? { gold: 0, predicted: 0, tp: 0 };
    c[k]++;
    counts.set(type, c);
  };
  for (const m of messages) {
    const predicted = scan(m.text);
    const used = new Set<number>();
    for (const p of predicted) bump(p.type, 'predicted');
    for (const g of m.spans) {
      bump(g.type, 'gold');
      const i = predicted.findIndex((p, j) => !used.has(j) && p.type === g.type && spansMatch(p, g));
      if (i >= 0) {
        used.add(i);
        bump(g.type, 'tp');
      }
    }
  }
  const order = (t: string) => {
    const i = (FINDING_TYPES as readonly string[]).indexOf(t);
    return i < 0 ? 999 : i;
  };
  const perType = [...counts.entries()].sort((a, b) => order(a[0]) - order(b[0])).map(([t, c]) => score(t, c.gold, c.predicted, c.tp));
  const sum = (name: string, filter: (t: string) => boolean) => {
    const xs = perType.filter((s) => filter(s.type));
    return score(
      name,
      xs.reduce((n, s) => n + s.gold, 0),
      xs.reduce((n, s) => n + s.predicted, 0),
      xs.reduce((n, s) => n + s.tp, 0),
    );
  };
  return {
    messages: messages.length,
    perType,
    overall: sum('overall', () => true),
    identifiers: sum('identifiers', (t) => !CLINICAL.has(t)),
    clinical: sum('clinical', (t) => CLINICAL.has(t)),
  };
};

export const formatReport = (r: EvalReport): string => {
  const row = (s: TypeScore) =>
    `${s.type.padEnd(26)}${String(s.gold).padStart(6)}${String(s.predicted).padStart(7)}${String(s.tp).padStart(6)}${s.precision.toFixed(3).padStart(11)}${s.recall.toFixed(3).padStart(9)}`;
  const head = `${'type'.padEnd(26)}${'gold'.padStart(6)}${'pred'.padStart(7)}${'tp'.padStart(6)}${'precision'.padStart(11)}${'recall'.padStart(9)}`;
  const rule = '-'.repeat(head.length);
  return [
    `PHI detector evaluation on ${r.messages} messages`,
    head,
    rule,
    ...r.perType.map(row),
    rule,
    row(r.identifiers),
    row(r.clinical),
    row(r.overall),
  ].join('\n');
};
