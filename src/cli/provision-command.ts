import { type Command, Option } from 'commander';
import { isMailwardError } from '../../sdk/src/index.js';
import { isAppError } from '../kernel/errors.js';
import { assertSafeText } from '../kernel/text-input.js';
import { openProvisioner, type Provisioner, SettingError, type Target } from './provision-client.js';

type Common = Target & { json?: boolean };
type Column<T> = [header: string, value: (row: T) => unknown];

const ROLES = ['admin', 'reviewer', 'privacy_officer', 'auditor'];
const MODES = ['autonomous', 'monitored', 'gated_send', 'gated_all', 'read_only'];

const cell = (v: unknown): string => (v === null || v === undefined ? '-' : Array.isArray(v) ? v.join(',') || '-' : String(v));

/** A plain table, columns padded to their widest cell: readable in a terminal, greppable in a script. */
export const formatTable = <T>(rows: readonly T[], columns: Column<T>[]): string => {
  const cells = [columns.map(([h]) => h), ...rows.map((r) => columns.map(([, f]) => cell(f(r))))];
  const widths = columns.map((_, i) => Math.max(...cells.map((line) => line[i]!.length)));
  return `${cells.map((line) => line.map((c, i) => (i === line.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n')}\n`;
};

/**
 * Runs one provisioning action: opens the target (remote or local), prints `--json` as one JSON document or a
 * table, and maps every failure to one line on stderr (CONTRACT.md CLI; STYLE.md Errors): 1 for a refusal by the
 * server (4xx, its `code` shown), 2 for a setting to fix or anything else.
 */
const act =
  <A extends unknown[], R>(run: (p: Provisioner, ...args: A) => Promise<R>, show: (r: R) => string) =>
  async (...args: [...A, Command]) => {
    // commander calls an action with its arguments, the options object, then the command itself.
    const rest = args.slice(0, -1) as unknown as A;
    const opts = rest[rest.length - 1] as Common;
    let p: Provisioner | undefined;
    try {
      assertSafeText(rest, 'arguments');
      assertSafeText({ ...opts }, 'options');
      p = await openProvisioner({ addr: opts.addr, key: opts.key });
      const r = await run(p, ...rest);
      process.stdout.write(opts.json ? `${JSON.stringify(r)}\n` : show(r));
    } catch (e) {
      if (e instanceof SettingError) {
        process.stderr.write(`mailward: ${e.message}\n`);
        process.exitCode = 2;
      } else if (isMailwardError(e) || isAppError(e)) {
        process.stderr.write(`mailward: ${e.detail} (${e.code})\n`);
        process.exitCode = e.status < 500 ? 1 : 2;
      } else {
        process.stderr.write(`mailward: unexpected error: ${(e as Error)?.message ?? String(e)}\n`);
        process.exitCode = 2;
      }
    } finally {
      await p?.close();
    }
  };

/** `--addr`, `--key`, `--json` on every provisioning command. */
const withTarget = (c: Command) =>
  c
    .option('--addr <url>', 'a running server, e.g. http://127.0.0.1:8025 (default: MAILWARD_ADDR; unset: the local data dir)')
    .option('--key <api-key>', 'an admin API key (default: MAILWARD_API_KEY; locally also <data dir>/bootstrap-admin.key)')
    .option('--json', 'print one JSON document on stdout');

const one = (label: string, fields: [string, unknown][]) =>
  `${label}\n${fields.map(([k, v]) => `  ${k.padEnd(18)} ${cell(v)}`).join('\n')}\n`;

const collect = (v: string, prev: string[] = []) => [...prev, ...v.split(',').filter(Boolean)];

const TARGET_HELP = `
Target: with MAILWARD_ADDR (or --addr) the command calls that server's REST API with MAILWARD_API_KEY (or --key);
without, it opens the local store (MAILWARD_DATA_DIR, default ./data, or DATABASE_URL) in-process. Either way it
acts as the key's principal: an admin, and every change is in the audit log under that name.`;

/**
 * `mailward departments|humans|agents|mailboxes create|list|deactivate` and `mailward keys create|list|revoke`:
 * provisioning for IT without curl, in the style of the Vault CLI (`vault secrets list`, `-format=json`).
 */
