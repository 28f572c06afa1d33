import type { Kysely } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and must not depend on today's schema types
type AnyDb = Kysely<any>;

/**
 * `messages.granted_by`: `{id, name, client_id, grant_id}` (JSON) of the human whose OAuth consent let an MCP client
 * send this message as the agent; delivery puts that human in the identity header's delegation chain and `act`.
 */
export const up = async (db: AnyDb): Promise<void> => {
  await db.schema.alterTable('messages').addColumn('granted_by', 'text').execute();
};
