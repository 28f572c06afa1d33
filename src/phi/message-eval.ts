import fs from 'node:fs';
import path from 'node:path';
import { type Assessment, assessMessage, type ContextOptions } from './phi-context.js';

/**
 * Message-level evaluation of the PHI judgement on a labelled corpus written
 * independently of the detector (eval/phi-messages: LABELING.md, dev.jsonl,
 * test.jsonl). A message is predicted "hold" when the judgement finds PHI to
 * hold in a `monitored` mailbox (sensitivity moderate or above, the default
 * threshold), the setting the corpus was labelled for.
 */
export type LabelledMessage = { id: string; kind: string; hold: boolean; part2?: boolean; hard?: boolean; subject?: string; text: string };

export type HoldScore = { kind: string; messages: number; holds: number; predicted: number; tp: number; precision: number; recall: number };
export type MessageEvalReport = {
  part: string;
  messages: number;
  overall: HoldScore;
  perKind: HoldScore[];
  hard: HoldScore;
  /** Part 2 messages labelled part2, and how many of them the judgement marked part2. */
  part2: { labelled: number; marked: number };
};

/** Reads a labelled JSONL file (one message a line); throws when it is missing. */
export const loadMessageFile = (file: string): LabelledMessage[] =>
  fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as LabelledMessage);

/** Reads `<dir>/<part>.jsonl`; throws when it is missing (the corpus branch must be merged). */
export const loadMessageCorpus = (dir: string, part: string): LabelledMessage[] => loadMessageFile(path.join(dir, `${part}.jsonl`));

const score = (kind: string, rows: { gold: boolean; pred: boolean }[]): HoldScore => {
  const holds = rows.filter((r) => r.gold).length;
  const predicted = rows.filter((r) => r.pred).length;
  const tp = rows.filter((r) => r.gold && r.pred).length;
  return {
    kind,
    messages: rows.length,
    holds,
    predicted,
    tp,
    precision: predicted === 0 ? 1 : tp / predicted,
    recall: holds === 0 ? 1 : tp / holds,
  };
};

/** The hold a `monitored` mailbox makes under the default policy (DEFAULT_HOLD_AT.monitored = 'moderate'). */
export const holdsInMonitored = (a: Assessment) =>
  a.part2 || a.sensitivity === 'moderate' || a.sensitivity === 'high' || a.sensitivity === 'restricted';

export const evaluateMessages = (
  part: string,
  messages: readonly LabelledMessage[],
  options: ContextOptions = {},
  decide: (m: LabelledMessage) => boolean = (m) => holdsInMonitored(assessMessage({ subject: m.subject ?? '', text: m.text }, options)),
): MessageEvalReport & { predictions: Map<string, boolean> } => {
  const predictions = new Map<string, boolean>();
  const rows = messages.map((m) => {
    const pred = decide(m);
    predictions.set(m.id, pred);
    return { m, gold: m.hold, pred };
  });
  const kinds = [...new Set(messages.map((m) => m.kind))].sort();
  const p2 = messages.filter((m) => m.part2);
  return {
    part,
    messages: messages.length,
    overall: score('overall', rows),
    perKind: kinds.map((k) =>
      score(
        k,
        rows.filter((r) => r.m.kind === k),
      ),
    ),
    hard: score(
      'hard only',
      rows.filter((r) => r.m.hard),
    ),
    part2: {
      labelled: p2.length,
      marked: p2.filter((m) => assessMessage({ subject: m.subject ?? '', text: m.text }, options).part2).length,
    },
    predictions,
  };
};

/** The targets: overall recall >= 0.95, precision >= 0.90, every kind with holds at recall >= 0.90. */
export const targetFailures = (r: MessageEvalReport): string[] => [
  ...(r.overall.recall < 0.95 ? [`${r.part}: overall recall ${r.overall.recall.toFixed(3)} < 0.95`] : []),
  ...(r.overall.precision < 0.9 ? [`${r.part}: overall precision ${r.overall.precision.toFixed(3)} < 0.90`] : []),
  ...r.perKind.filter((k) => k.holds > 0 && k.recall < 0.9).map((k) => `${r.part}: ${k.kind} recall ${k.recall.toFixed(3)} < 0.90`),
];

export const formatMessageReport = (r: MessageEvalReport): string => {
  const row = (s: HoldScore) =>
    `${s.kind.padEnd(24)}${String(s.messages).padStart(6)}${String(s.holds).padStart(7)}${String(s.predicted).padStart(7)}${String(s.tp).padStart(5)}${s.precision.toFixed(3).padStart(11)}${s.recall.toFixed(3).padStart(9)}`;
  const head = `${'kind'.padEnd(24)}${'msgs'.padStart(6)}${'holds'.padStart(7)}${'held'.padStart(7)}${'tp'.padStart(5)}${'precision'.padStart(11)}${'recall'.padStart(9)}`;
  const rule = '-'.repeat(head.length);
  return [
    `Message-level hold decision (monitored mailbox, default policy) on ${r.part}: ${r.messages} messages`,
    head,
    rule,
    ...r.perKind.map(row),
    rule,
    row(r.hard),
    row(r.overall),
    `part2: ${r.part2.marked} of ${r.part2.labelled} Part 2 messages marked part2`,
  ].join('\n');
};
