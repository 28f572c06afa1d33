import { createPrivateKey, createPublicKey } from 'node:crypto';
import type { Clock } from '../kernel/clock.js';
import { AppError, isAppError } from '../kernel/errors.js';
import type { Logger } from '../kernel/log.js';
import type { Db } from '../store/db.js';
import type { AuditCheckpointsTable, SigningKeysTable } from '../store/schema.js';
import { MerkleError, verifyConsistency } from './merkle.js';
import {
  checkpointText,
  openNote,
  parseCheckpointText,
  parseVerifierKey,
  rawPublicKey,
  signerFromKey,
  signNote,
  type NoteSigner,
  verifierKey,
} from './signed-note.js';
import type { CheckpointPublisher } from './checkpoint-publisher.js';
import type { TreeStore } from './tree-store.js';
import type { WitnessClient } from './witness-client.js';

/** What GET /v1/audit/checkpoint and the export's last line carry. */
export type CheckpointOut = {
  tree_size: number;
  root_hash: string;
  signature: string;
  key_id: string;
  at: string;
  origin: string;
  verifier_key: string;
  note: string;
  /** The note with every witness cosignature line appended (c2sp.org/tlog-cosignature), when witnesses are configured. */
  cosigned_note?: string;
  /** What each configured witness answered for this checkpoint (c2sp.org/tlog-witness). */
  witnesses?: { name: string; status: string; http_status: number | null; known_size: number | null; cosigned_at: number | null }[];
};

/** Default cadence: a checkpoint every 1,000 events or 5 minutes, whichever comes first. */
export const CHECKPOINT_EVERY_EVENTS = 1000;
export const CHECKPOINT_EVERY_MS = 5 * 60_000;

/** Only the installation's audit key may sign checkpoints (signing-keys.ts, purpose audit-ed25519). */
export type AuditKeys = {
  active: () => Promise<SigningKeysTable | undefined>;
  byKid: (kid: string) => Promise<SigningKeysTable | undefined>;
  openPrivate: (row: SigningKeysTable) => string;
  /** Every audit key, retired ones too: notes kept outside the store may be signed by any of them. */
  all?: () => Promise<SigningKeysTable[]>;
};

type Deps = {
  db: Db;
  tree: TreeStore;
  clock: Clock;
  /** Waits until every committed audit event is sequenced (the integrator), so `current` covers them. */
  sync?: () => Promise<void>;
  keys: AuditKeys;
  publisher?: CheckpointPublisher | null;
  witnesses?: WitnessClient | null;
};

export const checkpointOut = (row: AuditCheckpointsTable, key: SigningKeysTable): CheckpointOut => ({
  tree_size: Number(row.tree_size),
  root_hash: row.root_hash,
  signature: row.signature,
  key_id: row.key_id,
  at: row.at,
  origin: row.origin,
  verifier_key: verifierKey(row.origin, rawPublicKey(createPublicKey(key.public_key))),
  note: row.note,
});

/**
 * Checks one stored checkpoint: the note's signature under the named key, and
 * that the note says what the row says. Throws a NoteError-like Error.
 */
export const checkStoredCheckpoint = (row: AuditCheckpointsTable, publicKeyPem: string) => {
  const verifier = parseVerifierKey(verifierKey(row.origin, rawPublicKey(createPublicKey(publicKeyPem))));
  const { text, signature } = openNote(row.note, verifier);
  const cp = parseCheckpointText(text);
  if (cp.origin !== row.origin || cp.size !== Number(row.tree_size) || cp.root.toString('hex') !== row.root_hash) {
    throw new Error('checkpoint row differs from its signed note');
  }
  if (signature.toString('base64') !== row.signature) throw new Error('checkpoint signature column differs from its note');
};

