import { createHmac, randomBytes } from 'node:crypto';
import type { KeyRing, WrappedKey } from '../kernel/crypto/keyring.js';
import { normaliseAddress } from '../phi/consent-service.js';
import { compiledFor, type Executor, runCompiled, type Store } from '../store/db.js';
import type { MessagesTable, RecipientIndexTable, SearchPendingTable } from '../store/schema.js';
import type { MessageContent } from './mime.js';
import { openContent } from './message-store.js';
import { indexPage, searchKeyInUse, setSearchKeyVersion } from './messages-repo.js';
import { compactMailbox, deleteSearchEntries, insertSearchEntry, refOf, searchEntryFor, searchKeyOf } from './search-index.js';

/**
 * The recipient index (writer of `recipient_index` and `recipient_index_keys`): HMAC-SHA-256, under a per-organisation
 * key wrapped by the key ring, of every normalised sender and recipient address of a message. It answers "which
 * messages went to this address" (45 CFR 164.528 accounting of disclosures, 164.404 breach scope) without storing
 * an address in plaintext; an attacker holding the database but not the master key cannot test guesses against it.
 */

const MAC_PREFIX = 'mailward/recipient-index/v1|';
const wrapContext = (orgId: string, version: number) => `recipient-index-key|${orgId}|${version}`;

type Role = RecipientIndexTable['role'];
export type IndexKey = { version: number; key: Buffer };
/** What the indexes read of a message's content. */
export type IndexedContent = Pick<MessageContent, 'from' | 'to' | 'cc' | 'bcc' | 'subject' | 'text' | 'html'>;

const cache = new Map<string, Buffer>();
const unwrapKey = (ring: KeyRing, orgId: string, version: number, wrapped: string): Buffer => {
  const id = `${orgId}|${version}|${wrapped}`;
  let k = cache.get(id);
  if (!k) {
    k = ring.unwrap(JSON.parse(wrapped) as WrappedKey, wrapContext(orgId, version));
    cache.set(id, k);
  }
  return k;
};

/** An organisation's content-index key from its row (version and wrapped key), unwrapped once per row. */
export const indexKeyOf = (ring: KeyRing, orgId: string, version: number, wrapped: string): IndexKey => ({
  version,
  key: unwrapKey(ring, orgId, version, wrapped),
});

export const addressMac = (key: Buffer, address: string) =>
  createHmac('sha256', key)
    .update(MAC_PREFIX + normaliseAddress(address))
    .digest('hex');

/** Every live key of the organisation, newest first (a lookup computes the MAC under each). */
export const indexKeys = async (ex: Executor, ring: KeyRing, orgId: string): Promise<IndexKey[]> => {
  // Compiled once (src/store/db.ts compiledFor): every stored message reads its organisation's keys.
  const compiled = compiledFor(ex, 'indexKeys', 1, ([org]) =>
    ex
      .selectFrom('recipient_index_keys')
      .selectAll()
      .where('org_id', '=', org as string)
      .where('retired_at', 'is', null)
      .orderBy('version', 'desc'),
  );
  const { rows } = await runCompiled(ex, compiled(orgId));
  return rows.map((r) => ({ version: Number(r.version), key: unwrapKey(ring, orgId, Number(r.version), r.key_wrapped) }));
};

const createKey = async (ex: Executor, ring: KeyRing, orgId: string, version: number, at: string) => {
  const key = randomBytes(32);
  await ex
    .insertInto('recipient_index_keys')
    .values({
      org_id: orgId,
      version,
      key_wrapped: JSON.stringify(ring.wrap(key, wrapContext(orgId, version))),
      created_at: at,
      retired_at: null,
    })
    .onConflict((oc) => oc.doNothing())
    .execute();
};

/** The organisation's newest key, created on first use (a concurrent creator's key wins: insert-or-ignore, then read). */
export const activeIndexKey = async (ex: Executor, ring: KeyRing, orgId: string, at: string): Promise<IndexKey> => {
  const keys = await indexKeys(ex, ring, orgId);
  if (keys[0]) return keys[0];
  await createKey(ex, ring, orgId, 1, at);
  const again = await indexKeys(ex, ring, orgId);
  return again[0]!;
};