export const registerProvisioning = (program: Command) => {
  const departments = program.command('departments').description('Departments: create and list').addHelpText('after', TARGET_HELP);
  withTarget(departments.command('create').description('Create a department'))
    .requiredOption('--name <name>', 'the department name')
    .option('--parent <dep_id>', 'parent department')
    .action(
      act(
        (p, o: { name: string; parent?: string }) => p.createDepartment({ name: o.name, ...(o.parent ? { parent_id: o.parent } : {}) }),
        (d) =>
          one('Department created', [
            ['id', d.id],
            ['name', d.name],
            ['parent_id', d.parent_id],
          ]),
      ),
    );
  withTarget(departments.command('list').description('List departments')).action(
    act(
      (p, _o: Common) => p.listDepartments(),
      (rows) =>
        formatTable(rows, [
          ['ID', (d) => d.id],
          ['NAME', (d) => d.name],
          ['PARENT', (d) => d.parent_id],
          ['CREATED', (d) => d.created_at],
        ]),
    ),
  );

  const humans = program
    .command('humans')
    .description('Humans (reviewers, admins...): create, list, deactivate')
    .addHelpText('after', TARGET_HELP);
  withTarget(humans.command('create').description('Create a human with roles'))
    .requiredOption('--name <name>', 'full name')
    .requiredOption('--email <address>', 'their email address')
    .addOption(
      new Option('--role <role...>', `one or more roles (${ROLES.join(', ')}); repeat or separate with commas`).makeOptionMandatory(),
    )
    .action(
      act(
        (p, o: { name: string; email: string; role: string[] }) =>
          p.createHuman({ name: o.name, email: o.email, roles: o.role.flatMap((r) => collect(r)) as never }),
        (h) =>
          one('Human created', [
            ['id', h.id],
            ['name', h.name],
            ['email', h.email],
            ['roles', h.roles],
          ]),
      ),
    );
  withTarget(humans.command('list').description('List humans')).action(
    act(
      (p, _o: Common) => p.listHumans(),
      (rows) =>
        formatTable(rows, [
          ['ID', (h) => h.id],
          ['NAME', (h) => h.name],
          ['EMAIL', (h) => h.email],
          ['ROLES', (h) => h.roles],
          ['ACTIVE', (h) => h.is_active],
        ]),
    ),
  );
  withTarget(humans.command('deactivate').description('Deactivate a human: their keys stop working at once'))
    .argument('<hum_id>', 'the human')
    .action(
      act(
        (p, id: string, _o: Common) => p.deactivateHuman(id),
        (h) =>
          one('Human deactivated', [
            ['id', h.id],
            ['name', h.name],
            ['deactivated_at', h.deactivated_at],
          ]),
      ),
    );

  const agents = program.command('agents').description('Agents: create, list, deactivate').addHelpText('after', TARGET_HELP);
  withTarget(agents.command('create').description('Create an agent with its own address and delegation chain'))
    .requiredOption('--name <name>', 'the agent name')
    .requiredOption('--department <dep_id>', 'its department')
    .requiredOption('--responsible <hum_id>', 'the human responsible for it')
    .option('--local-part <local>', 'address local part (default: from the name)')
    .action(
      act(
        (p, o: { name: string; department: string; responsible: string; localPart?: string }) =>
          p.createAgent({
            name: o.name,
            department_id: o.department,
            responsible_human_id: o.responsible,
            ...(o.localPart ? { address_local_part: o.localPart } : {}),
          }),
        (a) =>
          one('Agent created', [
            ['id', a.id],
            ['name', a.name],
            ['address', a.address],
            ['delegation chain', a.delegation_chain.map((e) => e.name).join(' > ')],
            ['responsible', `${a.responsible_human.name} (${a.responsible_human.id})`],
          ]),
      ),
    );
  withTarget(agents.command('list').description('List agents')).action(
    act(
      (p, _o: Common) => p.listAgents(),
      (rows) =>
        formatTable(rows, [
          ['ID', (a) => a.id],
          ['NAME', (a) => a.name],
          ['ADDRESS', (a) => a.address],
          ['DEPARTMENT', (a) => a.department_id],
          ['ACTIVE', (a) => a.is_active],
        ]),
    ),
  );
  withTarget(agents.command('deactivate').description('Deactivate an agent: its keys stop working at once, its mail is refused'))
    .argument('<agt_id>', 'the agent')
    .action(
      act(
        (p, id: string, _o: Common) => p.deactivateAgent(id),
        (a) =>
          one('Agent deactivated', [
            ['id', a.id],
            ['name', a.name],
            ['deactivated_at', a.deactivated_at],
          ]),
      ),
    );

  const mailboxes = program.command('mailboxes').description('Mailboxes: create and list').addHelpText('after', TARGET_HELP);
  withTarget(mailboxes.command('create').description('Create a mailbox for an agent (its address by default)'))
    .requiredOption('--agent <agt_id>', 'the agent')
    .requiredOption('--display-name <name>', 'the name shown in From:')
    .addOption(new Option('--mode <mode>', 'oversight mode (default gated_send)').choices(MODES))
    .option('--address <address>', "another address on the organisation's domain")
    .option('--forward-to <address>', 'where a monitored mailbox sends copies')
    .action(
      act(
        (p, o: { agent: string; displayName: string; mode?: string; address?: string; forwardTo?: string }) =>
          p.createMailbox({
            agent_id: o.agent,
            display_name: o.displayName,
            ...(o.mode ? { oversight_mode: o.mode as never } : {}),
            ...(o.address ? { address: o.address } : {}),
            ...(o.forwardTo ? { forward_to: o.forwardTo } : {}),
          }),
        (m) =>
          one('Mailbox created', [
            ['id', m.id],
            ['address', m.address],
            ['oversight_mode', m.oversight_mode],
            ['agent_id', m.agent_id],
          ]),
      ),
    );
  withTarget(mailboxes.command('list').description('List mailboxes')).action(
    act(
      (p, _o: Common) => p.listMailboxes(),
      (rows) =>
        formatTable(rows, [
          ['ID', (m) => m.id],
          ['ADDRESS', (m) => m.address],
          ['MODE', (m) => m.oversight_mode],
          ['AGENT', (m) => m.agent_id],
          ['DISPLAY NAME', (m) => m.display_name],
        ]),
    ),
  );

  // `keys` also holds `keys rotate` (the key-encryption key, keys-command.ts): add to it rather than replace it.
  const keys = program.commands.find((c) => c.name() === 'keys') ?? program.command('keys');
  keys
    .description('API keys (create, list, revoke) and the key-encryption key (rotate)')
    .addHelpText('after', TARGET_HELP.replace('Target:', 'Target of create, list and revoke (rotate works on the local store only):'));
  withTarget(keys.command('create').description('Issue an API key for a human or an agent; the key is shown once'))
    .addOption(new Option('--agent <agt_id>', 'for this agent').conflicts('human'))
    .addOption(new Option('--human <hum_id>', 'for this human').conflicts('agent'))
    .option('--scope <scope...>', 'agent scopes (mail:read, mail:send, vault:read, vault:write, vault:reveal, vault:totp) or human roles')
    .action(
      act(
        async (p, o: { agent?: string; human?: string; scope?: string[] }) => {
          if (!o.agent && !o.human) throw new SettingError('give --agent <agt_id> or --human <hum_id>.');
          const scopes = o.scope?.flatMap((s) => collect(s));
          return o.agent ? p.createKey('agent', o.agent, scopes) : p.createKey('human', o.human!, scopes);
        },
        (k) =>
          one('API key created (shown once; store it now)', [
            ['id', k.id],
            ['key', k.key],
            ['principal', `${k.principal.type} ${k.principal.id}`],
            ['scopes', k.scopes],
          ]),
      ),
    );
  withTarget(keys.command('list').description("List API keys (never their secrets): the organisation's, or one principal's"))
    .option('--principal <id>', 'only the keys of this human or agent')
    .action(
      act(
        (p, o: { principal?: string }) => p.listKeys(o.principal),
        (rows) =>
          formatTable(rows, [
            ['ID', (k) => k.id],
            ['PRINCIPAL', (k) => `${k.principal.type} ${k.principal.id}`],
            ['SCOPES', (k) => k.scopes],
            ['CREATED', (k) => k.created_at],
            ['REVOKED', (k) => k.revoked_at],
            ['LAST USED', (k) => k.last_used_at],
          ]),
      ),
    );
  withTarget(keys.command('revoke').description('Revoke an API key at once'))
    .argument('<key_id>', 'the key id (key_...)')
    .action(
      act(
        (p, id: string, _o: Common) => p.revokeKey(id),
        (k) =>
          one('API key revoked', [
            ['id', k.id],
            ['revoked_at', k.revoked_at],
          ]),
      ),
    );
};
