import { createJsonSchemaTransform, createJsonSchemaTransformObject } from 'fastify-type-provider-zod';
import { ADMISSION_EXEMPT_ROUTES } from './admission.js';
import { problemResponse } from './common-schemas.js';
import { registerOpenApiComponents } from './openapi-components.js';
import { openApi } from './openapi-registry.js';

const jsonSchemaTransform = createJsonSchemaTransform({ schemaRegistry: openApi });
const jsonSchemaTransformObject = createJsonSchemaTransformObject({ schemaRegistry: openApi });

type RouteInput = Parameters<typeof jsonSchemaTransform>[0];
type Json = Record<string, unknown>;

registerOpenApiComponents();

/** What the auth hook of /v1 (auth.ts) can answer on every route behind it, whatever the route declares. */
const AUTH_STATUSES = [401, 429];

/**
 * @fastify/swagger's per-route transform: zod to JSON Schema (fastify-type-provider-zod), plus what zod cannot say.
 * - Routes behind a key declare the auth hook's 401 and 429 problems.
 * - `x-raw-body: {contentType, description}` documents a body read as bytes by a content-type parser (the
 *   `message/rfc822` of POST /v1/identity/verify): fastify never validates it, so it has no zod schema.
 * - `x-openapi-responses` documents answers fastify must not serialize (the MCP transport's own stream).
 */
export const documentRoute = (input: RouteInput) => {
  const schema = input.schema as Json | undefined;
  if (!schema || schema.hide) return jsonSchemaTransform(input);
  const {
    'x-raw-body': rawBody,
    'x-openapi-responses': docOnly,
    ...rest
  } = schema as Json & { 'x-raw-body'?: { contentType: string; description: string }; 'x-openapi-responses'?: Json };
  const isPublic = Array.isArray(rest.security) && rest.security.length === 0;
  const response = { ...(docOnly ?? {}), ...((rest.response as Json | undefined) ?? {}) };
  if (!isPublic) for (const s of AUTH_STATUSES) response[s] ??= problemResponse(s);
  // Every route but liveness, metrics and streams may be refused by the admission queue (admission.ts: 503 server_busy).
  if (!ADMISSION_EXEMPT_ROUTES.has(input.url)) response[503] ??= problemResponse(503);
  const out = jsonSchemaTransform({ ...input, schema: { ...rest, response } } as RouteInput) as { schema: Json; url: string };
  if (rawBody) {
    out.schema.body = {
      content: {
        [rawBody.contentType]: { schema: { type: 'string', contentMediaType: rawBody.contentType, description: rawBody.description } },
      },
    };
  }
  return out;
};

const refsIn = (node: unknown, into: Set<string>) => {
  if (Array.isArray(node)) for (const n of node) refsIn(n, into);
  else if (node && typeof node === 'object') {
    for (const [k, v] of Object.entries(node)) {
      if (k === '$ref' && typeof v === 'string' && v.startsWith('#/components/schemas/')) into.add(v.slice('#/components/schemas/'.length));
      else refsIn(v, into);
    }
  }
};

const renameRefs = (node: unknown, names: Map<string, string>): unknown => {
  if (Array.isArray(node)) return node.map((n) => renameRefs(n, names));
  if (!node || typeof node !== 'object') return node;
  return Object.fromEntries(
    Object.entries(node).map(([k, v]) => {
      if (k === '$ref' && typeof v === 'string' && v.startsWith('#/components/schemas/')) {
        const name = v.slice('#/components/schemas/'.length);
        return [k, `#/components/schemas/${names.get(name) ?? name}`];
      }
      return [k, renameRefs(v, names)];
    }),
  );
};

/**
 * @fastify/swagger's whole-document transform. The zod provider emits every registered schema twice (`X` as
 * output, `XInput` as input); this keeps only the components the operations reach (Redocly no-unused-components)
 * and names a component `X` when only its input form is used (request bodies).
 */
export const tidyDocument = (input: Parameters<typeof jsonSchemaTransformObject>[0]) => {
  const doc = jsonSchemaTransformObject(input) as Json & { paths?: Json; components?: { schemas?: Record<string, unknown> } };
  const all = doc.components?.schemas ?? {};
  const reached = new Set<string>();
  refsIn(doc.paths, reached);
  // Components refer to components: follow refs until nothing new is reached.
  for (let frontier = [...reached]; frontier.length; ) {
    const next = new Set<string>();
    for (const name of frontier) refsIn(all[name], next);
    frontier = [...next].filter((n) => !reached.has(n));
    for (const n of frontier) reached.add(n);
  }
  const names = new Map<string, string>();
  for (const name of reached) {
    const base = name.endsWith('Input') ? name.slice(0, -'Input'.length) : null;
    if (base && !reached.has(base)) names.set(name, base);
  }
  const schemas = Object.fromEntries([...reached].sort().map((name) => [names.get(name) ?? name, renameRefs(all[name], names)]));
  return {
    ...doc,
    paths: renameRefs(doc.paths, names),
    components: { ...doc.components, schemas },
  } as ReturnType<typeof jsonSchemaTransformObject>;
};
