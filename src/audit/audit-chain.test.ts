import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canonicalOfRow, chainedOfRow, chainHash, type EventRow, GENESIS_HASH, recomputeRowHash } from './audit-chain.js';
import { canonicalJson } from './canonical.js';

const json = fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.parse(JSON.stringify(v ?? null)));
const text = fc.option(fc.string({ unit: 'binary', maxLength: 30 }), { nil: null });

const rowArb = fc.record({
  seq: fc.integer({ min: 1, max: 2 ** 40 }),
  id: fc.string({ maxLength: 40 }),
  at: fc.date({ noInvalidDate: true }).map((d) => d.toISOString()),
  org_id: text,
  action: fc.string({ unit: 'binary', maxLength: 30 }),
  actor_type: fc.constantFrom('human', 'agent', 'system'),
  actor_id: text,
  delegation_chain: fc
    .array(fc.record({ type: fc.string(), id: fc.string(), name: fc.string({ unit: 'binary' }) }), { maxLength: 4 })
    .map(canonicalJson),
  target_type: text,
  target_id: text,
  outcome: fc.constantFrom('success', 'denied', 'error'),
  request_id: text,
  client_ip: text,
  content_hash: text,
  details: fc.dictionary(fc.string({ unit: 'binary', maxLength: 8 }), json, { maxKeys: 5 }).map(canonicalJson),
  prev_hash: fc.constant(GENESIS_HASH),
  hash: fc.constant(''),
});

describe('audit chain canonical form', () => {
  it('splices exactly the RFC 8785 form the generic canonicalizer gives', () => {
    fc.assert(
      fc.property(rowArb, (r: EventRow) => {
        expect(canonicalOfRow(r)).toBe(canonicalJson(chainedOfRow(r)));
      }),
      { numRuns: 500 },
    );
  });

  it('recomputes a stored hash, and refuses a changed or unparsable row', () => {
    fc.assert(
      fc.property(rowArb, (r: EventRow) => {
        const row = { ...r, hash: chainHash(GENESIS_HASH, chainedOfRow(r)) };
        expect(recomputeRowHash(row, GENESIS_HASH)).toBe(row.hash);
        expect(recomputeRowHash({ ...row, seq: row.seq + 1 }, GENESIS_HASH)).not.toBe(row.hash);
        expect(recomputeRowHash({ ...row, details: '{' }, GENESIS_HASH)).toBeNull();
      }),
      { numRuns: 200 },
    );
  });

  it('still verifies rows whose JSON columns were stored in another member order', () => {
    const r = rowArb.filter((x) => x.details.length > 2);
    fc.assert(
      fc.property(r, (x: EventRow) => {
        const row = { ...x, hash: chainHash(GENESIS_HASH, chainedOfRow(x)) };
        const reordered = JSON.stringify(Object.fromEntries(Object.entries(JSON.parse(row.details)).reverse()));
        expect(recomputeRowHash({ ...row, details: reordered }, GENESIS_HASH)).toBe(row.hash);
      }),
      { numRuns: 100 },
    );
  });
});
