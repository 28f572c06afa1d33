#!/usr/bin/env node
import { Command } from 'commander';
import { registerAudit } from './audit-command.js';
import { registerBackup } from './backup-command.js';
import { registerDns } from './dns-command.js';
import { registerDoctor } from './doctor-command.js';
import { registerHumans } from './humans-command.js';
import { registerIdentity } from './identity-command.js';
import { registerInit } from './init-command.js';
import { registerKeys } from './keys-command.js';
import { registerCompliance } from './compliance-command.js';
import { registerDisclosures } from './disclosures-command.js';
import { registerMail } from './mail-command.js';
import { registerMcp } from './mcp-command.js';
import { registerProvisioning } from './provision-command.js';
import { registerServe } from './serve-command.js';
import { registerVerify } from './verify-command.js';

const program = new Command()
  .name('mailward')
  .description(
    'Mailward: identity, oversight, mail, vault and audit for AI agents in healthcare.\nHonours MAILWARD_DATA_DIR and DATABASE_URL.',
  )
  .version('0.1.0')
  .showHelpAfterError();

registerServe(program);
registerInit(program);
registerIdentity(program);
registerDns(program);
registerAudit(program);
registerKeys(program);
registerBackup(program);
registerDoctor(program);
registerMcp(program);
registerMail(program);
registerDisclosures(program);
registerCompliance(program);
registerVerify(program);
registerProvisioning(program);
registerHumans(program);

await program.parseAsync(process.argv);
