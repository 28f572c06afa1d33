import { createCipheriv } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { keyVersionsInUse, rotateKeys } from '../src/app/key-rotation.js';
import { SEALED_COLUMNS } from '../src/app/sealed-columns.js';
import { open, rewrap, SEALED_V2, seal, sealedKeyVersion, sealedVersion, sealWith } from '../src/kernel/crypto/envelope.js';
import { sealV1ForTests } from './support/sealed-v1.js';
import { createLocalKeyRing, type KeyRing, type WrappedKey } from '../src/kernel/crypto/keyring.js';
import { contentBytes, messageAad } from '../src/mail/message-store.js';
import { migrateToLatest } from '../src/store/migrate.js';
import { testDialects } from './support/dialects.js';
import { storeMigratedTo } from './support/migration-store.js';
import { seedMessages } from './support/inbound-seed.js';
import { seedMailbox } from './support/outbound-sink.js';
import { createTestApp, type TestApp } from './support/test-app.js';
import { readVectorJson } from './support/vectors.js';

type Vector = {
  kek_version: string;
  kek_hex: string;
  data_key_hex: string;
  wrap_iv_hex: string;
  payload_iv_hex: string;
  aad: string;
  cases: { compress: boolean; flags: number; plaintext_hex: string; sealed_hex: string }[];
};

const V = readVectorJson<Vector>('sealed/v2.json');
const hex = (h: string) => Buffer.from(h, 'hex');
const ring = createLocalKeyRing([{ version: V.kek_version, key: hex(V.kek_hex) }]);

/** The real ring, but wrapping with the vector's nonce (the local ring draws one at random). */
const fixedWrapRing = (base: KeyRing, kek: Buffer, iv: Buffer): KeyRing => ({
  ...base,
  wrap: (dataKey, context): WrappedKey => {
    const c = createCipheriv('aes-256-gcm', kek, iv);
    c.setAAD(Buffer.from(`mailward/kek-wrap/v1|${context}`));
    const ct = Buffer.concat([c.update(dataKey), c.final()]);
    return { kv: base.activeVersion, iv: iv.toString('base64'), ct: ct.toString('base64'), tag: c.getAuthTag().toString('base64') };
  },
});

describe('the v2 sealed format (test/vectors/sealed, made with pyca/cryptography)', () => {
  it('opens every vector to its plaintext', () => {
    expect(V.cases.length).toBe(3);
    for (const c of V.cases) {
      const stored = hex(c.sealed_hex);
      expect(stored[0]).toBe(SEALED_V2);
      expect(stored[1]).toBe(c.flags);
      expect(sealedKeyVersion(stored)).toBe(V.kek_version);
      expect(open(ring, stored, V.aad).equals(hex(c.plaintext_hex))).toBe(true);
    }
    expect(V.cases.some((c) => c.flags === 1)).toBe(true);
  });

  it('seals the uncompressed vectors byte for byte with the same keys and nonces', () => {
    const r = fixedWrapRing(ring, hex(V.kek_hex), hex(V.wrap_iv_hex));
    for (const c of V.cases.filter((x) => x.flags === 0)) {
      const out = sealWith(r, hex(V.data_key_hex), hex(V.payload_iv_hex), hex(c.plaintext_hex), V.aad);
      expect(out.toString('hex')).toBe(c.sealed_hex);
    }
  });

  it('refuses a flipped bit anywhere, another owner, and a cleared compression flag', () => {
    const stored = hex(V.cases[2]!.sealed_hex);
    for (let i = 0; i < stored.length; i++) {
      const t = Buffer.from(stored);
      t[i]! ^= 0x01;
      expect(() => open(ring, t, V.aad), `byte ${i}`).toThrow();
    }
    expect(() => open(ring, stored, `${V.aad}x`)).toThrow(expect.objectContaining({ code: 'decrypt_failed' }));
    expect(() => open(ring, stored.subarray(0, 90), V.aad)).toThrow(expect.objectContaining({ code: 'decrypt_failed' }));
  });

  it('is about 92 bytes plus the payload, against 4/3 of it plus about 250 for the v1 JSON', () => {
    const r = createLocalKeyRing([{ version: '1', key: hex(V.kek_hex) }]);
    const pt = Buffer.alloc(3000, 7);
    const v2 = seal(r, pt, 'a');
    const v1 = sealV1ForTests(r, pt, 'a');
    expect(v2.length).toBe(3000 + 92);
    expect(v1.length).toBeGreaterThan(4000);
    // Compression is kept only when it helps.
    expect(seal(r, pt, 'a', { compress: true }).length).toBeLessThan(200);
    expect(seal(r, Buffer.from('ab'), 'a', { compress: true })[1]).toBe(0);
  });

  it('opens v1 JSON values, as text and as the UTF-8 bytes a bytea column returns, and rewraps them into v2', () => {
    const v1 = sealV1ForTests(ring, 'old value', V.aad);
    expect(sealedVersion(v1)).toBe(1);
    expect(open(ring, v1, V.aad).toString()).toBe('old value');
    expect(open(ring, Buffer.from(v1), V.aad).toString()).toBe('old value');
    const next = createLocalKeyRing(
      [
        { version: V.kek_version, key: hex(V.kek_hex) },
        { version: '2', key: Buffer.alloc(32, 9) },
      ],
      '2',
    );
    const moved = rewrap(next, v1, V.aad);
    expect(sealedVersion(moved)).toBe(2);
    expect(sealedKeyVersion(moved)).toBe('2');
    expect(open(next, moved, V.aad).toString()).toBe('old value');
    expect(() => open(ring, moved, V.aad)).toThrow(expect.objectContaining({ code: 'kek_unknown' }));
  });
});

