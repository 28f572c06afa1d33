import { createLogger } from '../kernel/log.js';
import { createContainer } from '../app/container.js';
import { ConfigError, loadConfig } from '../app/config.js';
import { isAppError } from '../kernel/errors.js';
import { assertSafeText } from '../kernel/text-input.js';

/** Loads the configuration or prints every problem and exits 2. */
export const configOrExit = () => {
  try {
    return loadConfig();
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`mailward: ${e.message}\n`);
      process.exit(2);
    }
    throw e;
  }
};

/** Runs a command body; errors become one line on stderr and a non-zero exit, never a stack with data in it. */
export const runCommand =
  <A extends unknown[]>(fn: (...args: A) => Promise<number | undefined>) =>
  async (...args: A) => {
    try {
      // The same rule as REST and MCP (kernel/text-input.ts) for arguments and options that reach the store.
      assertSafeText(args, 'arguments');
      const code = await fn(...args);
      if (code) process.exitCode = code;
    } catch (e) {
      if (isAppError(e)) process.stderr.write(`mailward: ${e.detail} (${e.code})\n`);
      else if (e instanceof ConfigError) process.stderr.write(`mailward: ${e.message}\n`);
      else process.stderr.write(`mailward: unexpected error: ${(e as Error)?.message ?? String(e)}\n`);
      process.exitCode = isAppError(e) && e.status < 500 ? 1 : 2;
    }
  };

/** The container of a one-shot command: warnings and errors on stderr, stdout left to the command's output. */
export const openContainer = () => createContainer(configOrExit(), { logger: createLogger({ level: 'warn', destination: 2 }) });
