import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { sql } from 'kysely';
import { AppError } from '../kernel/errors.js';
import { createLocalKeyRing, type KekEntry, type KeyRing } from '../kernel/crypto/keyring.js';
import type { Clock } from '../kernel/clock.js';
import type { Store } from '../store/db.js';

export const masterKeyPath = (dataDir: string) => path.join(dataDir, 'master.key');

/** Writes a file that must not exist yet, atomically and with mode 0600; returns false if another process won. */
export const writeSecretFileExclusive = (file: string, content: string): boolean => {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  fs.writeFileSync(tmp, content, { mode: 0o600 });
  try {
    fs.linkSync(tmp, file);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw e;
  } finally {
    fs.rmSync(tmp, { force: true });
  }
};

/** A set of key-encryption keys by version, one of them active (the one new data keys are wrapped under). */
export type KekSet = { entries: KekEntry[]; active: string };

/**
 * Parses a key set: plain base64 of 32 bytes (version "1") or JSON
 * {"active":"2","keys":{"1":"b64","2":"b64"}}. Messages name the source, never key bytes.
 */
export const parseKeySet = (text: string, where: string): KekSet => {
  const t = text.trim();
  if (t.startsWith('{')) {
    let j: { active?: unknown; keys?: unknown };
    try {
      j = JSON.parse(t) as typeof j;
    } catch {
      throw new AppError('master_key_invalid', 500, `${where} is not valid JSON.`);
    }
    if (typeof j.active !== 'string' || !j.keys || typeof j.keys !== 'object') {
      throw new AppError('master_key_invalid', 500, `${where} must look like {"active":"2","keys":{"1":"<base64>","2":"<base64>"}}.`);
    }
    const entries = Object.entries(j.keys as Record<string, unknown>).map(([version, k]) => {
      const key = typeof k === 'string' ? Buffer.from(k, 'base64') : Buffer.alloc(0);
      if (key.length !== 32 || !/^[0-9A-Za-z._-]{1,32}$/.test(version)) {
        throw new AppError(
          'master_key_invalid',
          500,
          `${where}: key version ${JSON.stringify(version).slice(0, 40)} must be base64 of exactly 32 bytes.`,
        );
      }
      return { version, key };
    });
    return { entries, active: j.active };
  }
  const key = Buffer.from(t, 'base64');
  if (key.length !== 32) throw new AppError('master_key_invalid', 500, `${where} must hold base64 of exactly 32 bytes.`);
  return { entries: [{ version: '1', key }], active: '1' };
};

const parseKeyFile = (text: string, file: string): KekSet => parseKeySet(text, file);

export const serializeKeySet = (set: KekSet) =>
  `${JSON.stringify({ active: set.active, keys: Object.fromEntries(set.entries.map((e) => [e.version, e.key.toString('base64')])) }, null, 2)}\n`;

