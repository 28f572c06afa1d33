import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { evaluateMessages, holdsInMonitored, loadMessageCorpus, targetFailures } from '../src/phi/message-eval.js';
import { assessMessage } from '../src/phi/phi-context.js';
import { loadCorpus } from '../src/phi/phi-eval.js';

/**
 * The message-level judgement on the development parts of the independent
 * corpora (eval/phi-messages, written by people who had not read the detector;
 * labelling rules in its LABELING.md): dev.jsonl (first writer) and dev2.jsonl
 * (a second writer, who had seen neither the detector nor the first corpus).
 * Only development parts are read here: test.jsonl and test2.jsonl are held out
 * and scored once for the README, never tuned on. The corpus comes from its own
 * branch; a missing file fails (MAILWARD_PHI_CORPUS points elsewhere while
 * developing).
 */
const dir = process.env['MAILWARD_PHI_CORPUS'] ?? path.join(import.meta.dirname, '..', 'eval', 'phi-messages');

describe.each(['dev', 'dev2'])('message-level PHI holds on the independent corpus (%s part)', (part) => {
  it('has the corpus part and its labelling rules', () => {
    expect(fs.existsSync(path.join(dir, `${part}.jsonl`)), `${dir}/${part}.jsonl`).toBe(true);
    expect(fs.existsSync(path.join(dir, 'LABELING.md'))).toBe(true);
  });

  it('holds with recall >= 0.95 and precision >= 0.90, and every kind of message at recall >= 0.90', () => {
    const messages = loadMessageCorpus(dir, part);
    expect(messages.length).toBeGreaterThanOrEqual(100);
    const report = evaluateMessages(part, messages);
    expect(targetFailures(report)).toEqual([]);
    // Part 2 content is marked as such (it is held in every mode).
    expect(report.part2.marked).toBe(report.part2.labelled);
  });
});

describe('message-level PHI holds on the synthetic span corpus (a second, machine-made check)', () => {
  const { messages, options } = loadCorpus(path.join(import.meta.dirname, 'fixtures', 'phi-corpus'));
  const SENSITIVE = new Set(['icd10', 'medication', 'diagnosis', 'lab_value', 'part2', 'ssn', 'mrn', 'health_plan_id', 'account_number']);

  it('holds nearly every message with clinical content or a sensitive identifier, and no staff scheduling or portal notice', () => {
    const withPhi = messages.filter((m) => m.spans.some((s) => SENSITIVE.has(s.type)));
    const held = withPhi.filter((m) => holdsInMonitored(assessMessage({ subject: 'Message', text: m.text }, options)));
    expect(held.length / withPhi.length).toBeGreaterThanOrEqual(0.98);
    const clean = messages.filter((m) => m.kind === 'scheduling_no_phi' || m.kind === 'portal_security');
    expect(clean.filter((m) => holdsInMonitored(assessMessage({ subject: 'Message', text: m.text }, options))).map((m) => m.id)).toEqual(
      [],
    );
  });
});
