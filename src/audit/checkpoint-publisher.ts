import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { AppError } from '../kernel/errors.js';
import type { Db } from '../store/db.js';
import { hexOfStored } from './audit-columns.js';

/**
 * Publishes every signed checkpoint outside the database, as it is made, so a
 * copy survives an insider who rewrites the store (the append-only triggers
 * can be dropped by whoever owns the database). Per checkpoint of size N:
 *
 * - `<N>.note`: the C2SP tlog-checkpoint signed note, exactly as signed;
 * - `<N>.hashes`: the event hashes (the RFC 6962 leaf inputs) of the events
 *   since the checkpoint before it, so `audit verify` can name the first
 *   rewritten event: it trusts these only once they fold to a signed root.
 *
 * Files are public (0644), written atomically and never overwritten: a note
 * already published at a size that differs from the one in the store is
 * refused (audit_inconsistent), since one of the two was forged.
 */

export const HASHES_HEADER = 'mailward-audit-hashes/v1';
const BATCH = 10_000;

const noteFile = (dir: string, size: number) => path.join(dir, `${size}.note`);
const hashesFile = (dir: string, size: number) => path.join(dir, `${size}.hashes`);

/**
 * Creates `file` unless it exists: a temp file written by `write` (which may
 * return false to give up), fsynced, then linked into place, which is atomic
 * and exclusive. Returns false if the file existed or `write` gave up.
 */
const writeOnce = async (file: string, write: (fd: number) => boolean | Promise<boolean>): Promise<boolean> => {
  if (fs.existsSync(file)) return false;
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  const fd = fs.openSync(tmp, 'wx', 0o644);
  try {
    let complete = false;
    try {
      complete = await write(fd);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    if (!complete) return false;
    fs.chmodSync(tmp, 0o644);
    fs.linkSync(tmp, file);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw e;
  } finally {
    fs.rmSync(tmp, { force: true });
  }
};

export type PublishedCheckpoint = { tree_size: number; note: string };

export const createCheckpointPublisher = ({ db, dir }: { db: Db; dir: string }) => {
  /**
   * Publishes the checkpoint of size `size` whose note is `note`, with the
   * event hashes of seq `from`..`size`. Idempotent. Throws AppError
   * audit_inconsistent when a different note was already published at that size.
   */
  const publish = async (cp: PublishedCheckpoint, from: number): Promise<void> => {
    fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
    const file = noteFile(dir, cp.tree_size);
    if (!(await writeOnce(file, (fd) => fs.writeSync(fd, cp.note) > 0))) {
      if (fs.readFileSync(file, 'utf8') !== cp.note) {
        throw new AppError(
          'audit_inconsistent',
          500,
          `A different checkpoint of size ${cp.tree_size} was already published; run mailward audit verify.`,
        );
      }
    }
    const target = hashesFile(dir, cp.tree_size);
    if (fs.existsSync(target) || from > cp.tree_size) return;
    // Streamed in batches, so memory stays flat whatever the range; a gap publishes nothing (verify reports the gap).
    await writeOnce(target, async (fd) => {
      fs.writeSync(fd, `${HASHES_HEADER} ${from} ${cp.tree_size}\n`);
      let after = from - 1;
      while (after < cp.tree_size) {
        const rows = await db
          .selectFrom('audit_events')
          .select(['seq', 'hash'])
          .where('seq', '>', after)
          .where('seq', '<=', cp.tree_size)
          .orderBy('seq')
          .limit(BATCH)
          .execute();
        if (rows.length === 0) return false;
        for (const r of rows) {
          if (Number(r.seq) !== after + 1) return false;
          after++;
        }
        fs.writeSync(fd, `${rows.map((r) => hexOfStored(r.hash)).join('\n')}\n`);
      }
      return true;
    });
  };

  return { dir, publish };
};

export type CheckpointPublisher = ReturnType<typeof createCheckpointPublisher>;

/** The notes of a published directory (or none when it does not exist), oldest first. */
export const readPublishedNotes = (dir: string): { source: string; text: string }[] => {
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir)
    .filter((f) => /^\d+\.note$/.test(f))
    .sort((a, b) => Number.parseInt(a, 10) - Number.parseInt(b, 10))
    .map((f) => ({ source: path.join(dir, f), text: fs.readFileSync(path.join(dir, f), 'utf8') }));
};

/**
 * The published event hashes of seq `from`..`to` (index 0 is seq `from`), or
 * null when the directory does not cover all of them. Untrusted until the
 * caller folds them to a signed root.
 */
export const readPublishedHashes = (dir: string, from: number, to: number): string[] | null => {
  if (!fs.existsSync(dir) || to < from) return null;
  const out: (string | undefined)[] = new Array(to - from + 1);
  const files = fs
    .readdirSync(dir)
    .filter((f) => /^\d+\.hashes$/.test(f))
    .map((f) => ({ f, size: Number.parseInt(f, 10) }))
    .filter((x) => x.size >= from)
    .sort((a, b) => a.size - b.size);
  for (const { f } of files) {
    const lines = fs.readFileSync(path.join(dir, f), 'utf8').split('\n');
    const m = new RegExp(`^${HASHES_HEADER} (\\d+) (\\d+)$`).exec(lines[0] ?? '');
    if (!m) continue;
    const first = Number(m[1]);
    for (let i = 1; i < lines.length; i++) {
      const seq = first + i - 1;
      const h = lines[i]!;
      if (seq < from || seq > to || !/^[0-9a-f]{64}$/.test(h)) continue;
      out[seq - from] ??= h;
    }
  }
  for (let i = 0; i < out.length; i++) if (out[i] === undefined) return null;
  return out as string[];
};
