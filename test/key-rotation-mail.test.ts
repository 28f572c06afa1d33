import fs from 'node:fs';
import path from 'node:path';
import { sql } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import { allStoredEntries } from '../src/mail/search-index.js';
import { loadConfig } from '../src/app/config.js';
import { createContainer } from '../src/app/container.js';
import { rotateKeys } from '../src/app/key-rotation.js';
import { SEALED_COLUMNS } from '../src/app/sealed-columns.js';
import { buildServer } from '../src/app/http-server.js';
import { sealedKeyVersion } from '../src/kernel/crypto/envelope.js';
import { createLogger } from '../src/kernel/log.js';
import type { Store } from '../src/store/db.js';
import { tempDir, testDialects } from './support/dialects.js';
import { seedMessages } from './support/inbound-seed.js';
import { drainDeliveries, relayEnv, type Sink, seedMailbox, startSink } from './support/outbound-sink.js';
import { runCli } from './support/processes.js';
import { createTestApp, type TestApp } from './support/test-app.js';

const silent = createLogger({ level: 'silent' });
const PATIENT = 'patient@clinic.example';
const registered = new Set(SEALED_COLUMNS.map((c) => `${c.table}.${c.sealedColumn}`));

/** Columns that may hold sealed values: text (v1 JSON envelopes; on SQLite also v2 BLOBs in TEXT columns) and binary ones. */
const textColumns = async (store: Store) => {
  const tables = await store.db.introspection.getTables();
  return tables.flatMap((t) =>
    t.columns.filter((c) => /text|char|blob|bytea/i.test(c.dataType)).map((c) => ({ table: t.name, column: c.name })),
  );
};

/**
 * Every value anywhere in the store that is in either envelope format
 * (src/kernel/crypto/envelope.ts: v1 JSON text, v2 binary), found by content
 * rather than by name, with the key version its data key is wrapped under.
 */
const envelopesInStore = async (store: Store) => {
  const out: { where: string; kv: string }[] = [];
  for (const { table, column } of await textColumns(store)) {
    const rows = await sql<{
      v: unknown;
    }>`select ${sql.ref(column)} as v from ${sql.table(table)} where ${sql.ref(column)} is not null`.execute(store.db);
    for (const r of rows.rows) {
      if (typeof r.v !== 'string' && !Buffer.isBuffer(r.v)) continue;
      try {
        out.push({ where: `${table}.${column}`, kv: sealedKeyVersion(r.v) });
      } catch {
        // Not an envelope.
      }
    }
  }
  return out;
};

/** Drops a key version from <data dir>/master.key, as an operator would once rotation says it may be dropped. */
const dropKeyVersion = (dataDir: string, version: string) => {
  const file = path.join(dataDir, 'master.key');
  const set = JSON.parse(fs.readFileSync(file, 'utf8'));
  delete set.keys[version];
  fs.writeFileSync(file, JSON.stringify(set));
};

