import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { ComplianceReport } from '../compliance/compliance-report.js';
import { problems, secured } from './common-schemas.js';
import { openApi } from './openapi-registry.js';

const hex32 = z.string().regex(/^[0-9a-f]{64}$/);
const days = z.number().int().nullable();

const reportOut = z
  .object({
    format: z.literal('mailward-compliance-report/1'),
    generated_at: z.string(),
    scope: z.object({ org_id: z.string().nullable().describe('the organisation the report covers; null for the whole store (CLI)') }),
    encryption_at_rest: z.object({
      algorithm: z.string(),
      key_encryption_keys: z.array(
        z.object({
          version: z.string(),
          fingerprint: z.string(),
          created_at: z.string(),
          age_days: days,
          retired_at: z.string().nullable(),
        }),
      ),
      sealed_values_by_version: z
        .array(z.object({ version: z.string(), label: z.string(), count: z.number().int() }))
        .nullable()
        .describe('store-wide counts: only in the CLI report'),
      signing_keys: z.array(
        z.object({
          purpose: z.string(),
          kid: z.string(),
          org_id: z.string().nullable(),
          created_at: z.string(),
          age_days: days,
          retired: z.boolean(),
        }),
      ),
      recipient_index_keys: z.array(z.object({ org_id: z.string(), version: z.number().int(), age_days: days, retired: z.boolean() })),
    }),
    organizations: z.array(
      z.object({
        org_id: z.string(),
        mfa: z.object({
          active_humans: z.number().int(),
          with_second_factor: z.number().int(),
          totp: z.number().int(),
          passkey: z.number().int(),
          sso_linked: z.number().int(),
          coverage: z.number().nullable(),
        }),
        retention: z.object({ message_retention_days: z.number().int() }),
        legal_holds: z.object({ audit: z.number().int(), mail: z.number().int() }),
      }),
    ),
    audit: z.object({
      last_verification: z.object({ at: z.string(), outcome: z.string(), seq: z.number().int(), details: z.unknown() }).nullable(),
      last_checkpoint: z.object({ tree_size: z.number().int(), root_hash: z.string(), at: z.string(), key_id: z.string() }).nullable(),
    }),
    backup: z.object({ last_at: z.string(), age_days: days, outcome: z.string() }).nullable(),
  })
  .register(openApi, { id: 'ComplianceReport' });

const signatureOut = z
  .object({
    report_sha256: hex32,
    how: z.string(),
    seq: z.number().int().describe('the compliance.reported audit event'),
    event_hash: hex32,
    leaf_hash: hex32,
    audit_path: z.array(hex32),
    checkpoint: z.record(z.string(), z.unknown()).describe('the signed checkpoint (GET /v1/audit/checkpoint) the proof leads to'),
  })
  .register(openApi, { id: 'ComplianceReportSignature' });

/** The evidence pack for auditors (45 CFR 164.308(a)(8), 164.312): privacy officers and admins; everyone else gets 404. */
export const complianceRoutes =
  ({ complianceReport }: { complianceReport: ComplianceReport }) =>
  async (root: FastifyInstance) => {
    const app = root.withTypeProvider<ZodTypeProvider>();
    app.get(
      '/v1/compliance/report',
      {
        schema: {
          operationId: 'getComplianceReport',
          tags: ['compliance'],
          security: secured,
          summary:
            "Your organisation's evidence pack (privacy_officer, admin): key ages, MFA coverage, last audit verification and checkpoint, retention and legal holds, last backup; signed through an audit event and its RFC 6962 proof",
          response: {
            200: z.object({ report: reportOut, signature: signatureOut }).register(openApi, { id: 'SignedComplianceReport' }),
            ...problems(401, 404),
          },
        },
      },
      (req) => complianceReport.generateFor(req.ctx),
    );
  };
