import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStore, type Store } from '../src/store/db.js';
import { freshDatabase, testDialects } from './support/dialects.js';
import { freePort, startServer } from './support/processes.js';

type Answer = { status: number; body: any };

const api =
  (port: number) =>
  async (method: string, p: string, key: string, body?: unknown): Promise<Answer> => {
    const r = await fetch(`http://127.0.0.1:${port}${p}`, {
      method,
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: r.status, body: await r.json() };
  };

const APPROVALS = 100;

type Serve = { port: number; stop: () => Promise<void> };

/** `mailward serve` in its own OS process; a generous start deadline, as the machines running tests are shared. */
const serve = (env: Record<string, string>): Promise<Serve> => startServer(env, { readyMs: 120_000 });

for (const dialect of testDialects()) {
  describe(`one decision per approval across two server processes (${dialect})`, () => {
    let db: Awaited<ReturnType<typeof freshDatabase>>;
    let a: Serve;
    let b: Serve;
    let store: Store;

    beforeAll(async () => {
      db = await freshDatabase(dialect);
      // Delivery goes to a closed port: approved mail is queued and deferred, never sent anywhere.
      const env = {
        ...db.env,
        MAILWARD_LOG_LEVEL: 'warn',
        MAILWARD_SMTP_RELAY: `smtp://127.0.0.1:${await freePort()}`,
        MAILWARD_DELIVERY_RETRY_SCHEDULE: '3600',
      };
      // The first process initialises the store; the second shares it (one PostgreSQL database, or one SQLite file).
      a = await serve(env);
      b = await serve(env);
      store = openStore(
        db.url
          ? { kind: 'postgres', url: db.url, poolSize: 2 }
          : { kind: 'sqlite', file: path.join(db.dataDir, 'mailward.db'), checkpointEveryMs: 0 },
      );
    }, 300_000);
    afterAll(async () => {
      await store?.destroy();
      await a?.stop();
      await b?.stop();
      await db?.drop();
    });

    it('answers 200 to exactly one of three deciders (approve, reject, approve) racing on two processes over 100 approvals, 409 to the others, and audits one decision and two denials each', async () => {
      const onA = api(a.port);
      const onB = api(b.port);
      const admin = fs.readFileSync(path.join(db.dataDir, 'bootstrap-admin.key'), 'utf8').trim();
      const dep = await onA('POST', '/v1/departments', admin, { name: 'Cardiology' });
      const reviewers: string[] = [];
      for (const name of ['Dr. Rivera', 'Dr. Chen', 'Dr. Okafor']) {
        const h = await onA('POST', '/v1/humans', admin, {
          name,
          email: `${name.slice(4).toLowerCase()}@hospital.example`,
          roles: ['reviewer'],
        });
        reviewers.push((await onA('POST', `/v1/humans/${h.body.id}/api-keys`, admin, {})).body.key);
      }
      const agent = await onA('POST', '/v1/agents', admin, {
        name: 'Reminder Bot',
        department_id: dep.body.id,
        responsible_human_id: (await onA('GET', '/v1/me', reviewers[0]!)).body.principal.id,
      });
      const agentKey = (await onA('POST', `/v1/agents/${agent.body.id}/api-keys`, admin, {})).body.key;
      const mbx = await onA('POST', '/v1/mailboxes', admin, {
        agent_id: agent.body.id,
        display_name: 'Reminders',
        oversight_mode: 'gated_send',
      });
      expect(mbx.status).toBe(201);
      const emails: string[] = [];
      for (let i = 0; i < APPROVALS; i++) {
        const r = await onA('POST', `/v1/mailboxes/${mbx.body.id}/send`, agentKey, {
          to: [`patient${i}@clinic.example`],
          subject: `Reminder ${i}`,
          text: `Appointment ${i}`,
        });
        expect(r.body.status).toBe('pending_approval');
        emails.push(r.body.id);
      }
      const pending = (
        await store.db
          .selectFrom('approvals')
          .select(['id', 'message_id as email_id'])
          .where('status', '=', 'pending')
          .orderBy('id')
          .execute()
      ).map((r) => ({ id: r.id, email_id: r.email_id }));
      expect(pending.map((p) => p.email_id).sort()).toEqual([...emails].sort());

      // Three deciders at once per approval: approve on one process, reject on the other, approve again on the
      // first (another reviewer); which process approves alternates.
      const outcomes = new Map<string, { approves: Answer[]; reject: Answer }>();
      for (let i = 0; i < pending.length; i += 6) {
        await Promise.all(
          pending.slice(i, i + 6).map(async (p, j) => {
            const [approveOn, rejectOn] = (i + j) % 2 === 0 ? [onA, onB] : [onB, onA];
            const [first, reject, second] = await Promise.all([
              approveOn('POST', `/v1/approvals/${p.id}/approve`, reviewers[0]!, { comment: 'Fine.' }),
              rejectOn('POST', `/v1/approvals/${p.id}/reject`, reviewers[1]!, { comment: 'Not this one.' }),
              approveOn('POST', `/v1/approvals/${p.id}/approve`, reviewers[2]!, { comment: 'Fine too.' }),
            ]);
            outcomes.set(p.id, { approves: [first!, second!], reject: reject! });
          }),
        );
      }

      const successes = [
        ...(await onA('GET', '/v1/audit/events?action=email.approved&limit=500', admin)).body.events,
        ...(await onA('GET', '/v1/audit/events?action=email.rejected&limit=500', admin)).body.events,
      ];
      for (const p of pending) {
        const { approves, reject } = outcomes.get(p.id)!;
        const answers = [...approves, reject];
        expect(answers.map((a) => a.status).sort()).toEqual([200, 409, 409]);
        for (const loser of answers.filter((a) => a.status === 409)) expect(loser.body.code).toBe('approval_decided');
        const approved = approves.some((a) => a.status === 200);

        const decisions = successes.filter((e) => e.outcome === 'success' && e.details.approval_id === p.id);
        expect(decisions.map((e) => e.action)).toEqual([approved ? 'email.approved' : 'email.rejected']);
        const denials = successes.filter((e) => e.outcome === 'denied' && e.target?.id === p.id);
        expect(denials.map((e) => [e.action, e.details.code]).sort()).toEqual(
          (approved
            ? [
                ['email.approved', 'approval_decided'],
                ['email.rejected', 'approval_decided'],
              ]
            : [
                ['email.approved', 'approval_decided'],
                ['email.approved', 'approval_decided'],
              ]
          ).sort(),
        );

        const apr = await store.db.selectFrom('approvals').selectAll().where('id', '=', p.id).executeTakeFirstOrThrow();
        expect(apr.status).toBe(approved ? 'approved' : 'rejected');
        const msg = await store.db.selectFrom('messages').select(['status']).where('id', '=', p.email_id).executeTakeFirstOrThrow();
        const jobs = await store.db.selectFrom('outbox').select('id').where('message_id', '=', p.email_id).execute();
        if (approved) {
          expect(msg.status).not.toBe('rejected');
          expect(jobs.length).toBe(1);
        } else {
          expect(msg.status).toBe('rejected');
          expect(jobs).toHaveLength(0);
        }
      }
    }, 300_000);
  });
}