/** The MACs of `address` under every live key of the organisation, for a lookup. */
export const macsFor = async (ex: Executor, ring: KeyRing, orgId: string, address: string) =>
  (await indexKeys(ex, ring, orgId)).map((k) => addressMac(k.key, address));

const entriesOf = (c: Pick<MessageContent, 'from' | 'to' | 'cc' | 'bcc'>): { role: Role; address: string }[] => [
  ...(c.from?.address ? [{ role: 'from' as const, address: c.from.address }] : []),
  ...c.to.map((address) => ({ role: 'to' as const, address })),
  ...c.cc.map((address) => ({ role: 'cc' as const, address })),
  ...(c.bcc ?? []).map((address) => ({ role: 'bcc' as const, address })),
];

const INDEX_COLUMNS = [
  'org_id',
  'message_id',
  'role',
  'address_mac',
  'key_version',
  'direction',
  'created_at',
] as const satisfies readonly (keyof RecipientIndexTable)[];
/** Messages with more index rows (long recipient lists) insert them through Kysely as built, not a cached statement per count. */
const COMPILED_ROWS_MAX = 8;

const rowsFor = (
  m: { id: string; org_id: string; direction: string; created_at: string },
  c: Pick<MessageContent, 'from' | 'to' | 'cc' | 'bcc'>,
  k: IndexKey,
): RecipientIndexTable[] => {
  const seen = new Set<string>();
  const out: RecipientIndexTable[] = [];
  for (const e of entriesOf(c)) {
    const mac = addressMac(k.key, e.address);
    if (seen.has(`${e.role}|${mac}`)) continue;
    seen.add(`${e.role}|${mac}`);
    out.push({
      org_id: m.org_id,
      message_id: m.id,
      role: e.role,
      address_mac: mac,
      key_version: k.version,
      direction: m.direction,
      created_at: m.created_at,
    });
  }
  return out;
};

/**
 * Indexes a new message, in the transaction that inserts it (messages-repo.ts insertMessage), under `k` (the
 * organisation's active content-index key, which insertMessage stores as the row's `search_key_version`): its
 * addresses' HMACs in the recipient index, and its words in the blind search index (search-index.ts).
 */
export const indexMessage = async (
  tx: Executor,
  k: IndexKey,
  m: { id: string; org_id: string; mailbox_id: string; direction: string; created_at: string },
  c: IndexedContent,
) => {
  const rows = rowsFor(m, c, k);
  if (rows.length > 0 && rows.length <= COMPILED_ROWS_MAX) {
    // Compiled once per row count (src/store/db.ts compiledFor); a message has a few addresses.
    const compiled = compiledFor(tx, `recipientIndex:${rows.length}`, rows.length * INDEX_COLUMNS.length, (v) =>
      tx
        .insertInto('recipient_index')
        .values(rows.map((_, r) => Object.fromEntries(INDEX_COLUMNS.map((col, j) => [col, v[r * INDEX_COLUMNS.length + j]])) as never)),
    );
    await runCompiled(tx, compiled(...rows.flatMap((r) => INDEX_COLUMNS.map((col) => r[col]))));
  } else if (rows.length > 0) await tx.insertInto('recipient_index').values(rows).execute();
  await insertSearchEntry(tx, searchEntryFor(m, c, searchKeyOf(k)));
};

/**
 * A reviewer edited a held message (approvals-service.ts): its recipient-index rows and search entries are
 * recomputed from the new content under the organisation's active key, in the decision's transaction.
 */
export const reindexMessage = async (
  tx: Executor,
  ring: KeyRing,
  m: Pick<MessagesTable, 'id' | 'org_id' | 'mailbox_id' | 'direction' | 'created_at' | 'content_sealed' | 'search_key_version'>,
  // The content before the edit: no longer needed, the segments find the message by its id (search-index.ts).
  _before: IndexedContent,
  after: IndexedContent,
) => {
  const k = await activeIndexKey(tx, ring, m.org_id, m.created_at);
  await tx.deleteFrom('recipient_index').where('message_id', '=', m.id).execute();
  await deleteSearchEntries(tx, m.mailbox_id, [refOf(m.id)]);
  await indexMessage(tx, k, m, after);
  await setSearchKeyVersion(tx, m.id, k.version);
};

