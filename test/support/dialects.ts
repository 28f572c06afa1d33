import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import type { Dialect } from '../../src/store/db.js';

/** MAILWARD_TEST_DIALECTS=sqlite,postgres (the default) picks the stores every store test runs on. */
export const testDialects = (): Dialect[] => {
  const raw = process.env.MAILWARD_TEST_DIALECTS ?? 'sqlite,postgres';
  const list = raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const d of list) if (d !== 'sqlite' && d !== 'postgres') throw new Error(`unknown dialect in MAILWARD_TEST_DIALECTS: ${d}`);
  return list as Dialect[];
};

/** The server the PostgreSQL suite creates its throwaway databases on. */
export const PG_ADMIN_URL = process.env.MAILWARD_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

export const tempDir = (label = 'mw') => fs.mkdtempSync(path.join(os.tmpdir(), `${label}-`));

/** A fresh, empty database for one test: a temp SQLite file, or a new PostgreSQL database dropped afterwards. */
export const freshDatabase = async (
  dialect: Dialect,
): Promise<{ env: Record<string, string>; dataDir: string; url?: string; drop: () => Promise<void> }> => {
  const dataDir = tempDir(`mw-${dialect}`);
  if (dialect === 'sqlite') {
    return { env: { MAILWARD_DATA_DIR: dataDir }, dataDir, drop: async () => fs.rmSync(dataDir, { recursive: true, force: true }) };
  }
  const name = `mw_test_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: PG_ADMIN_URL });
  try {
    await admin.connect();
  } catch (e) {
    throw new Error(
      `PostgreSQL is not reachable at ${PG_ADMIN_URL} (${(e as Error).message}). Start it, set MAILWARD_TEST_DATABASE_URL, or run only SQLite with MAILWARD_TEST_DIALECTS=sqlite.`,
    );
  }
  await admin.query(`create database ${name}`);
  await admin.end();
  const u = new URL(PG_ADMIN_URL);
  u.pathname = `/${name}`;
  const url = u.toString();
  return {
    env: { MAILWARD_DATA_DIR: dataDir, DATABASE_URL: url },
    dataDir,
    url,
    drop: async () => {
      const c = new pg.Client({ connectionString: PG_ADMIN_URL });
      await c.connect();
      await c.query(`drop database if exists ${name} with (force)`);
      await c.end();
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
};