for (const dialect of testDialects()) {
  describe(`sealed values in the store (${dialect})`, () => {
    let t: TestApp;
    beforeAll(async () => {
      t = await createTestApp(dialect);
    }, 60_000);
    afterAll(async () => {
      await t?.close();
    });

    it('migration 0038 keeps a value stored as v1 JSON text before it openable and counted under its key version', async () => {
      const { store, old: db, close } = await storeMigratedTo(dialect, '0027-oauth-records');
      try {
        const aad = 'mailward/signing-key/v1|dkim-ed25519|k1';
        const v1 = sealV1ForTests(ring, 'PRIVATE KEY PEM', aad);
        const at = '2026-01-01T00:00:00.000Z';
        await db
          .insertInto('signing_keys')
          .values({
            id: 'sk_1',
            org_id: null,
            purpose: 'dkim-ed25519',
            kid: 'k1',
            public_key: 'pub',
            private_key_sealed: v1,
            created_at: at,
          })
          .execute();
        expect(await migrateToLatest(store)).toContain('0038-sealed-binary');
        const row = await store.db.selectFrom('signing_keys').selectAll().where('id', '=', 'sk_1').executeTakeFirstOrThrow();
        // PostgreSQL: bytea holding the JSON's UTF-8; SQLite: the TEXT value as it was.
        expect(Buffer.isBuffer(row.private_key_sealed)).toBe(dialect === 'postgres');
        expect(Buffer.from(row.private_key_sealed).toString('utf8')).toBe(v1);
        expect(open(ring, row.private_key_sealed, aad).toString()).toBe('PRIVATE KEY PEM');
        const signing = SEALED_COLUMNS.filter((c) => c.table === 'signing_keys');
        expect(await keyVersionsInUse(store, signing)).toEqual([
          { version: V.kek_version, label: 'signing keys', table: 'signing_keys', column: 'private_key_sealed', count: 1 },
        ]);
        // A new value beside it is binary, and both are counted.
        const v2 = seal(ring, 'NEW PEM', 'mailward/signing-key/v1|dkim-ed25519|k2');
        await store.db
          .insertInto('signing_keys')
          .values({
            id: 'sk_2',
            org_id: null,
            purpose: 'dkim-ed25519',
            kid: 'k2',
            public_key: 'pub',
            private_key_sealed: v2,
            created_at: at,
            retired_at: null,
          })
          .execute();
        const back = await store.db
          .selectFrom('signing_keys')
          .select('private_key_sealed')
          .where('id', '=', 'sk_2')
          .executeTakeFirstOrThrow();
        expect(Buffer.isBuffer(back.private_key_sealed)).toBe(true);
        expect(Buffer.compare(back.private_key_sealed as Buffer, v2)).toBe(0);
        expect((await keyVersionsInUse(store, signing))[0]!.count).toBe(2);
      } finally {
        await close();
      }
    }, 60_000);

    it('stores new values as binary v2, opens old v1 JSON values, and key rotation rewrites them as v2', async () => {
      const box = await seedMailbox(t, 'autonomous');
      const [fresh, old] = await seedMessages(t, box.mailbox, [
        { from: 'lab@lab.example', subject: 'New format', text: 'binary' },
        { from: 'lab@lab.example', subject: 'Old format', text: 'json text' },
      ]);
      const db = t.c.store.db;
      const row = await db.selectFrom('messages').selectAll().where('id', '=', old!).executeTakeFirstOrThrow();
      const freshRow = await db.selectFrom('messages').selectAll().where('id', '=', fresh!).executeTakeFirstOrThrow();
      expect(Buffer.isBuffer(freshRow.content_sealed)).toBe(true);
      expect(sealedVersion(freshRow.content_sealed)).toBe(2);

      // A value written before migration 0038: v1 JSON (SQLite TEXT; PostgreSQL bytea holding its UTF-8, as the migration's USING leaves it).
      const content = JSON.parse(open(t.c.ring, row.content_sealed, messageAad(row, 'content')).toString());
      const v1 = sealV1ForTests(t.c.ring, contentBytes(content), messageAad(row, 'content'));
      await sql`update messages set content_sealed = ${dialect === 'postgres' ? sql`convert_to(${v1}, 'UTF8')` : sql`${v1}`} where id = ${old!}`.execute(
        db,
      );
      const stored = (await db.selectFrom('messages').select('content_sealed').where('id', '=', old!).executeTakeFirstOrThrow())
        .content_sealed;
      expect(sealedVersion(stored)).toBe(1);

      const read = await t.call('GET', `/v1/emails/${old}`, box.agentKey);
      expect(read.status).toBe(200);
      expect(read.body.subject).toBe('Old format');
      const list = await t.call('GET', `/v1/mailboxes/${box.mailbox.id}/messages`, box.agentKey);
      expect(list.body.messages.map((m: { subject: string }) => m.subject).sort()).toEqual(['New format', 'Old format']);
      // Both formats are counted by key version without decryption.
      const uses = await keyVersionsInUse(
        t.c.store,
        SEALED_COLUMNS.filter((c) => c.table === 'messages' && c.sealedColumn === 'content_sealed'),
      );
      expect(uses.reduce((n, u) => n + u.count, 0)).toBe(2);

      const r = await rotateKeys({
        store: t.c.store,
        keys: { masterKey: undefined, dataDir: t.dataDir },
        clock: t.c.clock,
        audit: t.c.audit,
        columns: SEALED_COLUMNS,
      });
      expect(r.failed).toEqual([]);
      expect(r.remaining).toEqual([]);
      const after = (await db.selectFrom('messages').select('content_sealed').where('id', '=', old!).executeTakeFirstOrThrow())
        .content_sealed;
      expect(Buffer.isBuffer(after)).toBe(true);
      expect(sealedVersion(after)).toBe(2);
      expect(sealedKeyVersion(after)).toBe(r.to);
      // No value of any sealed column is left in the v1 form.
      for (const col of SEALED_COLUMNS) {
        const rows = await sql<{
          v: unknown;
        }>`select ${sql.ref(col.sealedColumn)} as v from ${sql.table(col.table)} where ${sql.ref(col.sealedColumn)} is not null`.execute(
          db,
        );
        for (const x of rows.rows) expect(sealedVersion(x.v as Buffer), `${col.table}.${col.sealedColumn}`).toBe(2);
      }
      const again = await t.call('GET', `/v1/emails/${old}`, box.agentKey);
      expect(again.body.subject).toBe('Old format');
    }, 60_000);
  });
}
