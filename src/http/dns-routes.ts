import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { DnsRecordsService } from '../mail/dns-records.js';
import { problems, secured } from './common-schemas.js';
import { openApi } from './openapi-registry.js';

const dnsRecordsOut = z
  .object({
    domain: z.string(),
    dns_records: z.array(
      z.object({
        type: z.literal('TXT'),
        name: z.string(),
        value: z.string(),
        zone_value: z.string().describe('value as a zone file holds it: strings of at most 255 characters (RFC 1035 3.3.14)'),
        purpose: z.string(),
      }),
    ),
  })
  .register(openApi, { id: 'DnsRecords' });

/**
 * GET /v1/dns-records (admin): the DKIM (ed25519 + rsa), SPF and DMARC TXT
 * records of the caller's organization, the same as `mailward dns`. Public
 * keys and policies only: nothing secret, so no audit event.
 */
export const dnsRoutes =
  ({ dns }: { dns: Pick<DnsRecordsService, 'forCaller'> }) =>
  async (root: FastifyInstance) => {
    const app = root.withTypeProvider<ZodTypeProvider>();
    app.get(
      '/v1/dns-records',
      {
        schema: {
          operationId: 'listDnsRecords',
          tags: ['mail'],
          security: secured,
          summary: 'DNS TXT records to publish for DKIM, SPF and DMARC (admin; same as `mailward dns`)',
          response: { 200: dnsRecordsOut, ...problems(401, 403, 404) },
        },
      },
      (req) => dns.forCaller(req.ctx),
    );
  };
