import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { evaluateMessages, holdsInMonitored, loadMessageCorpus, targetFailures } from '../src/phi/message-eval.js';
import { assessMessage } from '../src/phi/phi-context.js';
import { loadCorpus } from '../src/phi/phi-eval.js';

/**
 * The message-level judgement on the development part of the independent
 * corpus (eval/phi-messages, written by someone who had not read the detector;
 * labelling rules in its LABELING.md). Only dev.jsonl is read here: test.jsonl
 * is held out and scored once for the README, never tuned on. The corpus comes
 * from its own branch; a missing file fails (MAILWARD_PHI_CORPUS points elsewhere
 * while developing).
 */
const dir = process.env['MAILWARD_PHI_CORPUS'] ?? path.join(import.meta.dirname, '..', 'eval', 'phi-messages');

describe('message-level PHI holds on the independent corpus (dev part)', () => {
  it('has the corpus and its labelling rules', () => {
    expect(fs.existsSync(path.join(dir, 'dev.jsonl')), `${dir}/dev.jsonl`).toBe(true);
    expect(fs.existsSync(path.join(dir, 'LABELING.md'))).toBe(true);
  });

  it('holds with recall >= 0.95 and precision >= 0.90, and every kind of message at recall >= 0.90', () => {
    const messages = loadMessageCorpus(dir, 'dev');
    expect(messages.length).toBeGreaterThanOrEqual(100);
    const report = evaluateMessages('dev', messages);
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
