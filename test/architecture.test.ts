import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const src = path.resolve(import.meta.dirname, '..', 'src');

const filesUnder = (dir: string): string[] =>
  fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return filesUnder(p);
    return e.name.endsWith('.ts') && !e.name.endsWith('.test.ts') && !e.name.endsWith('.d.ts') ? [p] : [];
  });

const importsOf = (file: string): string[] =>
  [...fs.readFileSync(file, 'utf8').matchAll(/^\s*(?:import|export)[^'"]*from\s+'([^']+)'/gm)].map((m) => m[1]!);

const offenders = (dirs: string[], forbidden: RegExp) =>
  dirs.flatMap((d) =>
    filesUnder(path.join(src, d)).flatMap((f) =>
      importsOf(f)
        .filter((i) => forbidden.test(i))
        .map((i) => `${path.relative(src, f)} -> ${i}`),
    ),
  );

// STYLE.md, dependency direction: adapters -> services -> repos -> store -> kernel.
describe('dependency direction', () => {
  it('keeps protocol libraries and adapters out of services', () => {
    const adapters =
      /^(fastify|fastify-type-provider-zod|@fastify\/.*|smtp-server|commander|@modelcontextprotocol\/.*)$|\/(http|cli|mcp|web)\//;
    expect(offenders(['identity', 'audit', 'vault', 'mail', 'oversight', 'phi', 'queue', 'kernel', 'store'], adapters)).toEqual([]);
  });

  it('keeps the audit log a sink that imports no domain', () => {
    expect(offenders(['audit'], /\.\.\/(identity|vault|mail|oversight|phi|queue|app)\//)).toEqual([]);
  });

  it('keeps kernel and store free of domains', () => {
    expect(offenders(['kernel', 'store'], /\.\.\/(identity|audit|vault|mail|oversight|phi|queue|app|http|cli)\//)).toEqual([]);
  });

  it('finds the imports it checks (the scan itself works)', () => {
    expect(importsOf(path.join(src, 'http', 'build-server.ts'))).toContain('fastify');
  });
});
