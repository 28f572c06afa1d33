import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { isStoreUnavailable } from '../src/store/db.js';
import { waitFor } from './support/wait.js';
import { freshDatabase, PG_ADMIN_URL, testDialects } from './support/dialects.js';
import { type ServerProcess, startServer } from './support/processes.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!().catch(() => {});
});

const api = async (port: number, method: string, url: string, key: string, body?: unknown) => {
  const r = await fetch(`http://127.0.0.1:${port}${url}`, {
    method,
    headers: { authorization: `Bearer ${key}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    ...(body ? { body: JSON.stringify(body) } : {}),
  });
  const text = await r.text();
  let parsed: any = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    /* not JSON */
  }
  return { status: r.status, body: parsed };
};

/** Closes every connection the server holds on its database, as a failover or a pooler restart does. */
const terminateBackends = async (url: string) => {
  const name = new URL(url).pathname.slice(1);
  const admin = new pg.Client({ connectionString: PG_ADMIN_URL });
  await admin.connect();
  try {
    const r = await admin.query(
      'select pg_terminate_backend(pid) as ok from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()',
      [name],
    );
    return r.rowCount ?? 0;
  } finally {
    await admin.end();
  }
};

describe('which store errors are temporary', () => {
  it('treats lost connections and a store that cannot write as unavailable, and nothing the request caused', () => {
    const err = (code: string | undefined, message = 'x') => Object.assign(new Error(message), code ? { code } : {});
    for (const e of [
      err('57P01'),
      err('08006'),
      err('53100'),
      err('25006'),
      err('ECONNRESET', 'read ECONNRESET'),
      err(undefined, 'Connection terminated unexpectedly'),
      err('SQLITE_FULL'),
      err('SQLITE_IOERR_WRITE'),
    ]) {
      expect(isStoreUnavailable(e), String((e as { code?: string }).code ?? e.message)).toBe(true);
    }
    for (const e of [err('23505'), err('SQLITE_CONSTRAINT_UNIQUE'), err('ECONNRESET', 'aborted'), err(undefined, 'boom'), null, 'text']) {
      expect(isStoreUnavailable(e)).toBe(false);
    }
  });
});

// pg_terminate_backend is PostgreSQL's; SQLite has no connection to lose.
describe.runIf(testDialects().includes('postgres'))('losing PostgreSQL connections (postgres)', () => {
  it('keeps serving when the database terminates its connections under load: 503 store_unavailable, then success', async () => {
    const db = await freshDatabase('postgres');
    cleanups.push(db.drop);
    const s: ServerProcess = await startServer({ ...db.env, MAILWARD_LOG_LEVEL: 'warn', MAILWARD_DB_POOL_SIZE: '4' });
    cleanups.push(s.stop);
    const key = fs.readFileSync(path.join(db.dataDir, 'bootstrap-admin.key'), 'utf8').trim();
    const statuses = new Map<number, number>();
    const codes = new Set<string>();
    let running = true;
    let n = 0;
    const worker = async () => {
      while (running) {
        const i = n++;
        const r = await (i % 2
          ? api(s.port, 'GET', '/v1/me', key)
          : api(s.port, 'POST', '/v1/departments', key, { name: `Ward ${i}` })
        ).catch(() => ({
          status: 0,
          body: null,
        }));
        statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
        if (r.status >= 500) codes.add(`${r.status} ${r.body?.code} ${r.body?.temporary}`);
      }
    };
    const workers = Array.from({ length: 8 }, worker);
    let terminated = 0;
    for (let round = 0; round < 5; round++) {
      // Wait for the loop to have made progress (and the pool to have reconnected) before the next cut.
      const before = n;
      await waitFor(() => n >= before + 10, { timeoutMs: 8000 });
      terminated += await terminateBackends(db.url!);
    }
    running = false;
    await Promise.all(workers);
    expect(terminated).toBeGreaterThan(0);
    expect(s.child.exitCode, s.output()).toBeNull();
    // Every failure is the temporary store error, never a 500 or a dropped connection.
    expect(
      [...codes].filter((c) => c !== '503 store_unavailable true'),
      s.output(),
    ).toEqual([]);
    expect(statuses.get(0) ?? 0, `${JSON.stringify([...statuses])}\n${s.output()}`).toBe(0);
    // Requests in flight when their connection was cut got the temporary error.
    expect(statuses.get(503) ?? 0).toBeGreaterThan(0);
    // The pool reconnected: requests after the last cut succeed.
    const deadline = Date.now() + 30_000;
    let after = await api(s.port, 'POST', '/v1/departments', key, { name: 'After' });
    while (after.status !== 201 && Date.now() < deadline) after = await api(s.port, 'POST', '/v1/departments', key, { name: 'After' });
    expect(after.status, JSON.stringify(after.body)).toBe(201);
    expect((await api(s.port, 'GET', '/v1/me', key)).status).toBe(200);
    expect(s.child.exitCode).toBeNull();
  }, 120_000);
});
