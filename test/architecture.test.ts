import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const src = path.resolve(import.meta.dirname, '..', 'src');

// STYLE.md "Dependency direction", as data:
//   cli (the process entry) -> app (wires everything) -> adapters (http, mcp, smtp) -> services -> store -> kernel.
// Each folder under src lists the folders it may import (its own folder is always allowed).
// A folder missing from this table fails the test: a new folder must be placed in a layer.
const KERNEL = ['kernel'];
const STORE = ['store', ...KERNEL];
const SERVICES = ['identity', 'accounts', 'vault', 'mail', 'inbound', 'oversight', 'phi', 'queue', 'compliance', 'webhooks', 'templates'];
const BELOW_ADAPTERS = [...SERVICES, 'oauth', 'audit', 'events', ...STORE];
const ADAPTERS = ['http', 'mcp', 'smtp', 'web'];

const ALLOWED: Record<string, string[]> = {
  kernel: [],
  types: [],
  store: KERNEL,
  queue: STORE,
  // Audit is a sink: every domain calls it, it imports no domain.
  audit: STORE,
  // The domain-event log is a sink too: domains append to it in their transactions; it imports no domain.
  events: STORE,
  identity: BELOW_ADAPTERS,
  // Human sign-in: passwords, factors, sessions, SSO (the console in web/ is its adapter).
  accounts: BELOW_ADAPTERS,
  vault: BELOW_ADAPTERS,
  mail: BELOW_ADAPTERS,
  inbound: BELOW_ADAPTERS,
  // Oversight decides holds and approvals; it sees mail only through its port (oversight/held-mail.ts), wired by app.
  oversight: BELOW_ADAPTERS.filter((f) => f !== 'mail' && f !== 'inbound'),
  phi: BELOW_ADAPTERS,
  // Templates: written and approved by humans, rendered for the send path (mail imports it, never the reverse).
  templates: BELOW_ADAPTERS.filter((f) => f !== 'mail'),
  // Reading audit for people (viewer, proofs, legal holds; disclosures and breach scope next): above audit.
  compliance: BELOW_ADAPTERS,
  // OAuth 2.1 authorization-server state for MCP clients (codes and tokens stored hashed).
  oauth: BELOW_ADAPTERS,
  // Events out: the events API, webhook endpoints, fan-out and delivery (a domain service over the event log and the job worker).
  webhooks: BELOW_ADAPTERS,
  // REST and MCP are mounted side by side from app: neither imports the other.
  http: BELOW_ADAPTERS,
  mcp: BELOW_ADAPTERS,
  smtp: BELOW_ADAPTERS,
  web: BELOW_ADAPTERS,
  app: [...ADAPTERS, ...BELOW_ADAPTERS],
  cli: ['app', ...ADAPTERS, ...BELOW_ADAPTERS],
};

// Protocol libraries live at the edge only (STYLE.md: services never import fastify, smtp-server, the MCP SDK or commander).
const PROTOCOL_LIBRARIES: { pattern: RegExp; folders: string[] }[] = [
  { pattern: /^(fastify|fastify-type-provider-zod|@fastify\/.+)$/, folders: ['http', 'mcp', 'web', 'app', 'cli'] },
  { pattern: /^smtp-server$/, folders: ['smtp', 'app', 'cli'] },
  { pattern: /^@modelcontextprotocol\//, folders: ['mcp', 'app', 'cli'] },
  { pattern: /^commander$/, folders: ['cli'] },
];

// The open verifier (verifier/, published as @mailward/verifier) sits outside src and below every layer:
// it imports nothing of the server, and only these folders may use it.
const VERIFIER_USERS = ['cli', 'mcp', 'app'];

/** Debt: imports the table does not allow yet, each with why it stays for now. `from` is a path under src, `to` a folder or a library. */
const EXCEPTIONS: { from: string; to: string; reason: string }[] = [];

type SourceFile = { file: string; text: string };

const folderOf = (rel: string) => (rel.includes('/') ? rel.slice(0, rel.indexOf('/')) : '');

const importsOf = (text: string): string[] =>
  [
    ...text.matchAll(/^\s*(?:import|export)[^'"`;]*?from\s+['"]([^'"]+)['"]/gm),
    ...text.matchAll(/^\s*import\s+['"]([^'"]+)['"]/gm),
    ...text.matchAll(/\bimport\(\s*['"]([^'"]+)['"]\s*\)/g),
  ].map((m) => m[1]!);

/**
 * Every import the table does not allow, as `file -> import`. `files` are paths relative to src
 * (`mail/send-service.ts`) with their source text.
 */
const violations = (files: SourceFile[], allowed = ALLOWED, libraries = PROTOCOL_LIBRARIES, exceptions = EXCEPTIONS): string[] =>
  files.flatMap(({ file, text }) => {
    const from = folderOf(file);
    const mayImport = allowed[from];
    if (!mayImport) return [`${file} -> (folder "${from}" is not placed in the architecture table)`];
    return importsOf(text).flatMap((spec) => {
      if (spec.startsWith('.')) {
        const target = path.posix.normalize(path.posix.join(path.posix.dirname(file), spec));
        if (target.startsWith('../verifier/src/') && VERIFIER_USERS.includes(from)) return [];
        if (target.startsWith('..')) {
          // The CLI provisions running servers through the SDK (sdk/src), a client of the REST API outside the server's layers.
          if (from === 'cli' && target.startsWith('../sdk/src/')) return [];
          return [`${file} -> ${spec} (outside src)`];
        }
        const to = folderOf(target);
        if (to === from || mayImport.includes(to)) return [];
        if (exceptions.some((e) => e.from === file && e.to === to)) return [];
        return [`${file} -> ${spec}`];
      }
      const lib = libraries.find((l) => l.pattern.test(spec));
      if (!lib || lib.folders.includes(from)) return [];
      if (exceptions.some((e) => e.from === file && e.to === spec)) return [];
      return [`${file} -> ${spec}`];
    });
  });

const filesUnder = (dir: string): string[] =>
  fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return filesUnder(p);
    return e.name.endsWith('.ts') && !e.name.endsWith('.test.ts') ? [p] : [];
  });

