import type { Command } from 'commander';
import { createContainer } from '../app/container.js';
import { mcpDepsOf } from '../app/mcp-deps.js';
import { createLogger } from '../kernel/log.js';
import { runStdioServer } from '../mcp/mcp-stdio.js';
import { configOrExit, runCommand } from './cli-support.js';

export const registerMcp = (program: Command) =>
  program
    .command('mcp')
    .description(
      'MCP server over stdio for one agent, authenticating with MAILWARD_API_KEY. stdout carries only the protocol; logs go to stderr. ' +
        'Needs the store of a running `mailward serve` (same MAILWARD_DATA_DIR or DATABASE_URL, same master key), which delivers and receives the mail.',
    )
    .action(
      runCommand(async () => {
        const key = process.env.MAILWARD_API_KEY;
        if (!key) {
          process.stderr.write("mailward: MAILWARD_API_KEY is not set; set it to the agent's API key (mw_...)\n");
          return 2;
        }
        const config = configOrExit();
        // Anything on stdout that is not protocol breaks MCP clients: every log line goes to stderr (fd 2).
        const logger = createLogger({ level: config.logLevel, destination: 2 });
        // A stray rejection must not end an agent's session: log its class on stderr (never its message: it may hold data) and keep serving.
        process.on('unhandledRejection', (e) => {
          const x = e as { name?: string; code?: unknown } | undefined;
          logger.error({ err: { type: x?.name ?? typeof e, code: x?.code } }, 'unhandled rejection in mailward mcp');
        });
        const c = await createContainer(config, { logger });
        try {
          await runStdioServer(
            { deps: mcpDepsOf(c), apiKeys: c.apiKeys, rateLimiter: c.rateLimiter, logger: c.logger, maxLineBytes: c.config.http.bodyLimit },
            key,
          );
        } finally {
          await c.close();
        }
        return 0;
      }),
    );
