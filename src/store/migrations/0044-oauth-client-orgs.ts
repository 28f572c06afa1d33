import type { Kysely } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and must not depend on today's schema types
type AnyDb = Kysely<any>;

/**
 * `oauth_client_orgs`: the organisations an OAuth client has been let into, one row per (organisation, client), written
 * when a human of the organisation first consents to the client (oauth/oauth-consent.ts). A client registers
 * anonymously (RFC 7591, or a client ID metadata document) and so belongs to no organisation; this row is where it
 * enters one, and its insert is what records the organisation's `oauth.client.granted` event exactly once.
 */
export const up = async (db: AnyDb): Promise<void> => {
  await db.schema
    .createTable('oauth_client_orgs')
    .addColumn('org_id', 'text', (c) => c.notNull())
    .addColumn('client_id', 'text', (c) => c.notNull())
    .addColumn('first_granted_at', 'text', (c) => c.notNull())
    .addColumn('first_granted_by', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('oauth_client_orgs_pk', ['org_id', 'client_id'])
    .execute();
};
