import fs from 'node:fs';
import path from 'node:path';
import { DOMAIN_EVENT_TYPES } from '../src/events/event-types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  isLegalTransition,
  MESSAGE_STATUSES,
  MESSAGE_TRANSITIONS,
  type MessageTransition,
  moveMessage,
} from '../src/mail/message-lifecycle.js';
import { toMessageRecord } from '../src/mail/messages-repo.js';
import { toApprovalRecord } from '../src/oversight/approvals-repo.js';
import { toOutboxRecord } from '../src/queue/outbox-repo.js';
import { testDialects } from './support/dialects.js';
import { seedMessages } from './support/inbound-seed.js';
import { seedMailbox } from './support/outbound-sink.js';
import { createTestApp, type TestApp } from './support/test-app.js';

const src = path.resolve(import.meta.dirname, '..', 'src');
const sources = (dir: string): string[] =>
  fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return p.endsWith(`${path.sep}migrations`) ? [] : sources(p);
    return e.name.endsWith('.ts') && !e.name.endsWith('.test.ts') ? [p] : [];
  });

describe('the message lifecycle table', () => {
  it('names only CONTRACT statuses, and every status but the initial ones is reached by some transition', () => {
    for (const t of Object.values(MESSAGE_TRANSITIONS)) {
      expect(MESSAGE_STATUSES).toContain(t.to);
      for (const f of t.from) expect(MESSAGE_STATUSES).toContain(f);
    }
    const reached = new Set<string>(Object.values(MESSAGE_TRANSITIONS).map((t) => t.to));
    // pending_approval (a new outbound message, or held inbound mail) and a new inbound message's statuses are initial.
    expect(MESSAGE_STATUSES.filter((s) => !reached.has(s) && s !== 'pending_approval')).toEqual([]);
    expect(isLegalTransition('pending_approval', 'queued')).toBe(true);
    expect(isLegalTransition('delivered', 'queued')).toBe(false);
    expect(isLegalTransition('cancelled', 'sending')).toBe(false);
    expect(isLegalTransition('rejected', 'received')).toBe(false);
  });

  it('is the only code that writes messages.status (migrations aside)', () => {
    const writers = sources(src).filter((f) => {
      const text = fs.readFileSync(f, 'utf8');
      return [...text.matchAll(/updateTable\('messages'\)([\s\S]{0,400}?)\.(execute|executeTakeFirst)\(/g)].some((m) =>
        /\.set\(\{[^)]*\bstatus\b\s*[:,}]/.test(m[1] ?? ''),
      );
    });
    expect(writers.map((f) => path.relative(src, f))).toEqual(['mail/message-lifecycle.ts']);
  });

  it('leaves every write of the outbox to the outbox repo', () => {
    const writers = sources(src).filter((f) => /(insertInto|updateTable|deleteFrom)\('outbox'\)/.test(fs.readFileSync(f, 'utf8')));
    expect(writers.map((f) => path.relative(src, f))).toEqual(['queue/outbox-repo.ts']);
  });

  it('leaves every other write of messages to the messages repo', () => {
    const writers = sources(src).filter((f) => /(insertInto|updateTable|deleteFrom)\('messages'\)/.test(fs.readFileSync(f, 'utf8')));
    expect(writers.map((f) => path.relative(src, f)).sort()).toEqual(['mail/message-lifecycle.ts', 'mail/messages-repo.ts']);
  });

  it('leaves every write of the domain-event log to the log itself', () => {
    const writers = sources(src).filter((f) =>
      /(insertInto|updateTable|deleteFrom)\('(domain_events|event_heads)'\)|into event_heads/.test(fs.readFileSync(f, 'utf8')),
    );
    expect(writers.map((f) => path.relative(src, f))).toEqual(['events/events-log.ts']);
  });

  it('names a domain event for every transition that a consumer can see', () => {
    for (const [name, t] of Object.entries(MESSAGE_TRANSITIONS)) {
      if (name === 'claim') expect(t.domain).toBeNull();
      else expect([name, t.domain && t.domain in DOMAIN_EVENT_TYPES]).toEqual([name, true]);
    }
  });

  // Reads too (STYLE.md: one repo per table, JSON columns mapped there): a query of messages, approvals or the outbox
  // anywhere else in src fails. Each repo may join the others' tables where one statement needs both, named here:
  // the approvals repo's reviewer queue reads the held message's PHI columns (oversight cannot import mail's repo),
  // the messages repo's accounting of disclosures reads the approver, and its delivery read (messageForDelivery)
  // counts the message's outbox jobs. The inbound store transaction reads the duplicate check through messages-repo's
  // duplicateIdOf. Not seen by a scan and left on purpose:
  // app/key-rotation.ts and app/backup.ts walk every sealed column or table by name (src/app/sealed-columns.ts).
  const READER = (table: string) =>
    new RegExp(`selectFrom\\(\\s*\\[?\\s*'${table}( as \\w+)?'|Join\\(\\s*'${table}( as \\w+)?'|\\b(from|join)\\s+${table}\\b`, 'i');
  const readersOf = (table: string) =>
    sources(src)
      .filter((f) => READER(table).test(fs.readFileSync(f, 'utf8')))
      .map((f) => path.relative(src, f))
      .sort();

  it('leaves every read of messages to the messages repo, and the approvals repo for its queue join', () => {
    expect(readersOf('messages')).toEqual(['mail/messages-repo.ts', 'oversight/approvals-repo.ts']);
  });

  it('leaves every read of approvals to the approvals repo, and the messages repo for its disclosure join', () => {
    expect(readersOf('approvals')).toEqual(['mail/messages-repo.ts', 'oversight/approvals-repo.ts']);
  });

  it("leaves every read of the outbox to the outbox repo, and the messages repo for its delivery read's job count", () => {
    expect(readersOf('outbox')).toEqual(['mail/messages-repo.ts', 'queue/outbox-repo.ts']);
  });

  it('finds a reader the scan must catch: a query in another file, a join, an aliased table and raw SQL', () => {
    for (const [table, text] of [
      ['messages', "db.selectFrom('messages').selectAll()"],
      ['messages', "db.selectFrom('approvals as a').innerJoin('messages as m', 'm.id', 'a.message_id')"],
      ['approvals', "tx.selectFrom('approvals as a').select('a.id')"],
      ['outbox', 'sql`select count(*) from outbox`'],
    ] as const)
      expect([table, READER(table).test(text)]).toEqual([table, true]);
    expect(READER('messages').test("db.selectFrom('message_events')")).toBe(false);
  });

  it('maps JSON columns only in the repos: no other file parses a messages, approvals or outbox JSON column', () => {
    const column =
      /JSON\.parse\([^)]*\b(references_ids|tags|system_tags|status_reason|phi_findings|auth_results|on_behalf_of|reasons|decision_reason|edits|signature|actor_chain)\b/;
    const parsers = sources(src)
      .filter((f) => !/(messages-repo|approvals-repo|outbox-repo)\.ts$/.test(f))
      .filter((f) => column.test(fs.readFileSync(f, 'utf8')))
      .map((f) => path.relative(src, f));
    // The templates repo parses its own table's `signature` column (template_versions), which shares the name.
    expect(parsers).toEqual(['templates/templates-repo.ts']);
  });

  it('leaves every write of approvals to the approvals repo', () => {
    const writers = sources(src).filter((f) => /(insertInto|updateTable|deleteFrom)\('approvals'\)/.test(fs.readFileSync(f, 'utf8')));
    expect(writers.map((f) => path.relative(src, f))).toEqual(['oversight/approvals-repo.ts']);
  });
});

describe('the repos map JSON columns to typed values', () => {
  it('parses every JSON column a row or projection has, and leaves the others as they are', () => {
    const m = toMessageRecord({
      id: 'msg_1',
      tags: '["a"]',
      system_tags: '["phi"]',
      references_ids: '["<p@x>"]',
      status_reason: null,
      phi_findings: null,
      auth_results: '{"spf":null,"dkim":[],"dmarc":null,"arc":null,"flags":["dmarc_fail"]}',
      on_behalf_of: '{"id":"hum_1","name":"Dr A","npi":null,"category":"treatment","grant_id":"grt_1"}',
    });
    expect(m).toEqual({
      id: 'msg_1',
      tags: ['a'],
      system_tags: ['phi'],
      references_ids: ['<p@x>'],
      status_reason: null,
      phi_findings: [],
      auth_results: { spf: null, dkim: [], dmarc: null, arc: null, flags: ['dmarc_fail'] },
      on_behalf_of: { id: 'hum_1', name: 'Dr A', npi: null, category: 'treatment', grant_id: 'grt_1' },
    });
    expect(toMessageRecord({ id: 'msg_2', is_read: 0 })).toEqual({ id: 'msg_2', is_read: 0 });
    expect(toApprovalRecord({ reasons: '[{"code":"phi"}]', decision_reason: null, edits: null, signature: null })).toEqual({
      reasons: [{ code: 'phi' }],
      decision_reason: null,
      edits: [],
      signature: null,
    });
    expect(toOutboxRecord({ actor_chain: '[{"type":"agent","id":"agt_1","name":"A"}]' } as never).actor_chain).toEqual([
      { type: 'agent', id: 'agt_1', name: 'A' },
    ]);
  });

  it('fails closed with 500 internal, naming the column and never the value, on a malformed stored value', () => {
    for (const [fn, row, column] of [
      [toMessageRecord, { tags: 'not json' }, 'messages.tags'],
      [toMessageRecord, { system_tags: '[1]' }, 'messages.system_tags'],
      [toMessageRecord, { phi_findings: '[{"field":"text"}]' }, 'messages.phi_findings'],
      [toMessageRecord, { status_reason: '"held"' }, 'messages.status_reason'],
      [toApprovalRecord, { reasons: '[{"types":["mrn"]}]' }, 'approvals.reasons'],
      [toOutboxRecord, { actor_chain: '{}' }, 'outbox.actor_chain'],
    ] as const) {
      let err: unknown;
      try {
        (fn as (r: object) => unknown)(row);
      } catch (e) {
        err = e;
      }
      expect(err).toMatchObject({ code: 'internal', status: 500 });
      expect((err as Error).message).toContain(column);
      expect((err as Error).message).not.toContain(Object.values(row)[0]);
    }
  });
});

for (const dialect of testDialects()) {
  describe(`moving a message through the table (${dialect})`, () => {
    let t: TestApp;
    let box: Awaited<ReturnType<typeof seedMailbox>>;

    beforeAll(async () => {
      t = await createTestApp(dialect);
      box = await seedMailbox(t, 'autonomous');
    }, 60_000);
    afterAll(async () => {
      await t?.close();
    });

    it('applies every transition from each of its statuses and refuses it from every other status', async () => {
      // One outbound message per status; every transition is tried on each, each on a fresh copy.
      for (const [name, tr] of Object.entries(MESSAGE_TRANSITIONS) as [
        MessageTransition,
        (typeof MESSAGE_TRANSITIONS)[MessageTransition],
      ][]) {
        const ids = await seedMessages(
          t,
          box.mailbox,
          MESSAGE_STATUSES.map((status) => ({
            direction: 'outbound' as const,
            status,
            from: box.mailbox.address,
            subject: `${name} ${status}`,
          })),
        );
        for (const [i, status] of MESSAGE_STATUSES.entries()) {
          const id = ids[i]!;
          const moved = await moveMessage(t.c.store.db, id, name, { updated_at: new Date().toISOString() });
          const legal = (tr.from as readonly string[]).includes(status);
          expect([name, status, moved]).toEqual([name, status, legal ? 1 : 0]);
          const row = await t.c.store.db.selectFrom('messages').select('status').where('id', '=', id).executeTakeFirstOrThrow();
          expect([name, status, row.status]).toEqual([name, status, legal ? tr.to : status]);
          // A move writes its domain event in the same statement sequence; a refused one writes none.
          const events = await t.c.store.db.selectFrom('domain_events').select('type').where('email_id', '=', id).execute();
          const types = events.map((e) => e.type).filter((x) => x !== 'email.submitted');
          expect([name, status, types]).toEqual([name, status, legal && tr.domain ? [tr.domain] : []]);
        }
      }
    }, 120_000);

    it('moves a message once when two movers race: one compare-and-set wins', async () => {
      const [id] = await seedMessages(t, box.mailbox, [
        { direction: 'outbound', status: 'queued', from: box.mailbox.address, subject: 'race' },
      ]);
      const results = await Promise.all([
        t.c.store.db.transaction().execute((tx) => moveMessage(tx, id!, 'cancel')),
        t.c.store.db.transaction().execute((tx) => moveMessage(tx, id!, 'claim')),
      ]);
      expect(results.sort()).toEqual([0, 1]);
    });
  });
}
