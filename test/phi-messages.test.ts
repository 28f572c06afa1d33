import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { evaluateMessages, loadMessageCorpus, targetFailures } from '../src/phi/message-eval.js';

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