export type RekeyResult = { orgs: number; reindexed: number; kept_under_old_key: number; retired_keys: number };

/**
 * Re-keys the index (`mailward keys rotate`): each organisation gets a new HMAC key and every message whose content
 * is still stored is indexed again under it. A message whose content retention purged cannot be recomputed: its
 * rows stay under their old key, which is kept (re-wrapped under the active key-encryption key) until no row uses
 * it, then retired. Every kept key is re-wrapped so no index key stays under a retiring KEK version.
 */
export const rekeyRecipientIndex = async (store: Store, ring: KeyRing, at: string): Promise<RekeyResult> => {
  const result: RekeyResult = { orgs: 0, reindexed: 0, kept_under_old_key: 0, retired_keys: 0 };
  const orgs = await store.db.selectFrom('organizations').select('id').execute();
  for (const { id: orgId } of orgs) {
    result.orgs++;
    const current = await store.db.selectFrom('recipient_index_keys').select('version').where('org_id', '=', orgId).execute();
    const next = Math.max(0, ...current.map((r) => Number(r.version))) + 1;
    await createKey(store.db, ring, orgId, next, at);
    const k = (await indexKeys(store.db, ring, orgId)).find((x) => x.version === next)!;
    let after = '';
    const touched = new Set<string>();
    for (;;) {
      const page = await indexPage(store.db, orgId, after, 200);
      if (page.length === 0) break;
      await store.db.transaction().execute(async (tx) => {
        // The page's search entries go per mailbox in one pass (one rewrite per segment), then come back pending
        // under the new key; the compactor below folds them.
        const entries = new Map<string, SearchPendingTable[]>();
        for (const m of page) {
          if (m.content_purged_at) {
            result.kept_under_old_key++;
            continue;
          }
          const c = openContent(ring, m, m.content_sealed);
          await tx.deleteFrom('recipient_index').where('message_id', '=', m.id).execute();
          const rows = rowsFor(m, c, k);
          if (rows.length > 0) await tx.insertInto('recipient_index').values(rows).execute();
          const list = entries.get(m.mailbox_id) ?? [];
          list.push(searchEntryFor(m, c, searchKeyOf(k)));
          entries.set(m.mailbox_id, list);
          await setSearchKeyVersion(tx, m.id, next);
          result.reindexed++;
        }
        for (const [mailboxId, list] of entries) {
          await deleteSearchEntries(
            tx,
            mailboxId,
            list.map((e) => e.message_ref),
          );
          for (const e of list) await insertSearchEntry(tx, e);
          touched.add(mailboxId);
        }
      });
      for (const mailboxId of touched) await store.db.transaction().execute((tx) => compactMailbox(tx, mailboxId));
      after = page.at(-1)!.id;
    }
    for (const mailboxId of touched) await store.db.transaction().execute((tx) => compactMailbox(tx, mailboxId, { force: true }));
    // Old keys: retired when no row uses them, else re-wrapped under the active KEK.
    for (const old of await store.db
      .selectFrom('recipient_index_keys')
      .selectAll()
      .where('org_id', '=', orgId)
      .where('version', '<', next)
      .where('retired_at', 'is', null)
      .execute()) {
      const used =
        (await store.db
          .selectFrom('recipient_index')
          .select('message_id')
          .where('org_id', '=', orgId)
          .where('key_version', '=', old.version)
          .executeTakeFirst()) ??
        // Search entries under it (a message stored while this pass ran, before it saw the new key).
        (await searchKeyInUse(store.db, orgId, Number(old.version)));
      if (!used) {
        await store.db
          .updateTable('recipient_index_keys')
          .set({ retired_at: at, key_wrapped: '{}' })
          .where('org_id', '=', orgId)
          .where('version', '=', old.version)
          .execute();
        result.retired_keys++;
      } else {
        const key = unwrapKey(ring, orgId, Number(old.version), old.key_wrapped);
        await store.db
          .updateTable('recipient_index_keys')
          .set({ key_wrapped: JSON.stringify(ring.wrap(key, wrapContext(orgId, Number(old.version)))) })
          .where('org_id', '=', orgId)
          .where('version', '=', old.version)
          .execute();
      }
    }
  }
  return result;
};
