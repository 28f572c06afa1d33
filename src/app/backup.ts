import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import SQLite from 'better-sqlite3';
import { sql } from 'kysely';
import { systemActor } from '../identity/principal.js';
import type { KeyRing } from '../kernel/crypto/keyring.js';
import { AppError } from '../kernel/errors.js';
import { ensurePrivateDir, tightenFile } from '../kernel/private-files.js';
import { openStore } from '../store/db.js';
import { MIGRATIONS } from '../store/migrate.js';
import type { Config } from './config.js';
import type { Container } from './container.js';
import { assertRingOpensStore } from './key-rotation.js';
import { checkKeyRing, masterKeyPath } from './master-key.js';
import { SEALED_COLUMNS } from './sealed-columns.js';

const run = promisify(execFile);

export const BACKUP_FORMAT = 'mailward-backup';
const MANIFEST = 'manifest.json';
const SQLITE_NAME = 'mailward.db';
const PG_NAME = 'mailward.pgdump';

/**
 * Never copied: the key-encryption key (a backup must be useless to whoever
 * steals it without the key, 45 CFR 164.312(a)(2)(iv)), the bootstrap admin
 * key (a credential), the live database files (copied consistently instead)
 * and lock files.
 */
const EXCLUDED = new Set([
  'master.key',
  'bootstrap-admin.key',
  SQLITE_NAME,
  `${SQLITE_NAME}-wal`,
  `${SQLITE_NAME}-shm`,
  `${SQLITE_NAME}-journal`,
]);
const excluded = (rel: string) => EXCLUDED.has(rel) || rel.endsWith('.lock') || rel.startsWith('.restore-');

export type BackupManifest = {
  format: typeof BACKUP_FORMAT;
  version: 1;
  created_at: string;
  dialect: 'sqlite' | 'postgres';
  /** The newest migration in the copy: a restore needs a Mailward that knows it. */
  schema: string | null;
  audit: { seq: number; head_hash: string | null };
  /** Fingerprints of the key-encryption keys the copy was sealed under (never the keys). */
  key_ring: { version: string; fingerprint: string; retired_at: string | null }[];
  files: { path: string; bytes: number; sha256: string }[];
};

export type BackupResult = {
  file: string;
  bytes: number;
  sha256: string;
  dialect: 'sqlite' | 'postgres';
  audit_seq: number;
  key_versions: string[];
  files: string[];
};

const sha256File = async (file: string) => {
  const h = createHash('sha256');
  for await (const chunk of fs.createReadStream(file)) h.update(chunk as Buffer);
  return h.digest('hex');
};

/** Files under `dir` (relative paths, sorted), skipping those `skip` names. */
const walk = (dir: string, skip: (rel: string) => boolean = () => false, base = ''): string[] =>
  fs.existsSync(dir)
    ? fs
        .readdirSync(dir, { withFileTypes: true })
        .flatMap((e) => {
          const rel = base ? `${base}/${e.name}` : e.name;
          if (skip(rel)) return [];
          if (e.isDirectory()) return walk(path.join(dir, e.name), skip, rel);
          return e.isFile() ? [rel] : [];
        })
        .sort()
    : [];

/** What the copy says about itself: schema, audit head and key-ring fingerprints, read from the copy, not the live store. */
const describeSqliteCopy = (file: string) => {
  const db = new SQLite(file, { readonly: true, fileMustExist: true });
  try {
    const schema =
      (db.prepare('select name from kysely_migration order by name desc limit 1').get() as { name?: string } | undefined)?.name ?? null;
    const head = db.prepare('select seq, hash from audit_head where id = 1').get() as { seq: number; hash: string } | undefined;
    const ring = db.prepare('select version, fingerprint, retired_at from key_ring order by version').all() as BackupManifest['key_ring'];
    return { schema, audit: { seq: Number(head?.seq ?? 0), head_hash: head?.hash ?? null }, key_ring: ring };
  } finally {
    db.close();
  }
};

