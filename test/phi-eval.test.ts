import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { evaluate, loadCorpus } from '../src/phi/phi-eval.js';

const dir = path.join(import.meta.dirname, 'fixtures', 'phi-corpus');

describe('PHI detector on the labelled corpus', () => {
  const { messages, options } = loadCorpus(dir);
  const report = evaluate(messages, options);
  const of = (type: string) => report.perType.find((s) => s.type === type)!;

  it('has at least 300 messages of every kind the PHI screen must handle, some without any PHI', () => {
    expect(messages.length).toBeGreaterThanOrEqual(300);
    const kinds = new Set(messages.map((m) => m.kind));
    for (const k of ['appointment_reminder', 'referral', 'lab_notice', 'refill_request', 'billing', 'scheduling_no_phi'])
      expect(kinds).toContain(k);
    expect(messages.filter((m) => m.kind === 'scheduling_no_phi').every((m) => m.spans.length === 0)).toBe(true);
  });

  it('reaches recall 0.95 and precision 0.90 overall', () => {
    expect(report.overall.recall).toBeGreaterThanOrEqual(0.95);
    expect(report.overall.precision).toBeGreaterThanOrEqual(0.9);
  });

  it('reaches recall 0.98 for SSN, MRN, phone, email and dates of birth', () => {
    for (const t of ['ssn', 'mrn', 'phone', 'email', 'dob']) {
      expect(of(t).gold, t).toBeGreaterThan(10);
      expect(of(t).recall, t).toBeGreaterThanOrEqual(0.98);
    }
  });

  it('regenerates the committed corpus byte for byte from its seed', () => {
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'phi-corpus-'));
    try {
      execFileSync(
        process.execPath,
        ['--import', 'tsx', path.join(import.meta.dirname, '..', 'scripts', 'generate-phi-corpus.ts'), '--out', out],
        { stdio: 'ignore' },
      );
      expect(fs.readFileSync(path.join(out, 'corpus.jsonl'), 'utf8')).toBe(fs.readFileSync(path.join(dir, 'corpus.jsonl'), 'utf8'));
      expect(fs.readFileSync(path.join(out, 'org.json'), 'utf8')).toBe(fs.readFileSync(path.join(dir, 'org.json'), 'utf8'));
    } finally {
      fs.rmSync(out, { recursive: true, force: true });
    }
  });
});
