// Validates the hand-written PHI message corpus (eval/phi-messages) and prints its counts.
// Run: node --import tsx scripts/check-phi-messages.ts   (exit code 1 on any problem)
// It checks the data only; it knows nothing of the detector, so it can run before or without it.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';

const dir = join(import.meta.dirname, '..', 'eval', 'phi-messages');

const PHI_MESSAGE_KINDS = [
  'results',
  'referral',
  'billing',
  'part2',
  'reminder',
  'announcement',
  'clinic_name',
  'medication',
  'mental_health',
  'pregnancy',
  'admin',
  'lookalike',
] as const;

const line = z
  .object({
    id: z.string().regex(/^(?:[dteu]-\d{4}|A-\d{4}|B-[a-z]\d{4}|L-\d{4}|W[45]-\d{4}|R5[AB]-\d{4}|R6[A-D]-\d{4})$/),
    kind: z.enum(PHI_MESSAGE_KINDS),
    hold: z.boolean(),
    part2: z.boolean(),
    hard: z.boolean(),
    subject: z.string(),
    text: z.string().min(10),
    why: z.string().regex(/^(H[123]|P[1-6])/, 'why must start with the rule it cites (H1..H3, P1..P6)'),
  })
  .strict()
  .refine((m) => !m.part2 || m.hold, { message: 'part2 lines are always holds' });

type Line = z.infer<typeof line>;

const files: { name: string; prefix: string; supplement?: boolean; burnt?: boolean }[] = [
  { name: 'dev.jsonl', prefix: 'd' },
  { name: 'test.jsonl', prefix: 't' },
  // The second parts, by a second writer who had seen neither the detector nor the first parts.
  { name: 'dev2.jsonl', prefix: 'e' },
  { name: 'test2.jsonl', prefix: 'u' },
  // Round 3's training parts, by two more writers (their held-out parts stay with the lead).
  { name: 'train3a.jsonl', prefix: 'A' },
  { name: 'train3b.jsonl', prefix: 'B' },
  // Round 3's to round 6's held-out parts, each scored once (README) and training data since round 5 (3a to 4b), round 6
  // (5a, 5b) and round 7 (6a to 6d). Smaller than a full part by design (200 and 250 lines, 15 to 30 per kind): the size
  // and per-kind minimums are theirs.
  { name: 'test3a.jsonl', prefix: 'A', burnt: true },
  { name: 'test3b.jsonl', prefix: 'B', burnt: true },
  { name: 'test4a.jsonl', prefix: 'W4', burnt: true },
  { name: 'test4b.jsonl', prefix: 'W5', burnt: true },
  { name: 'test5a.jsonl', prefix: 'R5A', burnt: true },
  { name: 'test5b.jsonl', prefix: 'R5B', burnt: true },
  { name: 'test6a.jsonl', prefix: 'R6A', burnt: true },
  { name: 'test6b.jsonl', prefix: 'R6B', burnt: true },
  { name: 'test6c.jsonl', prefix: 'R6C', burnt: true },
  { name: 'test6d.jsonl', prefix: 'R6D', burnt: true },
  // A supplement of one kind (lookalike), written by the developer of the speed round (not an independent writer),
  // kept apart in developer/ and not trained on (README): the size, per-kind, hold-share and hard-share minimums of a
  // full part do not apply.
  { name: 'developer/train4dev.jsonl', prefix: 'L', supplement: true },
];
const supplements = new Set(files.filter((f) => f.supplement).map((f) => f.name));
const burnt = new Set(files.filter((f) => f.burnt).map((f) => f.name));
const MIN_LINES = 300;
const MIN_PER_KIND = 25;
/** The former held-out parts: 200 or 250 lines, at least 15 of a kind. */
const BURNT_MIN_LINES = 200;
const BURNT_MIN_PER_KIND = 15;
const MIN_HARD_SHARE = 0.4;
const HOLD_SHARE = [0.4, 0.6] as const;

const problems: string[] = [];
const texts = new Map<string, string>();
const loaded = new Map<string, Line[]>();