/**
 * `mailward backup --out FILE`: a consistent copy of the store while servers
 * keep serving, plus the rest of the data dir (TLS key and certificate,
 * published audit checkpoints), as one gzip'd tar with a manifest of SHA-256
 * sums. SQLite: `VACUUM INTO` from a read-only connection (one read
 * transaction: a snapshot of one commit, WAL writers are not blocked).
 * PostgreSQL: `pg_dump --format=custom` (one repeatable-read snapshot).
 * Never includes master.key or MAILWARD_MASTER_KEY(S). Audits `store.backup`
 * before the copy, so the copy holds the record of its own making. The file is
 * created 0600 and never overwritten.
 */
export const createBackup = async (c: Pick<Container, 'config' | 'store' | 'audit' | 'clock'>, out: string): Promise<BackupResult> => {
  const config = c.config;
  const target = path.resolve(out);
  if (fs.existsSync(target))
    throw new AppError('backup_exists', 409, `${target} exists; choose a new file (a backup never overwrites one).`);
  const dialect = c.store.dialect;
  await c.store.db.transaction().execute((tx) =>
    c.audit.record(tx, {
      action: 'store.backup',
      actor: systemActor(),
      orgId: null,
      target: null,
      details: { dialect, includes_master_key: false },
    }),
  );
  const staging = fs.mkdtempSync(path.join(path.dirname(target), '.mailward-backup-'));
  fs.chmodSync(staging, 0o700);
  try {
    // The rest of the data dir first, as it is (the TLS key stays 0600 inside the archive): checkpoints published
    // while the store is copied are then never newer than the copy, so `audit verify` of a restore holds.
    for (const rel of walk(config.dataDir, excluded)) {
      const dest = path.join(staging, 'data', rel);
      ensurePrivateDir(path.dirname(dest));
      fs.copyFileSync(path.join(config.dataDir, rel), dest);
    }
    let described: Pick<BackupManifest, 'schema' | 'audit' | 'key_ring'>;
    if (config.database.kind === 'sqlite') {
      const copy = path.join(staging, SQLITE_NAME);
      const live = new SQLite(config.database.file, { readonly: true, fileMustExist: true });
      try {
        live.pragma('busy_timeout = 10000');
        live.prepare('VACUUM INTO ?').run(copy);
      } finally {
        live.close();
      }
      tightenFile(copy);
      described = describeSqliteCopy(copy);
    } else {
      const dump = path.join(staging, PG_NAME);
      try {
        await run('pg_dump', ['--format=custom', '--no-owner', '--no-privileges', `--file=${dump}`, `--dbname=${config.database.url}`]);
      } catch (e) {
        const missing = (e as NodeJS.ErrnoException).code === 'ENOENT';
        throw new AppError(
          'pg_dump_failed',
          500,
          missing
            ? 'pg_dump is not on PATH: install the PostgreSQL client of your server version, or run pg_dump --format=custom yourself (see README, "Backups and the 72-hour restore").'
            : 'pg_dump failed; run it by hand to see why (README, "Backups and the 72-hour restore").',
        );
      }
      tightenFile(dump);
      const ring = await c.store.db.selectFrom('key_ring').select(['version', 'fingerprint', 'retired_at']).orderBy('version').execute();
      const head = await c.store.db.selectFrom('audit_head').select(['seq', 'hash']).executeTakeFirst();
      const schema = await sql<{ name: string }>`select name from kysely_migration order by name desc limit 1`.execute(c.store.db);
      described = {
        schema: schema.rows[0]?.name ?? null,
        audit: { seq: Number(head?.seq ?? 0), head_hash: head?.hash ?? null },
        key_ring: ring,
      };
    }
    const files: BackupManifest['files'] = [];
    for (const rel of walk(staging)) {
      const abs = path.join(staging, rel);
      files.push({ path: rel, bytes: fs.statSync(abs).size, sha256: await sha256File(abs) });
    }
    const manifest: BackupManifest = {
      format: BACKUP_FORMAT,
      version: 1,
      created_at: c.clock.now().toISOString(),
      dialect,
      ...described,
      files,
    };
    fs.writeFileSync(path.join(staging, MANIFEST), `${JSON.stringify(manifest, null, 2)}\n`, { mode: 0o600 });
    // Created empty with 0600 first, so the archive is never readable by others, whatever the umask.
    fs.closeSync(fs.openSync(target, 'wx', 0o600));
    try {
      await run('tar', ['-czf', target, '-C', staging, MANIFEST, ...files.map((f) => f.path)]);
    } catch (e) {
      fs.rmSync(target, { force: true });
      throw e;
    }
    return {
      file: target,
      bytes: fs.statSync(target).size,
      sha256: await sha256File(target),
      dialect,
      audit_seq: manifest.audit.seq,
      key_versions: manifest.key_ring.map((k) => k.version),
      files: [MANIFEST, ...files.map((f) => f.path)],
    };
  } finally {
    fs.rmSync(staging, { recursive: true, force: true });
  }
};

