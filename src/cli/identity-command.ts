import fs from 'node:fs';
import type { Command } from 'commander';
import { createContainer } from '../app/container.js';
import { createLogger } from '../kernel/log.js';
import { configOrExit, runCommand } from './cli-support.js';

/** `mailward identity verify FILE.eml [--json]`: exit 0 valid, 1 invalid (CONTRACT.md). */
export const registerIdentity = (program: Command) => {
  const identity = program.command('identity').description('AI-identity header tools');
  identity
    .command('verify')
    .description('Check the X-Agent-Identity header of a message: ES256 signature, key (by kid) and body hash')
    .argument('<file>', 'the message, RFC 5322 (.eml)')
    .option('--json', 'print one JSON document on stdout')
    .action(
      runCommand(async (file: string, opts: { json?: boolean }) => {
        let raw: Buffer;
        try {
          raw = fs.readFileSync(file);
        } catch {
          process.stderr.write(`mailward: cannot read ${file}\n`);
          return 2;
        }
        const config = configOrExit();
        const c = await createContainer(config, { logger: createLogger({ level: 'warn', destination: 2 }) });
        try {
          const r = await c.mail.identityVerifier.verify(raw);
          if (opts.json) process.stdout.write(`${JSON.stringify(r)}\n`);
          else {
            const lines = r.valid
              ? [
                  'valid: X-Agent-Identity verified',
                  `  agent: ${r.agent?.id} <${r.agent?.address}>`,
                  `  delegation chain: ${r.delegation_chain.map((e) => `${e.type}:${e.name}`).join(' > ')}`,
                  `  responsible human: ${r.responsible_human?.name ?? '-'}`,
                  `  oversight: ${r.oversight_mode}; approved by: ${r.approved_by ?? 'nobody (not held)'}`,
                  `  key: ${r.kid}`,
                ]
              : [`invalid: ${r.reasons.join(', ')}`];
            process.stdout.write(`${lines.join('\n')}\n`);
          }
          return r.valid ? 0 : 1;
        } finally {
          await c.close();
        }
      }),
    );
  return identity;
};
