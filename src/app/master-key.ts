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

const parseKeyFile = (text: string, file: string): { entries: KekEntry[]; active: string } => {
  const t = text.trim();
  if (t.startsWith('{')) {
    const j = JSON.parse(t) as { active: string; keys: Record<string, string> };
    return { entries: Object.entries(j.keys).map(([version, k]) => ({ version, key: Buffer.from(k, 'base64') })), active: j.active };
  }
  const key = Buffer.from(t, 'base64');
  if (key.length !== 32) throw new AppError('master_key_invalid', 500, `${file} must hold base64 of exactly 32 bytes.`);
  return { entries: [{ version: '1', key }], active: '1' };
};

/**
 * The key-encryption key: MAILWARD_MASTER_KEY if set, else <data dir>/master.key.
 * With `create`, a missing file is generated (mode 0600). Without it, a
 * missing key stops start-up: data sealed under a key we do not have is useless.
 */
export const loadKeyRing = (opts: { masterKey: string | undefined; dataDir: string; create: boolean }): KeyRing => {
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
  const { entries, active } = parseKeyFile(fs.readFileSync(file, 'utf8'), file);
  return createLocalKeyRing(entries, active);
};

/**
 * Refuses a key ring that does not match the store, before anything reads or
 * writes data: each KEK's fingerprint is recorded when first used. Returns
 * false when the store has no key ring table yet (fresh database).
 */
export const checkKeyRing = async (store: Store, ring: KeyRing): Promise<boolean> => {
  let rows: { version: string; fingerprint: string }[];
  try {
    rows = await store.db.selectFrom('key_ring').select(['version', 'fingerprint']).execute();
  } catch {
    return false;
  }
  for (const r of rows) {
    if (!ring.versions().includes(r.version)) {
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