for (const { name, prefix } of files) {
  const path = join(dir, name);
  if (!existsSync(path)) {
    problems.push(`${name}: missing`);
    continue;
  }
  const rows: Line[] = [];
  const ids = new Set<string>();
  readFileSync(path, 'utf8')
    .split('\n')
    .forEach((raw, i) => {
      if (raw === '') return;
      let json: unknown;
      try {
        json = JSON.parse(raw);
      } catch {
        problems.push(`${name}:${i + 1}: not JSON`);
        return;
      }
      const parsed = line.safeParse(json);
      if (!parsed.success) {
        problems.push(`${name}:${i + 1}: ${parsed.error.issues.map((x) => `${x.path.join('.')} ${x.message}`).join('; ')}`);
        return;
      }
      const m = parsed.data;
      if (!m.id.startsWith(`${prefix}-`)) problems.push(`${name}:${i + 1}: id ${m.id} should start with ${prefix}-`);
      if (ids.has(m.id)) problems.push(`${name}:${i + 1}: duplicate id ${m.id}`);
      ids.add(m.id);
      const key = m.text.replace(/\s+/g, ' ').trim().toLowerCase();
      const seen = texts.get(key);
      if (seen) problems.push(`${name}:${i + 1}: same text as ${seen}`);
      texts.set(key, m.id);
      rows.push(m);
    });
  loaded.set(name, rows);
}

const pct = (n: number, d: number) => (d === 0 ? '-' : `${Math.round((100 * n) / d)}%`);
for (const [name, rows] of loaded) {
  console.log(`\n${name}: ${rows.length} messages`);
  console.log(
    `${'kind'.padEnd(15)} ${'total'.padStart(5)} ${'hold'.padStart(5)} ${'pass'.padStart(5)} ${'part2'.padStart(5)} ${'hard'.padStart(5)}`,
  );
  for (const kind of PHI_MESSAGE_KINDS) {
    const of = rows.filter((m) => m.kind === kind);
    const hold = of.filter((m) => m.hold).length;
    console.log(
      `${kind.padEnd(15)} ${String(of.length).padStart(5)} ${String(hold).padStart(5)} ${String(of.length - hold).padStart(5)} ` +
        `${String(of.filter((m) => m.part2).length).padStart(5)} ${String(of.filter((m) => m.hard).length).padStart(5)}`,
    );
    const minPerKind = burnt.has(name) ? BURNT_MIN_PER_KIND : MIN_PER_KIND;
    if (!supplements.has(name) && of.length < minPerKind)
      problems.push(`${name}: only ${of.length} lines of kind ${kind} (at least ${minPerKind})`);
  }
  const hold = rows.filter((m) => m.hold).length;
  const hard = rows.filter((m) => m.hard).length;
  console.log(
    `${'all'.padEnd(15)} ${String(rows.length).padStart(5)} ${String(hold).padStart(5)} ${String(rows.length - hold).padStart(5)} ` +
      `${String(rows.filter((m) => m.part2).length).padStart(5)} ${String(hard).padStart(5)}   holds ${pct(hold, rows.length)}, hard ${pct(hard, rows.length)}`,
  );
  if (supplements.has(name)) continue;
  const minLines = burnt.has(name) ? BURNT_MIN_LINES : MIN_LINES;
  if (rows.length < minLines) problems.push(`${name}: ${rows.length} lines (at least ${minLines})`);
  if (hold / rows.length < HOLD_SHARE[0] || hold / rows.length > HOLD_SHARE[1])
    problems.push(`${name}: hold share ${pct(hold, rows.length)}`);
  if (hard / rows.length < MIN_HARD_SHARE) problems.push(`${name}: hard share ${pct(hard, rows.length)} (at least 40%)`);
}

// SHA256SUMS (sha256sum format) pins the labelled files, so any later edit of the held-out part shows.
const sums = join(dir, 'SHA256SUMS');
if (existsSync(sums)) {
  for (const entry of readFileSync(sums, 'utf8').split('\n').filter(Boolean)) {
    const [want, file] = entry.split(/\s+\*?/);
    if (!file || !existsSync(join(dir, file))) {
      problems.push(`SHA256SUMS: ${file ?? entry} missing`);
      continue;
    }
    const got = createHash('sha256')
      .update(readFileSync(join(dir, file)))
      .digest('hex');
    if (got !== want) problems.push(`SHA256SUMS: ${file} changed (sha256 ${got})`);
  }
} else {
  problems.push('SHA256SUMS: missing');
}

if (problems.length > 0) {
  console.error(`\n${problems.length} problem(s):\n${problems.join('\n')}`);
  process.exitCode = 1;
} else {
  console.log('\nok: every line parses, ids unique, kinds known, counts met, checksums match');
}