/** The manifest's key ring against the configured one: every version not retired must be there with the same fingerprint. */
export const assertRingMatches = (manifest: Pick<BackupManifest, 'key_ring'>, ring: KeyRing) => {
  for (const r of manifest.key_ring) {
    if (!ring.versions().includes(r.version)) {
      if (r.retired_at) continue;
      throw new AppError(
        'master_key_mismatch',
        500,
        `This backup was sealed under key-encryption key version ${r.version}, which the configured master key does not include. Restore the master key kept with the backup's records (MAILWARD_MASTER_KEY, MAILWARD_MASTER_KEYS or <data dir>/master.key) and try again; nothing was restored.`,
      );
    }
    if (ring.fingerprint(r.version) !== r.fingerprint) {
      throw new AppError(
        'master_key_mismatch',
        500,
        `The configured master key (version ${r.version}) is not the key this backup was sealed with; nothing was restored.`,
      );
    }
  }
};

export type RestoreResult = { dialect: 'sqlite' | 'postgres'; audit_seq: number; created_at: string; files: number; data_dir: string };

/** What may already be in a data dir a backup is restored into: nothing but the master key put there for it. */
const assertEmptyDataDir = (dataDir: string) => {
  if (!fs.existsSync(dataDir)) return;
  const present = fs.readdirSync(dataDir).filter((n) => n !== 'master.key');
  if (present.length > 0)
    throw new AppError(
      'data_dir_not_empty',
      409,
      `${dataDir} is not empty (${present.slice(0, 5).join(', ')}${present.length > 5 ? ', ...' : ''}): restore only into an empty data dir (it may hold master.key).`,
    );
};

/**
 * `mailward restore FILE`: unpacks a backup into an empty data dir (SQLite)
 * or an empty database (PostgreSQL, with pg_restore), after checking every
 * file's SHA-256 against the manifest and the configured key ring against the
 * backup's fingerprints, so a wrong key is refused (500 master_key_mismatch,
 * exit 2) before anything is written. The master key itself is never in the
 * backup: the operator puts it in place first. Throws 409 data_dir_not_empty,
 * 400 backup_invalid.
 */
