import { z } from 'zod';

/**
 * The named component schemas of the OpenAPI document (`#/components/schemas/<id>`). A registry of its own, not
 * zod's global one: a schema with an `id` in the global registry is emitted as a `$ref` by every zod-to-JSON-Schema
 * conversion, the MCP tools' output schemas included, which MCP clients then cannot resolve.
 *
 * fastify-type-provider-zod reads a schema's metadata (descriptions, examples) from the registry it is given, so
 * this one falls back to the global registry, where `.describe()` and `.meta()` put them; its ids are its own.
 */
type Meta = { id: string };
export const openApi = z.registry<Meta>();

const global = z.globalRegistry as unknown as { _map: WeakMap<object, Record<string, unknown>> };
class WithGlobalFallback extends WeakMap<object, Record<string, unknown>> {
  override get(k: object) {
    return super.get(k) ?? global._map.get(k);
  }
  override has(k: object) {
    return super.has(k) || global._map.has(k);
  }
}
(openApi as unknown as { _map: WeakMap<object, Record<string, unknown>> })._map = new WithGlobalFallback();
const add = openApi.add.bind(openApi);
// A schema registered here keeps its own description: its global metadata, then the id.
openApi.add = ((schema: z.ZodType, meta: Meta) => add(schema, { ...z.globalRegistry.get(schema), ...meta } as Meta)) as typeof openApi.add;
