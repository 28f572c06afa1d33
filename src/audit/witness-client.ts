import type { Clock } from '../kernel/clock.js';
import type { Logger } from '../kernel/log.js';
import type { Db } from '../store/db.js';
import type { AuditCheckpointsTable, AuditCosignaturesTable } from '../store/schema.js';
import { NoteError, openWitnessSignature } from './signed-note.js';
import type { TreeStore } from './tree-store.js';

/**
 * Submits signed checkpoints to transparency-log witnesses (c2sp.org/tlog-witness
 * `add-checkpoint`) and keeps what each answered (table audit_cosignatures):
 * the cosignature (c2sp.org/tlog-cosignature v1, Ed25519, key type 0x04), or the
 * refusal. A 409 names the size the witness last cosigned: the request is made
 * once more from that size when it is older than ours (the spec's way to learn
 * it); a witness that knows a larger tree than ours, or an equal size with
 * another root, or that answers 422 (the consistency proof fails against what it
 * saw) refused a forked or rewritten history, and that is recorded and logged.
 */
export type WitnessConfig = { url: string; key: string };
export type Witness = WitnessConfig & { name: string };

/** `MAILWARD_WITNESSES`: entries `<submission prefix URL> <verifier key>`, separated by commas. */
export const parseWitnesses = (value: string | undefined): Witness[] =>
  (value ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((entry) => {
      const [url, key, ...rest] = entry.split(/\s+/);
      if (!url || !key || rest.length > 0 || !/^https?:\/\//.test(url))
        throw new Error('MAILWARD_WITNESSES: each entry is "<url> <verifier key>"');
      const name = key.split('+')[0] ?? '';
      const raw = Buffer.from(key.split('+').slice(2).join('+'), 'base64');
      if (!name || raw.length !== 33 || raw[0] !== 0x04)
        throw new Error('MAILWARD_WITNESSES: a witness key is a cosignature/v1 (type 0x04) verifier key');
      return { url: url.replace(/\/+$/, ''), key, name };
    });

export type WitnessOutcome = Pick<AuditCosignaturesTable, 'witness' | 'status' | 'http_status' | 'known_size' | 'cosigned_at'>;

type Deps = { db: Db; tree: TreeStore; clock: Clock; witnesses: Witness[]; logger?: Logger; timeoutMs?: number };

export const createWitnessClient = ({ db, tree, clock, witnesses, logger, timeoutMs = 10_000 }: Deps) => {
  /** The size this witness last cosigned for us (0: never), as our table remembers it. */
  const lastCosigned = async (w: Witness): Promise<number> => {
    const r = await db
      .selectFrom('audit_cosignatures')
      .select('tree_size')
      .where('witness', '=', w.name)
      .where('status', '=', 'cosigned')
      .orderBy('tree_size', 'desc')
      .limit(1)
      .executeTakeFirst();
    return r ? Number(r.tree_size) : 0;
  };

  const post = async (w: Witness, oldSize: number, cp: AuditCheckpointsTable) => {
    const size = Number(cp.tree_size);
    const proof = oldSize > 0 && oldSize < size ? await tree.consistencyProof(oldSize, size) : [];
    // tlog-witness: "old <size>", the consistency proof lines, an empty line, then the checkpoint.
    const body = `old ${oldSize}\n${proof.map((h) => `${h.toString('base64')}\n`).join('')}\n${cp.note}`;
    const res = await fetch(`${w.url}/add-checkpoint`, {
      method: 'POST',
      body,
      headers: { 'content-type': 'text/plain; charset=utf-8' },
      signal: AbortSignal.timeout(timeoutMs),
    });
    return { status: res.status, type: res.headers.get('content-type') ?? '', text: await res.text() };
  };

  const store = async (size: number, o: WitnessOutcome & { signature_line: string | null }) => {
    const row = { tree_size: size, ...o, at: clock.now().toISOString() };
    await db
      .insertInto('audit_cosignatures')
      .values(row)
      .onConflict((oc) => oc.columns(['tree_size', 'witness']).doUpdateSet({ ...o, at: row.at }))
      .execute();
  };

  /** One witness, one checkpoint: the outcome, stored. Never throws. */
  const submitTo = async (w: Witness, cp: AuditCheckpointsTable): Promise<WitnessOutcome> => {
    const size = Number(cp.tree_size);
    const base = { witness: w.name, http_status: null, known_size: null, cosigned_at: null };
    let outcome: WitnessOutcome & { signature_line: string | null };
    try {
      let old = await lastCosigned(w);
      if (old > size) old = 0;
      let r = await post(w, old, cp);
      if (r.status === 409 && r.type.startsWith('text/x.tlog.size')) {
        const known = Number(r.text.trim());
        // A witness behind us (or one whose state we lost) is asked again from the size it knows.
        if (Number.isSafeInteger(known) && known < size && known !== old) r = await post(w, known, cp);
      }
      if (r.status === 200) {
        const lines = r.text.split('\n').filter((l) => l.startsWith('\u2014 '));
        // tlog-witness: the answer's lines are verified as signatures of this note with the witness key; others are ignored.
        const mine = lines.find((l) => {
          try {
            openWitnessSignature(`${cp.note}${l}\n`, w.key);
            return true;
          } catch (e) {
            if (e instanceof NoteError) return false;
            throw e;
          }
        });
        if (!mine) outcome = { ...base, status: 'refused', http_status: 200, signature_line: null };
        else {
          const { time } = openWitnessSignature(`${cp.note}${mine}\n`, w.key);
          outcome = { ...base, status: 'cosigned', http_status: 200, cosigned_at: time, signature_line: mine };
        }
      } else {
        const known = r.status === 409 && r.type.startsWith('text/x.tlog.size') ? Number(r.text.trim()) : null;
        outcome = {
          ...base,
          status: 'refused',
          http_status: r.status,
          known_size: Number.isSafeInteger(known) ? known : null,
          signature_line: null,
        };
      }
    } catch {
      outcome = { ...base, status: 'unreachable', signature_line: null };
    }
    if (outcome.status !== 'cosigned') {
      // No addresses or content: the witness's name, our size, what it said.
      logger?.error(
        { witness: w.name, tree_size: size, status: outcome.status, http_status: outcome.http_status, known_size: outcome.known_size },
        'witness did not cosign the audit checkpoint',
      );
    }
    await store(size, outcome);
    const { signature_line: _, ...out } = outcome;
    return out;
  };

  /** Submits a stored checkpoint to every configured witness, one after another. */
  const submit = async (cp: AuditCheckpointsTable): Promise<WitnessOutcome[]> => {
    const out: WitnessOutcome[] = [];
    for (const w of witnesses) out.push(await submitTo(w, cp));
    return out;
  };

  /** What the witnesses answered for a checkpoint, and its cosignature lines (to append to the note). */
  const answers = async (size: number) => {
    const rows = await db.selectFrom('audit_cosignatures').selectAll().where('tree_size', '=', size).orderBy('witness').execute();
    return rows;
  };

  return { submit, answers, configured: witnesses };
};

export type WitnessClient = ReturnType<typeof createWitnessClient>;
