import { resolveTxt } from 'node:dns/promises';
import fs from 'node:fs';
import type { Command } from 'commander';
import {
  type DnsAnswers,
  fetchDirectory,
  type KeyDirectory,
  parseDirectory,
  type Resolver,
  verifyMessage,
} from '../../verifier/src/index.js';
import { createContainer } from '../app/container.js';
import { createLogger } from '../kernel/log.js';
import { configOrExit, runCommand } from './cli-support.js';

type Opts = { receipt?: string; directory?: string; dns?: string; witnessKey?: string[]; logKey?: string[]; json?: boolean };

const readOrNull = (file: string) => {
  try {
    return fs.readFileSync(file);
  } catch {
    return null;
  }
};

/** Real DNS for DKIM when no answers are given (the verifier itself never goes to the network). */
const systemResolver: Resolver = async (name, type) => {
  if (type !== 'TXT') throw Object.assign(new Error('only TXT'), { code: 'ENOTFOUND' });
  return resolveTxt(name);
};

/**
 * `mailward verify FILE.eml [--receipt FILE] [--directory FILE|URL] [--dns FILE] [--witness-key VKEY]...`
 * (CONTRACT.md CLI): runs the open verifier (verifier/, @mailward/verifier) on a message. Exit 0 valid,
 * 1 invalid, 2 unusable input. Without --directory the keys of this installation are used; without --dns,
 * MAILWARD_DNS_OVERRIDES, else the system resolver.
 */
export const registerVerify = (program: Command) => {
  program
    .command('verify')
    .description(
      'Verify a message offline: both DKIM signatures, the attribution headers, X-Agent-Identity and (with --receipt) its transparency receipt',
    )
    .argument('<file>', 'the message, RFC 5322 (.eml)')
    .option('--receipt <file>', 'its c2sp.org/tlog-proof receipt (GET /v1/emails/{id}/receipt or /.well-known/mailward/receipts/{hash})')
    .option(
      '--directory <file|url>',
      "the sender's key directory (/.well-known/http-message-signatures-directory); a URL is fetched and its RFC 9421 signature checked",
    )
    .option('--dns <file>', 'DNS answers for DKIM, {"TXT": {"<selector>._domainkey.<domain>": ["v=DKIM1; ..."]}}')
    .option('--witness-key <vkey>', 'a witness whose cosignature the receipt must carry (repeatable)', (v: string, acc: string[] = []) => [
      ...acc,
      v,
    ])
    .option(
      '--log-key <vkey>',
      "the log's verifier key (default: the directory's log_verifier_keys; repeatable)",
      (v: string, acc: string[] = []) => [...acc, v],
    )
    .option('--json', 'print one JSON document on stdout')
    .action(
      runCommand(async (file: string, opts: Opts) => {
        const raw = readOrNull(file);
        if (!raw) {
          process.stderr.write(`mailward: cannot read ${file}\n`);
          return 2;
        }
        let receipt: string | undefined;
        if (opts.receipt) {
          const r = readOrNull(opts.receipt);
          if (!r) {
            process.stderr.write(`mailward: cannot read ${opts.receipt}\n`);
            return 2;
          }
          receipt = r.toString('utf8');
        }
        let directory: KeyDirectory;
        try {
          if (opts.directory && /^https?:\/\//.test(opts.directory)) directory = await fetchDirectory(opts.directory);
          else if (opts.directory) directory = parseDirectory(fs.readFileSync(opts.directory, 'utf8'));
          else {
            const c = await createContainer(configOrExit(), { logger: createLogger({ level: 'warn', destination: 2 }) });
            try {
              directory = await c.keyDirectory.document();
            } finally {
              await c.close();
            }
          }
        } catch (e) {
          process.stderr.write(`mailward: unusable key directory: ${(e as Error).message}\n`);
          return 2;
        }
        const dnsFile = opts.dns ?? process.env.MAILWARD_DNS_OVERRIDES;
        let dns: DnsAnswers | Resolver = systemResolver;
        if (dnsFile) {
          try {
            dns = JSON.parse(fs.readFileSync(dnsFile, 'utf8')) as DnsAnswers;
          } catch {
            process.stderr.write(`mailward: cannot read DNS answers from ${dnsFile}\n`);
            return 2;
          }
        }
        const r = await verifyMessage(raw, { directory, dns, receipt, witnessKeys: opts.witnessKey, logKeys: opts.logKey });
        if (opts.json) process.stdout.write(`${JSON.stringify(r)}\n`);
        else {
          const mark = (ok: boolean) => (ok ? 'ok  ' : 'FAIL');
          const lines = [
            r.valid ? 'valid' : `invalid: ${r.reasons.join(', ')}`,
            `  ${mark(r.dkim.valid)} DKIM: ${r.dkim.signatures.map((s) => `${s.algorithm} d=${s.domain} ${s.result}`).join('; ') || 'none'}`,
            `  ${mark(r.attribution.valid)} attribution headers: ${r.attribution.responsible.join(', ') || '-'}`,
            `  ${mark(r.identity.valid)} X-Agent-Identity: key ${r.identity.kid ?? '-'}`,
            ...(r.receipt
              ? [
                  `  ${mark(r.receipt.valid)} receipt: leaf ${r.receipt.index} of ${r.receipt.tree_size} in ${r.receipt.origin ?? '-'}; ${
                    r.receipt.witnesses.map((w) => `${w.name} ${w.cosigned ? 'cosigned' : 'NOT cosigned'}`).join(', ') ||
                    'no witness required'
                  }`,
                ]
              : []),
          ];
          process.stdout.write(`${lines.join('\n')}\n`);
        }
        return r.valid ? 0 : 1;
      }),
    );
};
