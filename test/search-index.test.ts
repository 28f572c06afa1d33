import { execFile } from 'node:child_process';
import { createHmac, hkdfSync, randomBytes } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SCAN_BUDGET } from '../src/mail/read-service.js';
import {
  compactMailbox,
  deleteSearchEntries,
  entriesOf,
  htmlText,
  idOfRef,
  insertSearchEntry,
  occursAtWords,
  prefixedHmac,
  searchCandidates,
  searchEntryFor,
  searchKeyOf,
  storedEntriesOf,
} from '../src/mail/search-index.js';
import { migrateToLatest } from '../src/store/migrate.js';
import { testDialects } from './support/dialects.js';
import { storeMigratedTo } from './support/migration-store.js';
import { seedMessages } from './support/inbound-seed.js';
import { seedMailbox } from './support/outbound-sink.js';
import { createTestApp, type TestApp } from './support/test-app.js';
import { storedOfId } from '../src/audit/audit-columns.js';

const run = promisify(execFile);
const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const T0 = Date.parse('2026-03-01T08:00:00.000Z');
const at = (minutes: number) => new Date(T0 + minutes * 60_000).toISOString();

describe('search words (the rule the blind index serves)', () => {
  it('indexes body words whole and sender and subject words by their prefixes, after NFKC and lower-casing', () => {
    const e = entriesOf({
      from: { name: 'Dr. Zoë Ångström', address: 'Zoe.A@Lab.example' },
      subject: 'ＨｂＡ１ｃ result',
      text: 'Your creatinine is 1.2 mg/dL.',
      html: '<p>Call <b>cardiology</b></p><script>var zebra = 1</script>',
    });
    expect(e).toContain('b|creatinine');
    expect(e).toContain('b|mg');
    expect(e).toContain('b|cardiology');
    expect(e).not.toContain('b|zebra'); // scripts are not visible text
    expect(e).not.toContain('b|creat'); // body words are whole
    expect(e).not.toContain('b|1'); // one character: not indexed
    expect(e).toContain('s|hba1c'); // full-width folded by NFKC
    expect(e).toContain('s|hba');
    expect(e).not.toContain('s|hb'); // prefixes from three characters
    expect(e).toContain('f|dr'); // a whole two-character word
    expect(e).toContain('f|zoë');
    expect(e).toContain('f|ång');
    expect(e).toContain('f|lab');
    expect(e).toContain('f|exam');
    expect([...e].some((x) => x.includes('<') || x.includes('@'))).toBe(false);
  });

  it('matches at the start of a word, and with whole words in the body', () => {
    expect(occursAtWords('results <lab0@lab.example>', 'lab0@', false)).toBe(true);
    expect(occursAtWords('results <lab0@lab.example>', 'ab0', false)).toBe(false);
    expect(occursAtWords('refill 12', ' 1', false)).toBe(true); // a needle starting with a space needs no boundary
    expect(occursAtWords('your diabetes visit', 'diab', false)).toBe(true);
    expect(occursAtWords('your diabetes visit', 'diab', true)).toBe(false);
    expect(occursAtWords('your diabetes visit', 'diabetes visit', true)).toBe(true);
    expect(occursAtWords('your diabetes visit', 'abetes', true)).toBe(false);
    expect(occursAtWords('x-ray on friday', '-ray', true)).toBe(true);
    expect(occursAtWords('𝒜lpha beta', 'beta', true)).toBe(true);
  });
});

/**
 * The rule as first written (one pass over every word, each prefix and MAC computed anew with createHmac): the
 * indexer's faster form must give the same entries and the same stored MACs, or existing indexes stop matching.
 */