export const createCheckpointService = ({ db, tree, clock, sync, keys, publisher, witnesses }: Deps) => {
  let signer: { kid: string; signer: NoteSigner; row: SigningKeysTable } | null = null;

  /** The log's name in checkpoints: fixed at the first checkpoint (C2SP tlog-checkpoint "origin"). */
  const origin = async (): Promise<string> => {
    const got = await db.selectFrom('settings').select('value').where('key', '=', 'audit_origin').executeTakeFirst();
    if (got) return got.value;
    const first = await db.selectFrom('organizations').select('domain').orderBy('created_at').limit(1).executeTakeFirst();
    const value = `${first?.domain ?? 'mailward.localhost'}/mailward-audit`;
    await db
      .insertInto('settings')
      .values({ key: 'audit_origin', value })
      .onConflict((oc) => oc.column('key').doNothing())
      .execute();
    return (await db.selectFrom('settings').select('value').where('key', '=', 'audit_origin').executeTakeFirstOrThrow()).value;
  };

  const loadSigner = async (name: string) => {
    const row = await keys.active();
    if (!row)
      throw new AppError('audit_key_missing', 503, 'The installation has no audit signing key; run mailward init.', { temporary: true });
    if (!signer || signer.kid !== row.kid || signer.signer.name !== name) {
      signer = { kid: row.kid, row, signer: signerFromKey(name, createPrivateKey(keys.openPrivate(row))) };
    }
    return signer;
  };

  const at = (size: number) => db.selectFrom('audit_checkpoints').selectAll().where('tree_size', '=', size).executeTakeFirst();

  const latestRow = () => db.selectFrom('audit_checkpoints').selectAll().orderBy('tree_size', 'desc').limit(1).executeTakeFirst();

  const toOut = async (row: AuditCheckpointsTable): Promise<CheckpointOut> => {
    const key = await keys.byKid(row.key_id);
    if (!key) throw new AppError('audit_key_missing', 500, 'The key that signed this checkpoint is gone.');
    const out = checkpointOut(row, key);
    if (!witnesses || witnesses.configured.length === 0) return out;
    const answers = await witnesses.answers(Number(row.tree_size));
    const lines = answers.filter((a) => a.signature_line).map((a) => `${a.signature_line}\n`);
    return {
      ...out,
      cosigned_note: `${row.note}${lines.join('')}`,
      witnesses: answers.map((a) => ({
        name: a.witness,
        status: a.status,
        http_status: a.http_status,
        known_size: a.known_size === null ? null : Number(a.known_size),
        cosigned_at: a.cosigned_at === null ? null : Number(a.cosigned_at),
      })),
    };
  };

  /**
   * Signs and stores a checkpoint of the first `size` events (or returns the
   * stored one). Fail closed: the chain under it must verify (the indexer
   * checks it) and the new root must be consistent with its stored
   * neighbours, else 500 audit_inconsistent and nothing is signed.
   * Publishes the checkpoint outside the database once stored (also when it
   * already was); throws audit_inconsistent when a different note of that size
   * was published before, or the file system error when it cannot be written.
   */
  const before = async (size: number) => {
    const floor = await tree.purgedThrough();
    const prev = await db
      .selectFrom('audit_checkpoints')
      .selectAll()
      .where('tree_size', '<', size)
      .where('tree_size', '>=', Math.max(1, floor))
      .orderBy('tree_size', 'desc')
      .limit(1)
      .executeTakeFirst();
    return { floor, prev };
  };

  /** Publishes a stored checkpoint outside the database (idempotent; see checkpoint-publisher.ts). */
  const publish = async (row: AuditCheckpointsTable) => {
    if (!publisher) return;
    const size = Number(row.tree_size);
    const { floor, prev } = await before(size);
    await publisher.publish({ tree_size: size, note: row.note }, Math.max(floor, prev ? Number(prev.tree_size) : 0) + 1);
  };

  const createAt = async (size: number): Promise<CheckpointOut> => {
    const existing = await at(size);
    if (existing) {
      await publish(existing);
      return toOut(existing);
    }
    const name = await origin();
    const s = await loadSigner(name);
    const root = await tree.rootAt(size);
    const { prev } = await before(size);
    const next = await db
      .selectFrom('audit_checkpoints')
      .selectAll()
      .where('tree_size', '>', size)
      .orderBy('tree_size')
      .limit(1)
      .executeTakeFirst();
    try {
      if (prev) {
        const p = Number(prev.tree_size);
        verifyConsistency(p, size, Buffer.from(prev.root_hash, 'hex'), root, await tree.consistencyProof(p, size));
      }
      if (next && size >= 1) {
        const n = Number(next.tree_size);
        verifyConsistency(size, n, root, Buffer.from(next.root_hash, 'hex'), await tree.consistencyProof(size, n));
      }
    } catch (e) {
      if (e instanceof MerkleError) {
        throw new AppError(
          'audit_inconsistent',
          500,
          'The audit log is not consistent with its signed checkpoints; run mailward audit verify.',
        );
      }
      throw e;
    }
    const { note, signature } = signNote(checkpointText(name, size, root), s.signer);
    await db
      .insertInto('audit_checkpoints')
      .values({
        tree_size: size,
        root_hash: root.toString('hex'),
        at: clock.now().toISOString(),
        origin: name,
        key_id: s.kid,
        signature: signature.toString('base64'),
        note,
      })
      .onConflict((oc) => oc.column('tree_size').doNothing())
      .execute();
    const stored = (await at(size))!;
    // Published as it is made, outside the database, so a cut or rewritten store is caught against it.
    await publish(stored);
    // Then witnessed (c2sp.org/tlog-witness): outcomes are stored and logged; a refusal does not unsign the checkpoint.
    if (witnesses) await witnesses.submit(stored);
    return toOut(stored);
  };

  /** The newest checkpoint, signing a new one first if events were committed since (on demand; it waits for their integration). */
  const current = async (): Promise<CheckpointOut> => {
    await sync?.();
    const head = await tree.headSeq();
    const last = await latestRow();
    if (last && Number(last.tree_size) >= head) return toOut(last);
    return createAt(head);
  };

  const latest = async (): Promise<CheckpointOut | null> => {
    const row = await latestRow();
    return row ? toOut(row) : null;
  };

  const get = async (size: number): Promise<CheckpointOut | null> => {
    const row = await at(size);
    return row ? toOut(row) : null;
  };

  /**
   * Signs a checkpoint every `everyEvents` events or `everyMs` (if anything
   * was appended). Returns a stop function. Errors are logged, never thrown.
   */
  const startScheduler = (opts: { everyEvents?: number; everyMs?: number; logger?: Logger } = {}) => {
    const everyEvents = opts.everyEvents ?? CHECKPOINT_EVERY_EVENTS;
    const everyMs = opts.everyMs ?? CHECKPOINT_EVERY_MS;
    let running = false;
    const tick = async () => {
      if (running) return;
      running = true;
      try {
        const head = await tree.headSeq();
        const last = await latestRow();
        const size = last ? Number(last.tree_size) : 0;
        const age = last ? clock.now().getTime() - new Date(last.at).getTime() : Number.POSITIVE_INFINITY;
        if (head > size && (head - size >= everyEvents || age >= everyMs)) await createAt(head);
        // A checkpoint whose publication failed (or one signed before publishing existed) is published late.
        else if (last) await publish(last);
      } catch (e) {
        opts.logger?.error({ code: isAppError(e) ? e.code : 'unexpected' }, 'audit checkpoint failed');
      } finally {
        running = false;
      }
    };
    const timer = setInterval(() => void tick(), Math.min(everyMs, 10_000));
    timer.unref();
    return () => clearInterval(timer);
  };

  /** The log's verifier keys (`<origin>+<id>+<key>`), retired audit keys too: what receipts are checked against offline. */
  const verifierKeys = async (): Promise<string[]> => {
    const name = await origin();
    const rows = keys.all ? await keys.all() : [await keys.active()].filter((r): r is SigningKeysTable => !!r);
    return rows.map((r) => verifierKey(name, rawPublicKey(createPublicKey(r.public_key))));
  };

  return { origin, createAt, current, latest, get, startScheduler, verifierKeys, publisherDir: publisher?.dir ?? null };
};

export type CheckpointService = ReturnType<typeof createCheckpointService>;