/** Replaces a secret file atomically (temp file with mode 0600, fsync, rename). */
export const replaceSecretFile = (file: string, content: string) => {
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  const fd = fs.openSync(tmp, 'wx', 0o600);
  try {
    fs.writeSync(fd, content);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
};

const RELOAD_CHECK_MS = 1000;

/**
 * A ring over <data dir>/master.key that follows the file: `mailward keys
 * rotate` (another process) appends a version and makes it active, and every
 * running server picks it up within a second, or at once when it meets a
 * value wrapped under a version it does not have yet. So reads keep working
 * during and after a rotation. A reloaded file that changes the bytes of a
 * version we already hold is ignored (the old ring stays).
 */
const createFileKeyRing = (file: string): KeyRing => {
  const build = () => {
    const set = parseKeyFile(fs.readFileSync(file, 'utf8'), file);
    return createLocalKeyRing(set.entries, set.active);
  };
  const stampOf = () => {
    try {
      const st = fs.statSync(file);
      return `${st.mtimeMs}:${st.size}:${st.ino}`;
    } catch {
      return 'missing';
    }
  };
  let ring = build();
  let stamp = stampOf();
  let checkedAt = Date.now();
  const current = (force = false): KeyRing => {
    const now = Date.now();
    if (!force && now - checkedAt < RELOAD_CHECK_MS) return ring;
    checkedAt = now;
    const s = stampOf();
    if (s === stamp || s === 'missing') return ring;
    try {
      const next = build();
      const compatible = ring.versions().every((v) => !next.versions().includes(v) || next.fingerprint(v) === ring.fingerprint(v));
      if (compatible) ring = next;
      stamp = s;
    } catch {
      // A half-written or broken file: keep the ring we have.
    }
    return ring;
  };
  return {
    get activeVersion() {
      return current().activeVersion;
    },
    versions: () => current().versions(),
    wrap: (dataKey, context) => current().wrap(dataKey, context),
    unwrap: (w, context) => {
      const r = current();
      return (r.versions().includes(w.kv) ? r : current(true)).unwrap(w, context);
    },
    fingerprint: (v) => {
      const r = current();
      return (r.versions().includes(v) ? r : current(true)).fingerprint(v);
    },
  };
};

/**
 * Where the key-encryption keys come from. This is the seam for an external
 * KMS: a KMS source would hold the KEKs wrapped by the KMS and unwrap them at
 * start-up, then hand them to the same local ring (envelope operations stay
 * synchronous and local). Today: MAILWARD_MASTER_KEYS, MAILWARD_MASTER_KEY or the key file.
 */
export type KeySourceOptions = { masterKey: string | undefined; masterKeys?: string | undefined; dataDir: string };
export type KeySourceKind = 'env-ring' | 'env' | 'file';
export const keySourceKind = (o: KeySourceOptions): KeySourceKind => (o.masterKeys ? 'env-ring' : o.masterKey ? 'env' : 'file');

/**
 * The key-encryption keys: MAILWARD_MASTER_KEYS (versioned JSON) if set, else
 * MAILWARD_MASTER_KEY (version "1"), else <data dir>/master.key.
 * With `create`, a missing file is generated (mode 0600). Without it, a
 * missing key stops start-up: data sealed under a key we do not have is useless.
 */
export const loadKeyRing = (opts: KeySourceOptions & { create: boolean }): KeyRing => {
  if (opts.masterKeys) {
    const set = parseKeySet(opts.masterKeys, 'MAILWARD_MASTER_KEYS');
    return createLocalKeyRing(set.entries, set.active);
  }
  if (opts.masterKey) return createLocalKeyRing([{ version: '1', key: Buffer.from(opts.masterKey, 'base64') }], '1');
  const file = masterKeyPath(opts.dataDir);
  if (!fs.existsSync(file)) {
    if (!opts.create) {
      throw new AppError(
        'master_key_missing',
        500,
        `No master key: set MAILWARD_MASTER_KEY or restore ${file}. Mailward will not start without the key its data is sealed with.`,
      );
    }
    writeSecretFileExclusive(file, `${randomBytes(32).toString('base64')}\n`);
  }
  return createFileKeyRing(file);
};

/**
 * Refuses a key ring that does not match the store, before anything reads or
 * writes data: each KEK's fingerprint is recorded when first used. Returns
 * false when the store has no key ring table yet (fresh database).
 */
export const checkKeyRing = async (store: Store, ring: KeyRing): Promise<boolean> => {
  let rows: { version: string; fingerprint: string; retired_at: string | null }[];
  try {
    rows = await store.db.selectFrom('key_ring').select(['version', 'fingerprint', 'retired_at']).execute();
  } catch {
    return false;
  }
  for (const r of rows) {
    if (!ring.versions().includes(r.version)) {
      // A retired version has had every value re-wrapped away from it: the operator may drop it.
      if (r.retired_at) continue;
      throw new AppError(
        'master_key_mismatch',
        500,
        `The store was sealed with key-encryption key version ${r.version}, which the configured master key does not include.`,
      );
    }
    if (ring.fingerprint(r.version) !== r.fingerprint) {
      throw new AppError(
        'master_key_mismatch',
        500,
        `The configured master key (version ${r.version}) is not the key this store was initialised with. Refusing to start; no data was touched.`,
      );
    }
  }
  return true;
};

/** Records the fingerprint of every KEK in the ring that the store does not know yet. */
export const registerKeyRing = async (store: Store, ring: KeyRing, clock: Clock) => {
  for (const version of ring.versions()) {
    await sql`insert into key_ring (version, fingerprint, created_at) values (${version}, ${ring.fingerprint(version)}, ${clock.now().toISOString()})
              on conflict (version) do nothing`.execute(store.db);
  }
};

/** True once any key-encryption key has been registered, i.e. something may be sealed. */
export const storeHasSealedData = async (store: Store): Promise<boolean> => {
  try {
    return !!(await store.db.selectFrom('key_ring').select('version').limit(1).executeTakeFirst());
  } catch {
    return false;
  }
};