const plainRule = {
  entries: (c: { from?: { name: string; address: string }; subject?: string; text: string | null; html: string | null }) => {
    const fold = (x: string) => x.normalize('NFKC').toLowerCase().replace(/\s+/g, ' ');
    const words = (x: string) => x.match(/[\p{L}\p{N}]+/gu) ?? [];
    const stop = new Set(
      (
        'a an and are as at be been but by can do for from had has have he her his how i if in into is it its me my no not of on or our ' +
        'she so than that the their them then there these they this to up us was we were what when which who will with would you your ' +
        'de del el en es la las los por que se su un una y'
      ).split(' '),
    );
    const out = new Set<string>();
    for (const [tag, text] of [
      ['f', fold(`${c.from?.name ?? ''} <${c.from?.address ?? ''}>`)],
      ['s', fold(c.subject ?? '')],
    ] as const)
      for (const w of words(text)) {
        const cs = Array.from(w);
        if (cs.length === 2) out.add(`${tag}|${w}`);
        for (let n = 3; n <= Math.min(cs.length, 8); n++) out.add(`${tag}|${cs.slice(0, n).join('')}`);
      }
    for (const w of words(fold(`${c.text ?? ''} ${c.html ? htmlText(c.html) : ''}`))) {
      const cs = Array.from(w);
      if (cs.length >= 2 && !stop.has(w)) out.add(`b|${cs.slice(0, 64).join('')}`);
    }
    return out;
  },
  macs: (key: Buffer, mailboxId: string, entries: Set<string>) => {
    const k = Buffer.from(hkdfSync('sha256', key, Buffer.alloc(0), 'mailward/search-index/v1', 32));
    const macs = new Set(
      [...entries].map((e) => createHmac('sha256', k).update(`${mailboxId}|${e}`).digest().subarray(0, 5).toString('latin1')),
    );
    return Buffer.from([...macs].sort().join(''), 'latin1');
  },
};

describe('the indexer computes what the plain rule does', () => {
  // Words of many shapes: ASCII, accented, astral (two UTF-16 units per letter: 𠀀 and 𐐀 stay so after NFKC, 𝒜
  // folds to a), full-width, long, repeated, stop words.
  const pieces = [
    'the',
    'of',
    'y',
    'de',
    'HbA1c',
    'ＨｂＡ１ｃ',
    'Zoë',
    'Ångström',
    '𝒜',
    '𝒜b',
    '𠀀',
    '𠀀𠀀',
    '𐐀',
    '𐐀b',
    'x',
    'ab',
    'lab0',
    'naïve',
    'Straße',
    'ﬁle',
    '١٢٣',
    '日本語',
    'a'.repeat(63),
    'b'.repeat(64),
    'c'.repeat(65),
    '𠀀'.repeat(40),
    '𐐀'.repeat(70),
    `${'d'.repeat(63)}𠀀`,
    `${'d'.repeat(62)}𠀀`,
    'e-mail',
    "o'clock",
    'x\u00a0y',
    '\ufeffbom',
    'tab\tsep',
    'new\r\nline',
    '<b>bold</b>',
    '&amp;',
    '12.5mg',
    'İstanbul',
    'ΣΊΣΥΦΟΣ',
  ];
  const rand = (n: number) => Math.floor(Math.random() * n);
  const text = (words: number) => Array.from({ length: words }, () => pieces[rand(pieces.length)]!).join([' ', ', ', '\n', '  '][rand(4)]!);

  it('gives the same entries and stored MACs for generated messages (1,000 of them)', () => {
    const key = randomBytes(32);
    for (let i = 0; i < 1000; i++) {
      const c = {
        from: { name: text(rand(4)), address: `${text(1).replace(/\s/g, '')}@Lab.example` },
        subject: text(rand(8)),
        text: rand(5) === 0 ? null : text(rand(300)),
        html: rand(3) === 0 ? `<p>${text(rand(50))}</p><script>var zebra = 1</script>` : null,
      };
      const want = plainRule.entries(c);
      expect([...entriesOf(c)].sort()).toEqual([...want].sort());
      const row = searchEntryFor(
        { id: 'msg_0190a0b0c0d07e0f8102030405060708', mailbox_id: 'mbx_test' },
        c,
        searchKeyOf({ version: 1, key }),
      );
      expect(row.macs.equals(plainRule.macs(key, 'mbx_test', want))).toBe(true);
    }
  });

  it("computes RFC 4231's HMAC-SHA-256 test cases 1-4, 6 and 7, and createHmac's answer for any key, prefix and entry", () => {
    // RFC 4231 section 4: key, data, HMAC-SHA-256 (case 5 is a truncated output and adds nothing here).
    const aa = Buffer.alloc(131, 0xaa);
    const cases: [Buffer, Buffer, string][] = [
      [Buffer.alloc(20, 0x0b), Buffer.from('Hi There'), 'b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7'],
      [
        Buffer.from('Jefe'),
        Buffer.from('what do ya want for nothing?'),
        '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843',
      ],
      [Buffer.alloc(20, 0xaa), Buffer.alloc(50, 0xdd), '773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe'],
      [
        Buffer.from(Array.from({ length: 25 }, (_, i) => i + 1)),
        Buffer.alloc(50, 0xcd),
        '82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b',
      ],
      [
        aa,
        Buffer.from('Test Using Larger Than Block-Size Key - Hash Key First'),
        '60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54',
      ],
      [
        aa,
        Buffer.from(
          'This is a test using a larger than block-size key and a larger than block-size data. The key needs to be hashed before being used by the HMAC algorithm.',
        ),
        '9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2',
      ],
    ];
    for (const [key, data, want] of cases) {
      // The data as the prefix with an empty entry, and split into a prefix and a (textual) entry.
      expect(prefixedHmac(key, data).mac('').toString('hex')).toBe(want);
      if (data.every((b) => b < 0x80)) {
        const cut = Math.floor(data.length / 2);
        expect(prefixedHmac(key, data.subarray(0, cut)).mac(data.subarray(cut).toString()).toString('hex')).toBe(want);
      }
    }
    for (let i = 0; i < 300; i++) {
      const key = randomBytes(rand(3) === 0 ? 64 + rand(100) : 1 + rand(64));
      const prefix = randomBytes(rand(80));
      const h = prefixedHmac(key, prefix);
      // One instance serves many entries, a long one (which grows its buffer) among them.
      for (const entry of ['', text(1), text(3), 'é'.repeat(700), '𝒜'.repeat(400), text(2)])
        expect(h.mac(entry).equals(createHmac('sha256', key).update(prefix).update(entry).digest())).toBe(true);
    }
  });
});

