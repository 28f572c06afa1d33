import fs from 'node:fs';
import readline from 'node:readline';
import type { Command } from 'commander';
import { AppError } from '../kernel/errors.js';
import { type BulkResult, type BulkRow, bulkRow, MAX_BULK_ROWS } from '../mail/bulk-schemas.js';
import { runCommand } from './cli-support.js';

/** Rows per request: each request is short, and progress is reported after each. */
const ROWS_PER_REQUEST = 500;

type Opts = { mailbox: string; template: string; rows: string; json?: boolean };

/** Reads FILE.jsonl (one row per line, blank lines skipped), checking each line as the server would. */
const readRows = async (file: string): Promise<BulkRow[]> => {
  const rows: BulkRow[] = [];
  const lines = readline.createInterface({ input: fs.createReadStream(file, 'utf8'), crlfDelay: Number.POSITIVE_INFINITY });
  let n = 0;
  for await (const line of lines) {
    n++;
    if (line.trim() === '') continue;
    let parsed: unknown;
    try {
      parsed = JSON.parse(line);
    } catch {
      throw new AppError('invalid_rows', 400, `Line ${n} of the rows file is not JSON.`);
    }
    const r = bulkRow.safeParse(parsed);
    if (!r.success) {
      const issue = r.error.issues[0];
      throw new AppError('invalid_rows', 400, `Line ${n}: ${issue?.path.join('.') || 'row'} ${issue?.message ?? 'is invalid'}.`);
    }
    rows.push(r.data);
    if (rows.length > MAX_BULK_ROWS * 100) throw new AppError('invalid_rows', 400, 'The rows file is too large.');
  }
  if (rows.length === 0) throw new AppError('invalid_rows', 400, 'The rows file has no rows.');
  return rows;
};

/**
 * `mailward mail send-bulk`: sends an approved template to the rows of a JSONL file through a running server
 * (MAILWARD_ADDR, MAILWARD_API_KEY: an agent key with mail:send), ROWS_PER_REQUEST rows per request, with a
 * progress line on stderr. Each row keeps its own idempotency key, so running it again after a failure sends
 * only what was not sent. Exit 0 when every row was queued or held, 1 when a row was refused or a request failed.
 */
export const registerSendBulk = (mail: Command) => {
  mail
    .command('send-bulk')
    .description(
      'Send an approved template to every row of a JSONL file ({"to":[...],"slots":{...},"idempotency_key":"..."} per line) ' +
        'through a running server (MAILWARD_ADDR, MAILWARD_API_KEY); progress on stderr; safe to repeat',
    )
    .requiredOption('--mailbox <id>', 'the sending mailbox (mbx_...)')
    .requiredOption('--template <id>', 'the approved template (tpl_...)')
    .requiredOption('--rows <file>', 'JSONL rows')
    .option('--json', 'print one JSON document on stdout: {template_id, counts, results}')
    .action(
      runCommand(async (opts: Opts) => {
        const key = process.env.MAILWARD_API_KEY;
        if (!key) throw new AppError('api_key_required', 400, 'Set MAILWARD_API_KEY to an agent key with mail:send.');
        const addr = (process.env.MAILWARD_ADDR ?? 'http://127.0.0.1:8025').replace(/\/+$/, '');
        const rows = await readRows(opts.rows);
        const results: BulkResult[] = [];
        const counts = { queued: 0, pending_approval: 0, refused: 0 };
        for (let start = 0; start < rows.length; start += ROWS_PER_REQUEST) {
          const chunk = rows.slice(start, start + ROWS_PER_REQUEST);
          const res = await fetch(`${addr}/v1/mailboxes/${encodeURIComponent(opts.mailbox)}/send-bulk`, {
            method: 'POST',
            headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
            body: JSON.stringify({ template_id: opts.template, rows: chunk }),
            redirect: 'error',
            signal: AbortSignal.timeout(10 * 60_000),
          });
          const body = (await res.json().catch(() => null)) as {
            counts?: typeof counts;
            results?: BulkResult[];
            code?: string;
            detail?: string;
          } | null;
          if (!res.ok || !body?.results || !body.counts) {
            process.stderr.write(`mailward: rows ${start + 1}-${start + chunk.length}: ${body?.detail ?? `HTTP ${res.status}`}\n`);
            throw new AppError(
              body?.code ?? 'bulk_failed',
              res.status >= 500 ? 500 : 400,
              'The bulk send stopped; run it again to finish.',
            );
          }
          for (const r of body.results) results.push({ ...r, row: r.row + start });
          counts.queued += body.counts.queued;
          counts.pending_approval += body.counts.pending_approval;
          counts.refused += body.counts.refused;
          process.stderr.write(
            `sent ${start + chunk.length}/${rows.length} rows: ${counts.queued} queued, ${counts.pending_approval} held, ${counts.refused} refused\n`,
          );
        }
        if (opts.json) process.stdout.write(`${JSON.stringify({ template_id: opts.template, counts, results })}\n`);
        else {
          process.stdout.write(
            `${rows.length} rows: ${counts.queued} queued, ${counts.pending_approval} held for review, ${counts.refused} refused\n`,
          );
          for (const r of results.filter((x) => x.status === 'refused'))
            process.stdout.write(`row ${r.row + 1} (${r.idempotency_key}): refused, ${r.code}\n`);
        }
        return counts.refused > 0 ? 1 : 0;
      }),
    );
};
