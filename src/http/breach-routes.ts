import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { breachCreateIn, breachIdSchema, breachNoticeIn, breachRiskIn, breachScopeIn } from '../compliance/breach-schemas.js';
import type { BreachService } from '../compliance/breach-service.js';
import { problems, secured } from './common-schemas.js';
import { openApi } from './openapi-registry.js';

const idParams = z.strictObject({ id: breachIdSchema });
const scopeIn = breachScopeIn.register(openApi, { id: 'BreachScope' });
const riskIn = breachRiskIn.register(openApi, { id: 'BreachRiskAssessment' });
const noticeIn = breachNoticeIn.register(openApi, { id: 'BreachNotice' });

const incidentOut = z
  .object({
    id: z.string(),
    title: z.string(),
    description: z.string(),
    discovered_at: z.string(),
    deadline_at: z.string().describe('discovery + 60 days (164.404(b))'),
    state: z.string().nullable(),
    status: z.string(),
    scope: z.record(z.string(), z.unknown()).nullable(),
    risk_assessment: z.record(z.string(), z.unknown()).nullable(),
    notice: z.record(z.string(), z.unknown()).nullable(),
    created_by: z.string(),
    created_at: z.string(),
    individuals: z.number().int().optional(),
    email_allowed: z.number().int().optional(),
    notified: z.number().int().optional(),
  })
  .register(openApi, { id: 'BreachIncident' });

const hhsOut = z
  .object({
    incident_id: z.string(),
    title: z.string(),
    discovered_at: z.string(),
    individuals: z.number().int(),
    state: z.string().nullable(),
    over_500: z.boolean(),
    report_to_hhs_by: z.string(),
  })
  .register(openApi, { id: 'BreachHhsFigures' });

const tags = ['breaches'];

/** The breach workbench (45 CFR 164.400-414): privacy officers and admins; everyone else gets 404 on every route. */
export const breachRoutes =
  ({ breaches }: { breaches: BreachService }) =>
  async (root: FastifyInstance) => {
    const app = root.withTypeProvider<ZodTypeProvider>();
    app.post(
      '/v1/breaches',
      {
        schema: {
          operationId: 'createBreach',
          tags,
          security: secured,
          summary: 'Open a breach incident with its discovery time (the 60-day notice clock starts there)',
          body: breachCreateIn,
          response: { 201: incidentOut, ...problems(400, 401, 404) },
        },
      },
      async (req, reply) => reply.code(201).send(await breaches.create(req.ctx, req.body)),
    );
    app.get(
      '/v1/breaches',
      {
        schema: {
          operationId: 'listBreaches',
          tags,
          security: secured,
          summary: 'Breach incidents of your organisation, newest discovery first',
          response: { 200: z.object({ breaches: z.array(incidentOut) }), ...problems(401, 404) },
        },
      },
      async (req) => ({ breaches: await breaches.list(req.ctx) }),
    );
    app.get(
      '/v1/breaches/hhs-log',
      {
        schema: {
          operationId: 'getBreachHhsLog',
          tags,
          security: secured,
          summary: 'The yearly log of breaches under 500 individuals for HHS (164.408(c))',
          querystring: z.strictObject({ year: z.coerce.number().int().min(2000).max(9999) }),
          response: { 200: z.object({ year: z.number().int(), breaches: z.array(hhsOut) }), ...problems(400, 401, 404) },
        },
      },
      (req) => breaches.hhsLog(req.ctx, req.query.year),
    );
    app.get(
      '/v1/breaches/:id',
      {
        schema: {
          operationId: 'getBreach',
          tags,
          security: secured,
          summary: 'One breach incident with its counts',
          params: idParams,
          response: { 200: incidentOut, ...problems(400, 401, 404) },
        },
      },
      (req) => breaches.get(req.ctx, req.params.id),
    );
    app.put(
      '/v1/breaches/:id/scope',
      {
        schema: {
          operationId: 'setBreachScope',
          tags,
          security: secured,
          summary: 'Scope the incident; Mailward derives the affected individuals and PHI types (all filters must match)',
          params: idParams,
          body: scopeIn,
          response: {
            200: z.object({
              messages: z.number().int(),
              purged_messages: z.number().int(),
              individuals: z.number().int(),
              email_allowed: z.number().int(),
              phi_types: z.array(z.string()),
            }),
            ...problems(400, 401, 404, 409),
          },
        },
      },
      (req) => breaches.setScope(req.ctx, req.params.id, req.body),
    );
    app.put(
      '/v1/breaches/:id/risk-assessment',
      {
        schema: {
          operationId: 'setBreachRiskAssessment',
          tags,
          security: secured,
          summary: 'Record the four-factor risk assessment (164.402(2))',
          params: idParams,
          body: riskIn,
          response: { 200: z.record(z.string(), z.unknown()), ...problems(400, 401, 404) },
        },
      },
      (req) => breaches.setRisk(req.ctx, req.params.id, req.body),
    );
    app.get(
      '/v1/breaches/:id/individuals',
      {
        schema: {
          operationId: 'listBreachIndividuals',
          tags,
          security: secured,
          summary: 'Affected individuals with address, PHI types, notice route (email or postal) and delivery proof; audited',
          params: idParams,
          response: {
            200: z.object({
              individuals: z.array(
                z.object({
                  contact_hash: z.string(),
                  address: z.string(),
                  phi_types: z.array(z.string()),
                  message_ids: z.array(z.string()),
                  notice_by: z.enum(['email', 'postal']),
                  notice_email_id: z.string().nullable(),
                  notified_at: z.string().nullable(),
                  delivery: z
                    .object({
                      status: z.string().nullable(),
                      delivered_at: z.string().nullable(),
                      accepted: z.record(z.string(), z.unknown()).nullable().describe("the relay's or MX's reply and its time"),
                    })
                    .nullable(),
                }),
              ),
            }),
            ...problems(400, 401, 404),
          },
        },
      },
      async (req) => ({ individuals: await breaches.individuals(req.ctx, req.params.id) }),
    );
    app.post(
      '/v1/breaches/:id/notices',
      {
        schema: {
          operationId: 'sendBreachNotices',
          tags,
          security: secured,
          summary: 'Email the 164.404(c) notice to individuals whose consent allows email; the rest are listed for postal mail',
          params: idParams,
          body: noticeIn,
          response: {
            200: z.object({
              emailed: z.array(z.object({ contact_hash: z.string(), email_id: z.string() })),
              postal: z.array(z.string()).describe('contact hashes of individuals to notify by first-class mail (164.404(d)(1))'),
              failed: z
                .array(z.object({ contact_hash: z.string(), code: z.string() }))
                .describe('notices the send path refused; retry after fixing'),
            }),
            ...problems(400, 401, 404, 409),
          },
        },
      },
      (req) => breaches.sendNotices(req.ctx, req.params.id, req.body),
    );
    app.get(
      '/v1/breaches/:id/hhs',
      {
        schema: {
          operationId: 'getBreachHhsFigures',
          tags,
          security: secured,
          summary: 'The HHS figures of one incident: count, state, 500+ flag, report-by date (164.408)',
          params: idParams,
          response: { 200: hhsOut, ...problems(400, 401, 404) },
        },
      },
      (req) => breaches.hhs(req.ctx, req.params.id),
    );
  };