for (const dialect of testDialects()) {
  describe(`the blind search index (${dialect})`, () => {
    let t: TestApp;
    beforeAll(async () => {
      t = await createTestApp(dialect);
    }, 60_000);
    afterAll(async () => {
      await t?.close();
    });
    const ids = (r: { body: { messages: { id: string }[] } }) => r.body.messages.map((m) => m.id);
    const searchedEvent = async (mailboxId: string) => {
      await t.c.audit.sync(); // events are sequenced by the integrator (src/audit/integrator.ts)
      return (
        await t.c.store.db
          .selectFrom('audit_events')
          .selectAll()
          .where('action', '=', 'email.searched')
          .where('target_id', '=', storedOfId(mailboxId))
          .orderBy('seq', 'desc')
          .limit(1)
          .executeTakeFirstOrThrow()
      ).details;
    };
    const examined = async (mailboxId: string) => (JSON.parse((await searchedEvent(mailboxId)) as string) as { examined: number }).examined;

    it('finds a word of the oldest message of a mailbox larger than the scan budget in one request, opening only candidates', async () => {
      const box = await seedMailbox(t, 'autonomous');
      const [needle] = await seedMessages(t, box.mailbox, [
        {
          from: 'pathology@lab.example',
          fromName: 'Westside Pathology',
          subject: 'Biopsy report',
          text: 'Benign nevus, margins clear.',
          createdAt: at(0),
        },
      ]);
      await seedMessages(
        t,
        box.mailbox,
        Array.from({ length: SCAN_BUDGET + 500 }, (_, i) => ({
          from: `p${i}@patient.example`,
          subject: `Appointment ${i}`,
          text: `See you at ${i % 12}:00 for your visit.`,
          createdAt: at(1 + i),
        })),
      );
      for (const query of ['q=nevus', 'q=margins%20clear', 'q=westside', 'from=pathology', 'subject=biop', 'q=benign&subject=report']) {
        const r = await t.call('GET', `/v1/mailboxes/${box.mailbox.id}/search?${query}&limit=10`, box.agentKey);
        expect(r.status, query).toBe(200);
        expect(ids(r), query).toEqual([needle]);
        expect(r.body.partial, query).toBe(false);
        expect(r.body.next_cursor, query).toBeNull();
        expect(await examined(box.mailbox.id), query).toBe(1);
      }
      // Lists with a sender filter use it too.
      const listed = await t.call('GET', `/v1/mailboxes/${box.mailbox.id}/messages?from=westside`, box.agentKey);
      expect(ids(listed)).toEqual([needle]);
      // Part of a body word is not a word: nothing, and still no mailbox-wide decryption.
      const part = await t.call('GET', `/v1/mailboxes/${box.mailbox.id}/search?q=evus`, box.agentKey);
      expect(ids(part)).toEqual([]);
      expect(part.body.partial).toBe(false);
      expect(await examined(box.mailbox.id)).toBe(0);
      // A common word pages through its matches newest first, every match once.
      const seen: string[] = [];
      let cursor: string | null = null;
      do {
        const r = await t.call(
          'GET',
          `/v1/mailboxes/${box.mailbox.id}/search?q=visit&limit=200${cursor ? `&cursor=${cursor}` : ''}`,
          box.agentKey,
        );
        seen.push(...ids(r));
        cursor = r.body.next_cursor;
      } while (cursor);
      expect(seen).toHaveLength(SCAN_BUDGET + 500);
      expect(new Set(seen).size).toBe(seen.length);
      expect([...seen].sort().reverse()).toEqual(seen);
    }, 240_000);

    it('stores no word and links nothing across mailboxes: the same message in two mailboxes shares no entry', async () => {
      const a = await seedMailbox(t, 'autonomous');
      const b = await seedMailbox(t, 'autonomous');
      const msg = { from: 'results@lab.example', subject: 'Warfarin dose', text: 'Your INR is 2.4; keep the warfarin dose.' };
      const [ma] = await seedMessages(t, a.mailbox, [msg]);
      const [mb] = await seedMessages(t, b.mailbox, [msg]);
      const [xa, xb] = [await storedEntriesOf(t.c.store.db, a.mailbox.id, ma!), await storedEntriesOf(t.c.store.db, b.mailbox.id, mb!)];
      expect(xa.length).toBe(entriesOf({ ...msg, from: { name: '', address: msg.from }, html: null }).size);
      expect(xa.every((m) => m.length === 10)).toBe(true);
      expect(xa.filter((m) => xb.includes(m))).toEqual([]);
      // Nothing of the index holds the word in plaintext.
      for (const table of ['search_pending', 'search_segments', 'search_postings'] as const) {
        const rows = await t.c.store.db.selectFrom(table).selectAll().execute();
        const raw = rows
          .map((r) =>
            Object.values(r)
              .map((v) => (Buffer.isBuffer(v) ? v.toString('latin1') : String(v)))
              .join('|'),
          )
          .join('\n');
        expect(raw.toLowerCase()).not.toContain('warfarin');
      }
      // The other agent cannot use its own index to find the first one's mail.
      const other = await t.call('GET', `/v1/mailboxes/${a.mailbox.id}/search?q=warfarin`, b.agentKey);
      expect(other.status).toBe(404);
    });

    it('hides a held message from its agent in the index as in the content: only its sender is searchable', async () => {
      const box = await seedMailbox(t, 'gated_all');
      const [held] = await seedMessages(t, box.mailbox, [
        { from: 'oncology@lab.example', subject: 'Pathology: malignant', text: 'Carcinoma confirmed.', status: 'pending_approval' },
      ]);
      const q = async (query: string) => ids(await t.call('GET', `/v1/mailboxes/${box.mailbox.id}/search?${query}`, box.agentKey));
      expect(await q('q=carcinoma')).toEqual([]);
      expect(await q('subject=malignant')).toEqual([]);
      expect(await q('q=oncology')).toEqual([held]);
    });

    it("follows a reviewer's edit: the new words are found, the edited-out ones are not", async () => {
      const box = await seedMailbox(t, 'gated_send');
      const reviewerKey = (await t.call('POST', `/v1/humans/${box.reviewer.id}/api-keys`, t.adminKey, { scopes: ['reviewer'] })).body.key;
      const sent = await t.call('POST', `/v1/mailboxes/${box.mailbox.id}/send`, box.agentKey, {
        to: ['patient@example.org'],
        subject: 'Your visit',
        text: 'See you Tuesday in the annex.',
      });
      expect(sent.status).toBe(202);
      const q = async (query: string) => ids(await t.call('GET', `/v1/mailboxes/${box.mailbox.id}/search?${query}`, box.agentKey));
      expect(await q('q=annex')).toEqual([sent.body.id]);
      const approval = (await t.call('GET', `/v1/emails/${sent.body.id}`, box.agentKey)).body.approval.id;
      const ok = await t.call('POST', `/v1/approvals/${approval}/approve`, reviewerKey, {
        edits: { subject: 'Your appointment', text: 'See you Tuesday in the pavilion.' },
      });
      expect(ok.status).toBe(200);
      expect(await q('q=annex')).toEqual([]);
      expect(await q('q=pavilion')).toEqual([sent.body.id]);
      expect(await q('subject=appoint')).toEqual([sent.body.id]);
      expect(await examined(box.mailbox.id)).toBe(1);
      expect(await q('subject=visit')).toEqual([]);
    });

    it('searches messages stored before the index by opening them, back-fills them once (also with two runs at once), then uses the index', async () => {
      const box = await seedMailbox(t, 'autonomous');
      const old = await seedMessages(
        t,
        box.mailbox,
        Array.from({ length: 30 }, (_, i) => ({
          from: `sender${i}@clinic.example`,
          subject: `Note ${i}`,
          text: i === 3 ? 'Bring your inhaler.' : 'Routine note.',
          createdAt: at(i),
          unindexed: true,
        })),
      );
      const search = () => t.call('GET', `/v1/mailboxes/${box.mailbox.id}/search?q=inhaler`, box.agentKey);
      expect(ids(await search())).toEqual([old[3]]);
      expect(await examined(box.mailbox.id)).toBe(30);

      const [r1, r2] = await Promise.all([t.c.mail.searchBackfill.runOnce(), t.c.mail.searchBackfill.runOnce()]);
      expect(r1.indexed + r2.indexed).toBe(30);
      await t.c.audit.sync();
      const built = await t.c.store.db.selectFrom('audit_events').selectAll().where('action', '=', 'search_index.built').execute();
      expect(built.reduce((n, e) => n + (JSON.parse(e.details as string) as { messages: number }).messages, 0)).toBe(30);
      expect((await t.c.mail.searchBackfill.runOnce()).indexed).toBe(0);

      expect(ids(await search())).toEqual([old[3]]);
      expect(await examined(box.mailbox.id)).toBe(1);
    });
  });
}