export const restoreBackup = async (config: Config, ring: () => KeyRing, file: string): Promise<RestoreResult> => {
  const archive = path.resolve(file);
  if (!fs.existsSync(archive)) throw new AppError('backup_missing', 400, `${archive} does not exist.`);
  assertEmptyDataDir(config.dataDir);
  ensurePrivateDir(config.dataDir);
  const staging = fs.mkdtempSync(path.join(config.dataDir, '.restore-'));
  try {
    try {
      await run('tar', ['-xzf', archive, '-C', staging, '--no-same-owner', '--no-same-permissions']);
    } catch {
      throw new AppError('backup_invalid', 400, `${archive} is not a Mailward backup (not a readable .tar.gz).`);
    }
    let manifest: BackupManifest;
    try {
      manifest = JSON.parse(fs.readFileSync(path.join(staging, MANIFEST), 'utf8')) as BackupManifest;
    } catch {
      throw new AppError('backup_invalid', 400, `${archive} has no readable ${MANIFEST}.`);
    }
    if (manifest.format !== BACKUP_FORMAT || manifest.version !== 1) throw new AppError('backup_invalid', 400, 'Unknown backup format.');
    for (const f of manifest.files) {
      const abs = path.join(staging, f.path);
      if (!abs.startsWith(staging + path.sep) || !fs.existsSync(abs) || (await sha256File(abs)) !== f.sha256)
        throw new AppError('backup_invalid', 400, `The backup's ${f.path} is missing or does not match its SHA-256: the file is damaged.`);
    }
    if (manifest.schema && !Object.keys(MIGRATIONS).includes(manifest.schema))
      throw new AppError(
        'backup_too_new',
        400,
        `The backup's schema (${manifest.schema}) is newer than this Mailward: restore with the version that made it.`,
      );
    if (manifest.dialect !== config.database.kind)
      throw new AppError(
        'backup_dialect_mismatch',
        400,
        `This is a ${manifest.dialect} backup; the configuration points at ${config.database.kind} (DATABASE_URL).`,
      );
    const keys = ring();
    assertRingMatches(manifest, keys);

    if (config.database.kind === 'sqlite') {
      const copy = path.join(staging, SQLITE_NAME);
      // The copy itself, not only the manifest: every registered key and every sealed value's key version.
      const store = openStore({ kind: 'sqlite', file: copy });
      try {
        await checkKeyRing(store, keys);
        await assertRingOpensStore(store, keys, SEALED_COLUMNS);
      } finally {
        await store.destroy();
      }
      for (const n of [`${SQLITE_NAME}-wal`, `${SQLITE_NAME}-shm`]) fs.rmSync(path.join(staging, n), { force: true });
      fs.renameSync(copy, config.database.file);
      tightenFile(config.database.file);
    } else {
      const url = config.database.url;
      const tables = await (async () => {
        const store = openStore({ kind: 'postgres', url });
        try {
          return (
            await sql<{ n: string }>`select count(*) as n from information_schema.tables where table_schema = 'public'`.execute(store.db)
          ).rows[0]?.n;
        } finally {
          await store.destroy();
        }
      })();
      if (Number(tables) > 0)
        throw new AppError(
          'database_not_empty',
          409,
          'The database DATABASE_URL points at is not empty: restore into a new, empty database.',
        );
      try {
        await run('pg_restore', ['--no-owner', '--no-privileges', '--exit-on-error', `--dbname=${url}`, path.join(staging, PG_NAME)]);
      } catch (e) {
        throw new AppError(
          'pg_restore_failed',
          500,
          (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'pg_restore is not on PATH.' : 'pg_restore failed; run it by hand to see why.',
        );
      }
    }
    let n = 0;
    for (const f of manifest.files) {
      if (!f.path.startsWith('data/')) continue;
      const rel = f.path.slice('data/'.length);
      if (excluded(rel)) continue;
      const dest = path.join(config.dataDir, rel);
      ensurePrivateDir(path.dirname(dest));
      fs.renameSync(path.join(staging, f.path), dest);
      // tar was told not to keep modes: every file of a data dir is the owner's alone (kernel/private-files.ts).
      fs.chmodSync(dest, 0o600);
      n++;
    }
    return {
      dialect: manifest.dialect,
      audit_seq: manifest.audit.seq,
      created_at: manifest.created_at,
      files: n,
      data_dir: config.dataDir,
    };
  } finally {
    fs.rmSync(staging, { recursive: true, force: true });
  }
};

/** Where the key a backup needs lives, for the reminder `mailward backup` prints. */
export const masterKeyWhere = (config: Pick<Config, 'masterKey' | 'masterKeys' | 'dataDir'>) =>
  config.masterKeys ? 'MAILWARD_MASTER_KEYS' : config.masterKey ? 'MAILWARD_MASTER_KEY' : masterKeyPath(config.dataDir);
