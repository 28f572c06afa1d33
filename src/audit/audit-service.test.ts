import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixedClock } from '../kernel/clock.js';
import { openStore, type Store } from '../store/db.js';
import { migrateToLatest } from '../store/migrate.js';
import { type ChainedEvent, chainHash, recomputeRowHash } from './audit-chain.js';
import { type AuditInput, createAuditService } from './audit-service.js';
import { eventRows, selectEventRows } from './event-rows.js';

const json = fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.parse(JSON.stringify(v ?? null)));
const text = fc.string({ unit: 'binary', maxLength: 30 });
const maybe = fc.option(text, { nil: null });

const inputArb: fc.Arbitrary<AuditInput> = fc.record(
  {
    action: text,
    actor: fc.record({
      type: fc.constantFrom('human', 'agent', 'system', 'anonymous'),
      id: maybe,
      orgId: maybe,
      chain: fc.array(fc.record({ type: fc.string(), id: fc.string(), name: fc.string({ unit: 'binary' }) }), { maxLength: 4 }),
    }),
    orgId: fc.option(maybe, { nil: undefined }),
    target: fc.option(fc.record({ type: text, id: text }), { nil: null }),
    outcome: fc.constantFrom('success', 'denied', 'error'),
    requestId: maybe,
    clientIp: maybe,
    contentHash: maybe,
    details: fc.dictionary(fc.string({ unit: 'binary', maxLength: 8 }), json, { maxKeys: 5 }),
  },
  { requiredKeys: ['action', 'actor'] },
);

describe('audit append (record)', () => {
  let dir: string;
  let store: Store;
  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mw-audit-record-'));
    store = openStore({ kind: 'sqlite', file: path.join(dir, 'm.db') });
    await migrateToLatest(store);
  });
  afterAll(async () => {
    await store.destroy();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('hashes exactly chainHash(prev, event) of the event it stores, and the verifier recomputes it from the row', async () => {
    const clock = fixedClock('2026-01-01T00:00:00Z');
    const audit = createAuditService({ db: store.db, dialect: 'sqlite', clock });
    await fc.assert(
      fc.asyncProperty(inputArb, async (input) => {
        clock.advance(1);
        const { seq, hash } = await audit.recordSequenced(input);
        const [row] = await eventRows(selectEventRows(store.db).where('e.seq', '=', seq));
        if (!row) throw new Error('not stored');
        // The event as the chain defines it, built from the input (as record did before it spliced).
        const event: ChainedEvent = {
          seq,
          id: row.id,
          at: clock.now().toISOString(),
          org_id: input.orgId !== undefined ? input.orgId : input.actor.orgId,
          action: input.action,
          actor: { type: input.actor.type, id: input.actor.id },
          delegation_chain: input.actor.chain,
          // The integrator hashes the event as its row reads back: a target with an empty part is no target.
          target: input.target?.type && input.target.id ? input.target : null,
          outcome: input.outcome ?? 'success',
          request_id: input.requestId ?? null,
          client_ip: input.clientIp ?? null,
          content_hash: input.contentHash ?? null,
          details: input.details ?? {},
        };
        expect(hash).toBe(chainHash(row.prev_hash, event));
        expect(row.hash).toBe(hash);
        expect(recomputeRowHash(row, row.prev_hash)).toBe(hash);
      }),
      { numRuns: 300 },
    );
  });

  it('stores the delegation chain as it is at each append, even when one chain array is reused and changed', async () => {
    const audit = createAuditService({ db: store.db, dialect: 'sqlite', clock: fixedClock('2026-02-01T00:00:00Z') });
    const chain = [
      { type: 'organization', id: 'org_1', name: 'General Hospital' },
      { type: 'agent', id: 'agt_1', name: 'Refill Assistant' },
    ];
    const actor = { type: 'agent' as const, id: 'agt_1', orgId: 'org_1', chain };
    const stored = async () => {
      const { seq } = await audit.recordSequenced({ action: 'test.chain', actor });
      const [row] = await eventRows(selectEventRows(store.db).where('e.seq', '=', seq));
      if (!row) throw new Error('not stored');
      expect(recomputeRowHash(row, row.prev_hash)).toBe(row.hash);
      return JSON.parse(row.delegation_chain);
    };
    expect(await stored()).toEqual(chain);
    expect(await stored()).toEqual(chain);
    chain[1]!.name = 'Renamed Assistant';
    expect((await stored())[1].name).toBe('Renamed Assistant');
    chain.push({ type: 'tool', id: 'tl_1', name: 'x' });
    expect(await stored()).toHaveLength(3);
    chain[2] = { type: 'tool', id: 'tl_2', name: 'x' };
    expect((await stored())[2].id).toBe('tl_2');
  });
});