for (const dialect of testDialects()) {
  describe(`the index's segments against an oracle (${dialect})`, () => {
    let t: TestApp;
    beforeAll(async () => {
      t = await createTestApp(dialect);
    }, 60_000);
    afterAll(async () => {
      await t?.close();
    });

    it('answers every query as a brute force over the same entries, through out-of-order arrivals, rewrites and removals', async () => {
      // A seeded xorshift generator: the same run every time.
      let seed = 0x9e3779b9;
      const rnd = () => {
        seed ^= seed << 13;
        seed ^= seed >>> 17;
        seed ^= seed << 5;
        return (seed >>> 0) / 2 ** 32;
      };
      const db = t.c.store.db;
      const mailboxId = `mbx_oracle_${dialect}`;
      // Entries are 5-byte MACs; a Zipf-like vocabulary, so some entries are in most messages, most in few.
      const vocab = Array.from({ length: 60 }, (_, i) => Buffer.from([i % 7, i, 0xa0, i * 3, 0x5c]));
      const pick = () => vocab[Math.floor(vocab.length * rnd() ** 2)]!;
      const live = new Map<string, { ref: Buffer; macs: Set<string> }>();
      const hexes = (b: Buffer) => b.toString('hex');
      for (let round = 0; round < 30; round++) {
        // Arrivals in random id order: below, inside and above existing segments.
        await db.transaction().execute(async (tx) => {
          for (let i = 0; i < 20 + Math.floor(rnd() * 80); i++) {
            const ref = Buffer.from(Array.from({ length: 16 }, () => Math.floor(rnd() * 256)));
            const macs = new Set(Array.from({ length: 1 + Math.floor(rnd() * 12) }, () => hexes(pick())));
            live.set(hexes(ref), { ref, macs });
            await insertSearchEntry(tx, {
              mailbox_id: mailboxId,
              message_ref: ref,
              macs: Buffer.concat([...macs].sort().map((m) => Buffer.from(m, 'hex'))),
            });
          }
        });
        if (rnd() < 0.7) await db.transaction().execute((tx) => compactMailbox(tx, mailboxId, { force: rnd() < 0.8 }));
        if (rnd() < 0.4) {
          const gone = [...live.values()].filter(() => rnd() < 0.05).map((m) => m.ref);
          await db.transaction().execute((tx) => deleteSearchEntries(tx, mailboxId, gone));
          for (const r of gone) live.delete(hexes(r));
        }
      }
      // Segments: sorted, disjoint, at most 256 messages; with the pending rows, every live message exactly once.
      const segs = await db.selectFrom('search_segments').selectAll().where('mailbox_id', '=', mailboxId).orderBy('lo').execute();
      expect(segs.length).toBeGreaterThan(3);
      const held: string[] = [];
      for (const [i, s] of segs.entries()) {
        expect(Number(s.n)).toBeLessThanOrEqual(256);
        expect(Buffer.from(s.refs).length).toBe(16 * Number(s.n));
        if (i > 0) expect(Buffer.compare(Buffer.from(segs[i - 1]!.hi), Buffer.from(s.lo))).toBe(-1);
        for (let p = 0; p < Number(s.n); p++)
          held.push(
            Buffer.from(s.refs)
              .subarray(p * 16, p * 16 + 16)
              .toString('hex'),
          );
      }
      const pending = await db.selectFrom('search_pending').select('message_ref').where('mailbox_id', '=', mailboxId).execute();
      held.push(...pending.map((p) => Buffer.from(p.message_ref).toString('hex')));
      expect(held.sort()).toEqual([...live.keys()].sort());
      for (const m of [...live.values()].slice(0, 40))
        expect(await storedEntriesOf(db, mailboxId, idOfRef(m.ref))).toEqual([...m.macs].sort());

      // Queries of one to three words, each word one to three MACs (fields, keys), paged at several sizes.
      for (let q = 0; q < 40; q++) {
        const groups = Array.from({ length: 1 + Math.floor(rnd() * 3) }, () => Array.from({ length: 1 + Math.floor(rnd() * 3) }, pick));
        const expected = [...live.values()]
          .filter((m) => groups.every((g) => g.some((mac) => m.macs.has(hexes(mac)))))
          .map((m) => m.ref)
          .sort((a, b) => Buffer.compare(b, a))
          .map(idOfRef);
        for (const limit of [1, 9, 200]) {
          const got: string[] = [];
          let before: string | undefined;
          for (;;) {
            const page = await searchCandidates(db, mailboxId, groups, before, limit);
            expect(page.length).toBeLessThanOrEqual(limit);
            got.push(...page);
            if (page.length < limit) break;
            before = page.at(-1);
            if (got.length > expected.length) break;
          }
          expect(got, `query ${q}, limit ${limit}`).toEqual(expected);
        }
      }
    }, 240_000);

    it('migration 0041 replaces the rows of 0032, which have no mailbox, so the back-fill indexes everything again', async () => {
      const { store, old, close } = await storeMigratedTo(dialect, '0040-audit-compact');
      try {
        // The 0032 table is gone from today's schema types (`old` is untyped).
        await old
          .insertInto('search_index')
          .values({ mac: Buffer.alloc(8, 1), message_ref: Buffer.alloc(16, 2) })
          .execute();
        expect(await migrateToLatest(store)).toContain('0041-search-segments');
        await expect(old.selectFrom('search_index').selectAll().execute()).rejects.toThrow();
        expect(await store.db.selectFrom('search_pending').selectAll().execute()).toEqual([]);
        expect(await store.db.selectFrom('search_segments').selectAll().execute()).toEqual([]);
      } finally {
        await close();
      }
    });

    it("folds a mailbox's pending rows once 256 wait or the oldest has waited a minute, not before", async () => {
      const db = t.c.store.db;
      const mailboxId = `mbx_age_${dialect}`;
      let n = 0;
      // A ref as a UUIDv7 holds it: 48 bits of milliseconds first.
      const refAt = (ms: number) => {
        const b = Buffer.alloc(16);
        b.writeUIntBE(ms, 0, 6);
        b.writeUInt32BE(++n, 12);
        return b;
      };
      const add = (refs: Buffer[]) =>
        db.transaction().execute(async (tx) => {
          for (const ref of refs) await insertSearchEntry(tx, { mailbox_id: mailboxId, message_ref: ref, macs: Buffer.from('aaaaabbbbb') });
        });
      const pendingRows = async () =>
        (await db.selectFrom('search_pending').select('message_ref').where('mailbox_id', '=', mailboxId).execute()).length;
      const segments = async () =>
        (await db.selectFrom('search_segments').select('n').where('mailbox_id', '=', mailboxId).orderBy('lo').execute()).map((s) =>
          Number(s.n),
        );
      await add(Array.from({ length: 10 }, () => refAt(Date.now() - 5_000)));
      expect(await t.c.mail.searchCompactor.runOnce({ mailboxId })).toEqual({ mailboxes: 0, messages: 0 });
      expect(await pendingRows()).toBe(10);
      await add([refAt(Date.now() - 120_000)]);
      expect(await t.c.mail.searchCompactor.runOnce({ mailboxId })).toEqual({ mailboxes: 1, messages: 11 });
      expect(await pendingRows()).toBe(0);
      expect(await segments()).toEqual([11]);
      await add(Array.from({ length: 255 }, () => refAt(Date.now())));
      expect((await t.c.mail.searchCompactor.runOnce({ mailboxId })).messages).toBe(0);
      await add([refAt(Date.now())]);
      expect((await t.c.mail.searchCompactor.runOnce({ mailboxId })).messages).toBe(256);
      // The partial segment took the newer messages until full; the rest starts the next one.
      expect(await segments()).toEqual([256, 11]);
      expect(await searchCandidates(db, mailboxId, [[Buffer.from('bbbbb')]], undefined, 300)).toHaveLength(267);
    });
  });
}