for (const dialect of testDialects()) {
  describe(`key rotation of mail (${dialect})`, () => {
    let t: TestApp | undefined;
    let sink: Sink | undefined;
    afterEach(async () => {
      await t?.close();
      await sink?.close();
      t = undefined;
      sink = undefined;
    });

    it('covers every sealed column of the migrated schema, by name', async () => {
      t = await createTestApp(dialect);
      const sealed = (await textColumns(t.c.store)).filter((c) => /sealed/i.test(c.column)).map((c) => `${c.table}.${c.column}`);
      expect(sealed.length).toBeGreaterThan(0);
      // A column added to the schema that holds sealed values must be registered in src/app/sealed-columns.ts.
      expect(sealed.filter((c) => !registered.has(c))).toEqual([]);
      expect([...registered].filter((c) => !sealed.includes(c))).toEqual([]);
    });

    it('re-wraps message content, originals, raw bytes, approval comments and outbox envelopes, so list, read and search work after the old key is dropped', async () => {
      sink = await startSink(tempDir('mw-sink'));
      t = await createTestApp(dialect, { env: relayEnv(sink) });
      const app = t;
      const box = await seedMailbox(app, 'gated_send');
      const reviewerKey = (await app.call('POST', `/v1/humans/${box.reviewer.id}/api-keys`, app.adminKey, { scopes: ['reviewer'] })).body
        .key;
      const send = (subject: string, text: string) =>
        app.call('POST', `/v1/mailboxes/${box.mailbox.id}/send`, box.agentKey, { to: [PATIENT], subject, text });

      // Approved with an edit and a comment, then delivered: content, original, raw bytes, comment and outbox envelope are sealed.
      const edited = await send('Your appointment', 'See you Tuesday at 10:00.');
      expect(edited.status).toBe(202);
      const apr1 = (await app.call('GET', `/v1/emails/${edited.body.id}`, box.agentKey)).body.approval.id;
      expect(
        (
          await app.call('POST', `/v1/approvals/${apr1}/approve`, reviewerKey, {
            comment: 'Added the room.',
            edits: { text: 'See you Tuesday at 10:00 in room 4.' },
          })
        ).status,
      ).toBe(200);
      const rejected = await send('Lab follow-up', 'Please call the clinic.');
      const apr2 = (await app.call('GET', `/v1/emails/${rejected.body.id}`, box.agentKey)).body.approval.id;
      expect((await app.call('POST', `/v1/approvals/${apr2}/reject`, reviewerKey, { comment: 'Use the portal.' })).status).toBe(200);
      await drainDeliveries(app);
      await sink.waitFor(1);
      const [inbound] = await seedMessages(app, box.mailbox, [
        { from: 'results@lab.example', subject: 'Quarterly newsletter', text: 'Clinic hours change in spring.' },
      ]);

      const searchMacs = () => allStoredEntries(app.c.store.db);
      const macsBefore = await searchMacs();
      expect(macsBefore.size).toBeGreaterThan(0);
      const before = await envelopesInStore(app.c.store);
      const places = new Set(before.map((e) => e.where));
      // The data really exercises every mail column, so the checks below mean something.
      for (const c of [
        'messages.content_sealed',
        'messages.original_sealed',
        'messages.raw_sealed',
        'approvals.comment_sealed',
        'outbox.envelope_sealed',
      ])
        expect(places).toContain(c);
      // Found by content: a sealed value in a column rotation does not know would stay under the old key.
      expect([...places].filter((p) => !registered.has(p))).toEqual([]);
      expect(new Set(before.map((e) => e.kv))).toEqual(new Set(['1']));

      // The real CLI, as an operator runs it.
      const cli = await runCli(['keys', 'rotate'], app.env);
      expect(cli.stderr).toBe('');
      expect(cli.code).toBe(0);
      expect(cli.stdout).toContain('Retired version(s) 1');
      expect(cli.stdout).toContain('may be dropped');

      const after = await envelopesInStore(app.c.store);
      expect(after.length).toBe(before.length);
      expect(after.filter((e) => e.kv !== '2')).toEqual([]);
      // The blind search index was recomputed under the organisation's new content-index key (search-index.ts):
      // as many entries, none of them the old ones.
      const macsAfter = await searchMacs();
      expect(macsAfter.size).toBe(macsBefore.size);
      expect([...macsAfter].filter((m) => macsBefore.has(m))).toEqual([]);
      const stale = await app.c.store.db.selectFrom('messages').select('id').where('search_key_version', '!=', 2).execute();
      expect(stale).toEqual([]);

      dropKeyVersion(app.dataDir, '1');
      const c2 = await createContainer(loadConfig(app.env), { logger: silent });
      const s2 = await buildServer(c2);
      const get = async (url: string, key: string) => {
        const res = await s2.inject({ method: 'GET', url, headers: { authorization: `Bearer ${key}` } });
        return { status: res.statusCode, body: res.json() };
      };
      try {
        const list = await get(`/v1/mailboxes/${box.mailbox.id}/messages`, box.agentKey);
        expect(list.status).toBe(200);
        expect(list.body.messages.map((m: { id: string }) => m.id).sort()).toEqual([edited.body.id, rejected.body.id, inbound].sort());
        expect(list.body.partial).toBe(false);

        const read = await get(`/v1/emails/${edited.body.id}`, box.agentKey);
        expect(read.status).toBe(200);
        expect(read.body.status).toBe('delivered');
        expect(read.body.text).toBe('See you Tuesday at 10:00 in room 4.');
        expect(read.body.original).toEqual({ text: 'See you Tuesday at 10:00.' });
        expect(read.body.approval.comment).toBe('Added the room.');
        const rej = await get(`/v1/emails/${rejected.body.id}`, box.agentKey);
        expect(rej.status).toBe(200);
        expect(rej.body.approval.comment).toBe('Use the portal.');

        const found = await get(`/v1/mailboxes/${box.mailbox.id}/search?q=room%204`, box.agentKey);
        expect(found.status).toBe(200);
        expect(found.body.messages.map((m: { id: string }) => m.id)).toEqual([edited.body.id]);
        expect(found.body.partial).toBe(false);
        const byReviewer = await get(`/v1/mailboxes/${box.mailbox.id}/search?q=spring`, reviewerKey);
        expect(byReviewer.body.messages.map((m: { id: string }) => m.id)).toEqual([inbound]);
      } finally {
        await s2.close();
        await c2.close();
      }
    }, 120_000);

    it('refuses to start, naming the versions, with a key ring that cannot open every sealed value', async () => {
      t = await createTestApp(dialect);
      const box = await seedMailbox(t, 'autonomous');
      await seedMessages(t, box.mailbox, [{ from: 'results@lab.example', subject: 'Results ready' }]);
      // A rotation that knows only some of the columns (as before mail was covered) retires version 1 while mail still uses it.
      const partial = SEALED_COLUMNS.filter((c) => c.table === 'signing_keys' || c.table === 'vault_secret_versions');
      const r = await rotateKeys({
        store: t.c.store,
        keys: { masterKey: undefined, dataDir: t.dataDir },
        clock: t.c.clock,
        audit: t.c.audit,
        columns: partial,
      });
      expect(r.retired).toEqual(['1']);
      const keyFile = path.join(t.dataDir, 'master.key');
      const withBoth = fs.readFileSync(keyFile, 'utf8');
      dropKeyVersion(t.dataDir, '1');

      await expect(createContainer(loadConfig(t.env), { logger: silent })).rejects.toMatchObject({
        code: 'master_key_incomplete',
        detail: expect.stringMatching(/version\(s\) 1\b.*message content: 1 under version 1/),
      });
      const serve = await runCli(['serve'], { ...t.env, MAILWARD_HTTP_PORT: '0', MAILWARD_SMTP_PORT: '0' });
      expect(serve.code).toBe(2);
      expect(serve.stderr).toContain('key-encryption key version(s) 1');
      expect(serve.stderr).toContain('master_key_incomplete');
      // With version 1 back, a full rotation moves the mail too; then version 1 may really be dropped.
      fs.writeFileSync(keyFile, withBoth);
      const full = await rotateKeys({
        store: t.c.store,
        keys: { masterKey: undefined, dataDir: t.dataDir },
        clock: t.c.clock,
        audit: t.c.audit,
        columns: SEALED_COLUMNS,
      });
      expect(full.failed).toEqual([]);
      expect(full.remaining).toEqual([]);
      dropKeyVersion(t.dataDir, '1');
      const c2 = await createContainer(loadConfig(t.env), { logger: silent });
      await c2.close();
    }, 60_000);
  });
}
