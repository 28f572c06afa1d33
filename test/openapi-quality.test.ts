import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildOpenApiDocument } from '../src/app/openapi-document.js';
import { ERROR_CODES } from '../src/kernel/errors.js';
import { tempDir } from './support/dialects.js';
import { repoRoot } from './support/processes.js';

type Operation = {
  operationId?: string;
  security?: unknown[];
  parameters?: { in: string; name: string }[];
  requestBody?: { content: Record<string, unknown> };
  responses: Record<string, { content?: Record<string, { schema?: { $ref?: string } }> }>;
};
type Doc = {
  servers?: { url: string }[];
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, { properties?: Record<string, { enum?: string[] }> }> };
};

const operations = (doc: Doc) =>
  Object.entries(doc.paths).flatMap(([p, methods]) => Object.entries(methods).map(([m, op]) => ({ key: `${m.toUpperCase()} ${p}`, op })));

const byId = (doc: Doc, id: string) => operations(doc).find((o) => o.op.operationId === id)?.op;

/**
 * Every code thrown in src, found by reading the source (not by asking the catalogue): the literal first argument
 * of `new AppError`, the status helpers, sendProblem and fastify's error table, with the status each implies.
 */
const codesInSource = (): { code: string; status: number; file: string }[] => {
  const walk = (d: string): string[] =>
    fs.readdirSync(d, { withFileTypes: true }).flatMap((e) => {
      const p = path.join(d, e.name);
      return e.isDirectory() ? walk(p) : e.name.endsWith('.ts') && !e.name.endsWith('.test.ts') ? [p] : [];
    });
  const helpers: Record<string, number> = { badRequest: 400, forbidden: 403, conflict: 409, unprocessable: 422, unavailable: 503 };
  const found: { code: string; status: number; file: string }[] = [];
  for (const file of walk(path.join(repoRoot, 'src'))) {
    const t = fs.readFileSync(file, 'utf8');
    const rel = path.relative(repoRoot, file);
    for (const m of t.matchAll(/new AppError\(\s*'([a-z0-9_]+)'\s*,\s*(\d+)/g))
      found.push({ code: m[1]!, status: Number(m[2]), file: rel });
    for (const m of t.matchAll(/\b(badRequest|forbidden|conflict|unprocessable|unavailable)\(\s*'([a-z0-9_]+)'/g))
      found.push({ code: m[2]!, status: helpers[m[1]!]!, file: rel });
    for (const m of t.matchAll(/sendProblem\(\s*[^,]+,\s*[^,]+,\s*(\d+)\s*,\s*'([a-z0-9_]+)'/g))
      found.push({ code: m[2]!, status: Number(m[1]), file: rel });
    for (const m of t.matchAll(/\[(\d{3}), '([a-z0-9_]+)', '/g)) found.push({ code: m[2]!, status: Number(m[1]), file: rel });
    for (const m of t.matchAll(/new AppError\(\s*code \?\? '([a-z0-9_]+)'\s*,\s*(\d+)/g))
      found.push({ code: m[1]!, status: Number(m[2]), file: rel });
  }
  return found;
};

describe('OpenAPI document quality', () => {
  let doc: Doc;
  beforeAll(async () => {
    doc = (await buildOpenApiDocument()) as unknown as Doc;
  });

  it('gives every operation a unique camelCase operationId (a new route without one fails here)', () => {
    const ops = operations(doc);
    expect(ops.length).toBeGreaterThan(50);
    const missing = ops.filter((o) => !o.op.operationId).map((o) => o.key);
    expect(missing).toEqual([]);
    const ids = ops.map((o) => o.op.operationId!);
    expect(new Set(ids).size).toBe(ids.length);
    for (const id of ids) expect(id).toMatch(/^[a-z][a-zA-Z0-9]+$/);
    // The SDK and its users depend on these names: a rename fails here.
    for (const id of [
      'sendEmail',
      'replyEmail',
      'listApprovals',
      'createAgent',
      'createMailbox',
      'createAgentApiKey',
      'revokeApiKey',
      'getMe',
    ])
      expect(ids).toContain(id);
  });

  it('declares every error as application/problem+json with a named schema listing the codes of its status', () => {
    for (const { key, op } of operations(doc)) {
      for (const [status, r] of Object.entries(op.responses)) {
        if (Number(status) < 400) continue;
        expect(Object.keys(r.content ?? {}), `${key} ${status}`).toEqual(['application/problem+json']);
        const ref = r.content!['application/problem+json']!.schema!.$ref!;
        expect(ref, `${key} ${status}`).toMatch(/^#\/components\/schemas\/[A-Za-z]+Problem$/);
        const listed = doc.components.schemas[ref.split('/').pop()!]!.properties!.code!.enum ?? [];
        const catalogued = ERROR_CODES.filter((e) => e.status === Number(status)).map((e) => e.code);
        expect(listed.length, `${key} ${status}`).toBeGreaterThan(0);
        expect(new Set(listed)).toEqual(new Set(catalogued));
      }
    }
    // Behind the key check every route can answer the auth hook's 401 and 429.
    expect(Object.keys(byId(doc, 'getMe')!.responses)).toEqual(expect.arrayContaining(['200', '401', '429']));
  });

  it('catalogues every error code the source throws, with its status', () => {
    const found = codesInSource();
    expect(found.length).toBeGreaterThan(80);
    const catalogued = new Set(ERROR_CODES.map((e) => `${e.code} ${e.status}`));
    const missing = found.filter((f) => !catalogued.has(`${f.code} ${f.status}`)).map((f) => `${f.code} ${f.status} (${f.file})`);
    expect(missing).toEqual([]);
  });

  it('declares Idempotency-Key on send and reply, the message/rfc822 body of identity verification, public routes and servers', () => {
    for (const id of ['sendEmail', 'replyEmail']) {
      expect(byId(doc, id)!.parameters).toEqual(
        expect.arrayContaining([expect.objectContaining({ in: 'header', name: 'idempotency-key' })]),
      );
    }
    expect(Object.keys(byId(doc, 'verifyIdentity')!.requestBody!.content)).toEqual(['message/rfc822']);
    for (const id of ['getHealth', 'getMetrics', 'getJwks']) expect(byId(doc, id)!.security).toEqual([]);
    for (const { key, op } of operations(doc)) expect(op.security, key).toBeDefined();
    expect(doc.servers?.length).toBeGreaterThan(0);
    // Named components, not inline shapes: the send body and the agent are referenced by name.
    expect(byId(doc, 'createAgent')!.requestBody!.content['application/json']).toEqual({
      schema: { $ref: '#/components/schemas/CreateAgentRequest' },
    });
    expect(Object.keys(doc.components.schemas)).toEqual(
      expect.arrayContaining(['Agent', 'Mailbox', 'SendEmailRequest', 'Approval', 'NotFoundProblem']),
    );
  });

  it('lints clean with Redocly CLI and its recommended rules', async () => {
    const file = path.join(tempDir('mw-openapi'), 'openapi.json');
    fs.writeFileSync(file, JSON.stringify(doc));
    const bin = path.join(repoRoot, 'node_modules', '.bin', 'redocly');
    const { stdout } = await promisify(execFile)(bin, ['lint', file, '--extends=recommended', '--format=json'], {
      env: { ...process.env, REDOCLY_TELEMETRY: 'off', REDOCLY_SUPPRESS_UPDATE_NOTICE: 'true', NO_COLOR: '1' },
      cwd: path.dirname(file),
    }).catch((e: { stdout?: string; stderr?: string }) => {
      throw new Error(`redocly lint failed:\n${e.stdout ?? ''}\n${e.stderr ?? ''}`);
    });
    const report = JSON.parse(stdout.slice(stdout.indexOf('{'))) as { totals: { errors: number; warnings: number }; problems: unknown[] };
    expect(report.problems).toEqual([]);
    expect(report.totals).toMatchObject({ errors: 0, warnings: 0 });
  });
});