// Two processes storing mail in one mailbox at once, each also running the compactor (CONTRACT.md: several
// processes may share one PostgreSQL database): no entry may be lost or doubled.
describe.skipIf(!testDialects().includes('postgres'))('search entries from two processes (postgres)', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp('postgres');
  }, 60_000);
  afterAll(async () => {
    await t?.close();
  });

  it('finds every message two processes stored and compacted concurrently, each once', async () => {
    const box = await seedMailbox(t, 'autonomous');
    const child = (label: string) =>
      run(process.execPath, ['--import', 'tsx', 'test/support/search-inserter.ts', '300', label], {
        cwd: repoRoot,
        env: { ...process.env, ...t.env, MAILBOX_ID: box.mailbox.id, MAILBOX_ADDRESS: box.mailbox.address, ORG_ID: t.orgId },
      });
    const out = await Promise.all([child('a'), child('b')]);
    expect(out.map((o) => o.stdout.trim())).toEqual(['a done', 'b done']);
    await t.c.mail.searchCompactor.runOnce({ force: true });
    expect(await t.c.store.db.selectFrom('search_pending').select('message_ref').execute()).toEqual([]);
    const search = async (q: string, cursor?: string) =>
      (await t.call('GET', `/v1/mailboxes/${box.mailbox.id}/search?q=${q}&limit=200${cursor ? `&cursor=${cursor}` : ''}`, box.agentKey))
        .body as { messages: { id: string }[]; next_cursor: string | null };
    const all: string[] = [];
    let cursor: string | null = null;
    do {
      const r = await search('shared', cursor ?? undefined);
      all.push(...r.messages.map((m) => m.id));
      cursor = r.next_cursor;
    } while (cursor);
    expect(all).toHaveLength(600);
    expect(new Set(all).size).toBe(600);
    for (const label of ['a', 'b'])
      for (const i of [0, 1, 99, 150, 299]) expect((await search(`w${label}n${i}`)).messages, `${label}${i}`).toHaveLength(1);
    const segs = await t.c.store.db
      .selectFrom('search_segments')
      .selectAll()
      .where('mailbox_id', '=', box.mailbox.id)
      .orderBy('lo')
      .execute();
    expect(segs.reduce((n, s) => n + Number(s.n), 0)).toBe(600);
    for (let i = 1; i < segs.length; i++) expect(Buffer.compare(Buffer.from(segs[i - 1]!.hi), Buffer.from(segs[i]!.lo))).toBe(-1);
  }, 240_000);
});