const sources = (): SourceFile[] =>
  filesUnder(src).map((f) => ({ file: path.relative(src, f).split(path.sep).join('/'), text: fs.readFileSync(f, 'utf8') }));

describe('dependency direction', () => {
  it('places every folder under src in the architecture table', () => {
    const folders = fs
      .readdirSync(src, { withFileTypes: true })
      .filter((e) => e.isDirectory())
      .map((e) => e.name);
    expect(folders.filter((f) => !(f in ALLOWED))).toEqual([]);
    expect(fs.readdirSync(src).filter((f) => f.endsWith('.ts'))).toEqual([]);
  });

  it('keeps the verifier package free of the server: no import from src, only node:, jose and mailauth', () => {
    const dir = path.resolve(src, '..', 'verifier', 'src');
    const files = filesUnder(dir).map((f) => ({ file: path.relative(dir, f), text: fs.readFileSync(f, 'utf8') }));
    expect(files.length).toBeGreaterThan(3);
    const bad = files.flatMap(({ file, text }) =>
      importsOf(text)
        .filter((spec) => (spec.startsWith('.') ? !spec.startsWith('./') : !/^(node:|jose$|mailauth\/)/.test(spec)))
        .map((spec) => `${file} -> ${spec}`),
    );
    expect(bad).toEqual([]);
  });

  it('finds no import the table does not allow, in any folder', () => {
    expect(violations(sources())).toEqual([]);
  });

  it('keeps every listed exception needed (a paid-off debt is removed from the list)', () => {
    const files = sources();
    const unused = EXCEPTIONS.filter(
      (e) =>
        violations(
          files,
          ALLOWED,
          PROTOCOL_LIBRARIES,
          EXCEPTIONS.filter((x) => x !== e),
        ).length === 0,
    );
    expect(unused).toEqual([]);
  });

  it('reports an upward import, a sideways adapter import and a protocol library below the edge', () => {
    const bad: SourceFile[] = [
      { file: 'kernel/x.ts', text: "import { send } from '../mail/y.js';\n" },
      { file: 'mail/z.ts', text: "import type { FastifyInstance } from 'fastify';\nimport {\n  a,\n} from '../http/a.js';\n" },
      { file: 'kernel/crypto/k.ts', text: "export { ok } from '../ids.js';\nexport { no } from '../../store/db.js';\n" },
      { file: 'audit/a.ts', text: "import { m } from '../mail/m.js';\n" },
      { file: 'http/h.ts', text: "import { mcpRoutes } from '../mcp/mcp-http.js';\nimport type { C } from '../app/container.js';\n" },
      { file: 'inbound/l.ts', text: "import { SMTPServer } from 'smtp-server';\nconst m = await import('../cli/main.js');\n" },
      { file: 'newfolder/n.ts', text: '' },
    ];
    expect(violations(bad)).toEqual([
      'kernel/x.ts -> ../mail/y.js',
      'mail/z.ts -> fastify',
      'mail/z.ts -> ../http/a.js',
      'kernel/crypto/k.ts -> ../../store/db.js',
      'audit/a.ts -> ../mail/m.js',
      'http/h.ts -> ../mcp/mcp-http.js',
      'http/h.ts -> ../app/container.js',
      'inbound/l.ts -> smtp-server',
      'inbound/l.ts -> ../cli/main.js',
      'newfolder/n.ts -> (folder "newfolder" is not placed in the architecture table)',
    ]);
  });

  it('lets a listed exception through for its own file and target only', () => {
    const files: SourceFile[] = [
      { file: 'mail/a.ts', text: "import { r } from '../http/r.js';\nimport { m } from '../mcp/m.js';\n" },
      { file: 'mail/b.ts', text: "import { r } from '../http/r.js';\n" },
    ];
    const debt = [{ from: 'mail/a.ts', to: 'http', reason: 'synthetic' }];
    expect(violations(files, ALLOWED, PROTOCOL_LIBRARIES, debt)).toEqual(['mail/a.ts -> ../mcp/m.js', 'mail/b.ts -> ../http/r.js']);
  });

  it('allows what the table allows (the checker is not simply failing everything)', () => {
    const good: SourceFile[] = [
      { file: 'mail/a.ts', text: "import { x } from '../kernel/crypto/keyring.js';\nimport { y } from './b.js';\n" },
      { file: 'http/r.ts', text: "import Fastify from 'fastify';\nimport { s } from '../mail/send-service.js';\n" },
      {
        file: 'app/c.ts',
        text: "import { mcpRoutes } from '../mcp/mcp-http.js';\nimport { buildServer } from '../http/build-server.js';\n",
      },
    ];
    expect(violations(good)).toEqual([]);
  });

  it('finds the imports it checks (the scan itself works)', () => {
    expect(importsOf(fs.readFileSync(path.join(src, 'http', 'build-server.ts'), 'utf8'))).toContain('fastify');
  });
});
