import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../src/app/config.js';
import { createContainer } from '../src/app/container.js';
import { warnIfBootstrapKeyRemains } from '../src/cli/serve-command.js';
import { createLogger } from '../src/kernel/log.js';
import { waitFor } from './support/wait.js';
import { freshDatabase, testDialects } from './support/dialects.js';
import { freePort, repoRoot, stopChild } from './support/processes.js';

const modeOf = (p: string) => fs.statSync(p).mode & 0o777;

/** Opens a container on `env` (as `serve` does), writes one audited change, and closes it. */
const openAndWrite = async (env: Record<string, string>) => {
  const c = await createContainer(loadConfig({ ...env, MAILWARD_LOG_LEVEL: 'silent' }), {
    createMasterKey: true,
    logger: createLogger({ level: 'silent' }),
  });
  try {
    await c.init({ orgName: 'General Hospital', domain: `h${Date.now().toString(36)}.example` });
    return c.store.file;
  } finally {
    await c.close();
  }
};

/** Runs `mailward serve` as its own process until its output satisfies `done` (polled, with a deadline), then stops it. */
const serveUntil = async (env: Record<string, string>, done: (out: string) => boolean) => {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(repoRoot, 'src/cli/main.ts'), 'serve'], {
    cwd: repoRoot,
    env: {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '/tmp',
      MAILWARD_LOG_LEVEL: 'info',
      ...env,
      MAILWARD_HTTP_PORT: String(await freePort()),
      MAILWARD_SMTP_PORT: String(await freePort()),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d) => {
    out += d;
  });
  child.stderr.on('data', (d) => {
    out += d;
  });
  try {
    const got = await waitFor(
      () => {
        if (done(out)) return true;
        if (child.exitCode !== null) throw new Error(`mailward serve exited (${child.exitCode}):\n${out}`);
        return false;
      },
      { timeoutMs: 120_000, everyMs: 50 },
    );
    if (!got) throw new Error(`mailward serve did not get there in time:\n${out}`);
  } finally {
    await stopChild(child);
  }
  return out;
};

for (const dialect of testDialects()) {
  describe(`data directory permissions (${dialect})`, () => {
    it('creates the data dir 0700 and the database, WAL, shared-memory and master key files 0600 whatever the umask', async () => {
      const db = await freshDatabase(dialect);
      const dataDir = path.join(db.dataDir, 'data');
      const old = process.umask(0o022);
      try {
        const env = { ...db.env, MAILWARD_DATA_DIR: dataDir };
        const c = await createContainer(loadConfig({ ...env, MAILWARD_LOG_LEVEL: 'silent' }), {
          createMasterKey: true,
          logger: createLogger({ level: 'silent' }),
        });
        try {
          await c.init({ orgName: 'General Hospital', domain: 'perm.example' });
          expect(modeOf(dataDir)).toBe(0o700);
          expect(modeOf(path.join(dataDir, 'master.key'))).toBe(0o600);
          if (dialect === 'sqlite') {
            const file = c.store.file as string;
            // While the store is open (WAL mode), all three files exist.
            for (const f of [file, `${file}-wal`, `${file}-shm`]) expect([f, modeOf(f)]).toEqual([f, 0o600]);
          }
        } finally {
          await c.close();
        }
      } finally {
        process.umask(old);
        await db.drop();
      }
    });

    it('tightens a data dir and database left readable by others', async () => {
      const db = await freshDatabase(dialect);
      try {
        const file = await openAndWrite(db.env);
        fs.chmodSync(db.dataDir, 0o755);
        if (file) fs.chmodSync(file, 0o644);
        await openAndWrite(db.env);
        expect(modeOf(db.dataDir)).toBe(0o700);
        if (file) expect(modeOf(file)).toBe(0o600);
      } finally {
        await db.drop();
      }
    });

    it('warns at every start while the bootstrap admin key file exists, naming it, and stops once it is removed', {
      timeout: 180_000,
    }, async () => {
      const db = await freshDatabase(dialect);
      const file = path.join(db.dataDir, 'bootstrap-admin.key');
      const warned = (out: string) =>
        out.split('\n').filter((l) => l.includes('"level":40') && l.includes(file) && l.includes(`rm ${file}`));
      try {
        for (let start = 1; start <= 2; start++) {
          const out = await serveUntil(db.env, (o) => warned(o).length > 0 || o.includes('mailward listening'));
          expect(fs.existsSync(file)).toBe(true);
          expect([start, warned(out).length]).toEqual([start, 1]);
        }
        fs.rmSync(file);
        const lines: unknown[] = [];
        expect(warnIfBootstrapKeyRemains(db.dataDir, { warn: (...a: unknown[]) => lines.push(a) })).toBe(false);
        expect(lines).toEqual([]);
      } finally {
        await db.drop();
      }
    });
  });
}
