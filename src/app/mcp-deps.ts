import { verifyMessage } from '../../verifier/src/index.js';
import type { McpDeps } from '../mcp/mcp-tools.js';
import type { Container } from './container.js';

/** The services the MCP tools call, picked out of the container (only `app/` knows the container). */
export const mcpDepsOf = (c: Container): McpDeps => ({
  identity: c.identity,
  apiKeys: c.apiKeys,
  mailboxes: c.mail.mailboxes,
  mail: c.mail.mail,
  bulk: c.mail.bulk,
  reader: c.mail.reader,
  vault: c.vault,
  consent: c.consent,
  events: c.mail.events,
  guard: c.guard,
  clock: c.clock,
  logger: c.logger,
  verifyMail: async (raw, o) =>
    verifyMessage(raw, {
      directory: o.directory ?? (await c.keyDirectory.document()),
      dns: c.mail.resolver.txt,
      receipt: o.receipt,
      witnessKeys: o.witnessKeys,
      logKeys: o.logKeys,
    }),
});
