import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { evaluateMessages, holdsInMonitored, loadMessageCorpus, targetFailures } from '../src/phi/message-eval.js';
import { assessMessage } from '../src/phi/phi-context.js';
import { loadCorpus } from '../src/phi/phi-eval.js';

/**
 * The message-level decision on the independent corpora (eval/phi-messages,
 * written by people who had not read the detector; labelling rules in its
 * LABELING.md). Every part is now the trained classifier's training data
 * (src/phi/phi-classifier-weights.json lists them by SHA-256), so this is a fit
 * check (the committed weights still fit what they were trained on), not an
 * estimate: the estimates are scripts/train-phi.ts's cross-validation, and the
 * held-out figures come from a set nobody trains on (README). The rules alone
 * were tuned on dev and dev2: there, they mark every Part 2 message. The corpus
 * comes from its own branch; a missing file fails (MAILWARD_PHI_CORPUS points
 * elsewhere while developing).
 */
const dir = process.env['MAILWARD_PHI_CORPUS'] ?? path.join(import.meta.dirname, '..', 'eval', 'phi-messages');
const parts = fs.existsSync(dir)
  ? fs
      .readdirSync(dir)
      .filter((f) => f.endsWith('.jsonl'))
      .map((f) => f.replace(/\.jsonl$/, ''))
  : [];

it('has the corpus parts and their labelling rules', () => {
  for (const part of ['dev', 'dev2', 'test', 'test2']) expect(parts, `${dir}/${part}.jsonl`).toContain(part);
  expect(fs.existsSync(path.join(dir, 'LABELING.md'))).toBe(true);
});

describe.each(parts)('message-level PHI holds on the independent corpus (%s part: training data, a fit check)', (part) => {
  it('holds with recall >= 0.95 and precision >= 0.90, and every kind of message at recall >= 0.90', () => {
    const messages = loadMessageCorpus(dir, part);
    expect(messages.length).toBeGreaterThanOrEqual(100);
    const report = evaluateMessages(part, messages);
    expect(targetFailures(report)).toEqual([]);
    // Part 2 content is marked as such (it is held in every mode) where the rules were tuned.
    if (part === 'dev' || part === 'dev2') expect(report.part2.marked).toBe(report.part2.labelled);
  });
});

describe('message-level PHI holds on the synthetic span corpus (a second, machine-made check)', () => {
  const { messages, options } = loadCorpus(path.join(import.meta.dirname, 'fixtures', 'phi-corpus'));
  const SENSITIVE = new Set(['icd10', 'medication', 'diagnosis', 'lab_value', 'part2', 'ssn', 'mrn', 'health_plan_id', 'account_number']);

  it('holds nearly every message with clinical content or a sensitive identifier, and no staff scheduling or portal notice', () => {
    const withPhi = messages.filter((m) => m.spans.some((s) => SENSITIVE.has(s.type)));
    const held = withPhi.filter((m) => holdsInMonitored(assessMessage({ subject: 'Message', text: m.text }, options)));
    expect(held.length / withPhi.length).toBeGreaterThanOrEqual(0.98);
    // A named reader's own condition ("Hello Kalani Delgado, ... no changes in your heart failure") is never released
    // by the classifier (phi-classifier.ts, ownedDisclosure); round 5's classifier released it.
    expect(held.map((m) => m.id)).toContain('device_clinic-005');
    const clean = messages.filter((m) => m.kind === 'scheduling_no_phi' || m.kind === 'portal_security');
    expect(clean.filter((m) => holdsInMonitored(assessMessage({ subject: 'Message', text: m.text }, options))).map((m) => m.id)).toEqual(
      [],
    );
  });
});
