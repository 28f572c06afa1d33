import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixedClock } from '../src/kernel/clock.js';
import { storedEntriesOf } from '../src/mail/search-index.js';
import { testDialects } from './support/dialects.js';
import { seedMessages } from './support/inbound-seed.js';
import { seedMailbox } from './support/outbound-sink.js';
import { runCli } from './support/processes.js';
import { createTestApp, type TestApp } from './support/test-app.js';
import { eventRows, selectEventRows } from '../src/audit/event-rows.js';

const DAY = 86_400_000;
const START = '2020-01-01T00:00:00.000Z';

for (const dialect of testDialects()) {
  describe(`message retention (${dialect})`, () => {
    let t: TestApp;
    const clock = fixedClock(START);
    beforeAll(async () => {
      t = await createTestApp(dialect, { clock });
    }, 60_000);
    afterAll(async () => {
      await t?.close();
    });

    const row = (id: string) => t.c.store.db.selectFrom('messages').selectAll().where('id', '=', id).executeTakeFirstOrThrow();

    it('destroys content past retention, keeps metadata and hashes, honours every kind of legal hold, and the audit log still verifies', async () => {
      const a = await seedMailbox(t, 'autonomous');
      const b = await seedMailbox(t, 'autonomous');
      const [plain, fromHeldContact, inHeldThread, waiting] = await seedMessages(t, a.mailbox, [
        { from: 'pat.one@patients.example', subject: 'My biopsy results', text: 'Is it cancer?', createdAt: START },
        { from: 'held.patient@patients.example', subject: 'Records request', createdAt: START },
        {
          from: 'pat.three@patients.example',
          subject: 'In a thread under hold',
          createdAt: START,
          threadId: 'thr_0000000000000000000000000000abcd',
        },
        { from: 'pat.four@patients.example', subject: 'Still waiting for a reviewer', createdAt: START, status: 'pending_approval' },
      ]);
      const [inHeldMailbox] = await seedMessages(t, b.mailbox, [
        { from: 'pat.five@patients.example', subject: 'Held mailbox', createdAt: START },
      ]);
      const before = await row(plain!);

      // Holds: a contact (by address; kept as its hash), a thread, a mailbox. Agents and reviewers may not place them.
      const hold = (body: unknown, key = t.adminKey) => t.call('POST', '/v1/mail/legal-holds', key, body);
      expect((await hold({ scope: 'mailbox', mailbox_id: b.mailbox.id, matter: 'M-1' }, a.agentKey)).status).toBe(404);
      const contact = await hold({ scope: 'contact', address: 'Held.Patient@patients.example', matter: 'Case 2026-17' });
      expect(contact.status).toBe(201);
      expect(JSON.stringify(contact.body)).not.toContain('held.patient');
      const thread = await hold({ scope: 'thread', thread_id: 'thr_0000000000000000000000000000abcd', matter: 'Case 2026-18' });
      expect(thread.status).toBe(201);
      expect((await hold({ scope: 'mailbox', mailbox_id: b.mailbox.id, matter: 'Case 2026-19' })).status).toBe(201);
      expect((await hold({ scope: 'thread', thread_id: 'thr_ffffffffffffffffffffffffffffffff', matter: 'x' })).status).toBe(404);

      // Six years is the floor; only admins and privacy officers set it.
      expect((await t.call('PUT', '/v1/mail/retention', t.adminKey, { message_retention_days: 365 })).body.code).toBe(
        'retention_too_short',
      );
      expect((await t.call('PUT', '/v1/mail/retention', a.agentKey, { message_retention_days: 2500 })).status).toBe(404);
      expect((await t.call('GET', '/v1/mail/retention', t.adminKey)).body).toEqual({ message_retention_days: 2190, minimum_days: 2190 });

      // An hour short of six years: nothing goes.
      clock.set(new Date(Date.parse(START) + 2190 * DAY - 3_600_000));
      expect(await t.c.mail.retention.purge()).toMatchObject({ purged: 0 });

      clock.set(new Date(Date.parse(START) + 2190 * DAY + 3_600_000));
      expect(await t.c.mail.retention.purge({ dryRun: true })).toMatchObject({ dry_run: true, purged: 1, held: 3 });
      expect((await row(plain!)).content_purged_at).toBeNull();
      const searchRows = async (id: string) => (await storedEntriesOf(t.c.store.db, a.mailbox.id, id)).length;
      expect(await searchRows(plain!)).toBeGreaterThan(0);
      expect(await t.c.mail.retention.purge()).toMatchObject({ dry_run: false, purged: 1, held: 3 });
      // Its search entries go with its content.
      expect(await searchRows(plain!)).toBe(0);

      const after = await row(plain!);
      expect(after).toMatchObject({
        status: before.status,
        message_id: before.message_id,
        content_hash: before.content_hash,
        thread_id: before.thread_id,
        raw_sealed: null,
        content_purged_at: clock.now().toISOString(),
      });
      const view = await t.call('GET', `/v1/emails/${plain}`, a.agentKey);
      expect(view.status).toBe(200);
      expect(view.body).toMatchObject({
        id: plain,
        subject: '',
        text: null,
        from: '',
        to: [],
        content_purged_at: clock.now().toISOString(),
      });
      expect(JSON.stringify(view.body)).not.toContain('biopsy');
      expect(view.body.events.map((e: { type: string }) => e.type)).toContain('content_purged');
      for (const id of [fromHeldContact, inHeldThread, waiting, inHeldMailbox]) expect((await row(id!)).content_purged_at).toBeNull();
      await t.c.audit.sync();
      const purged = await eventRows(selectEventRows(t.c.store.db).where('e.action', '=', 'email.content_purged'));
      expect(purged.map((e) => [e.target_id, e.content_hash, e.actor_type])).toEqual([[plain, before.content_hash, 'system']]);
      expect((await t.c.auditLog.verify()).ok).toBe(true);

      // An organisation-wide audit legal hold stops the purge of everything; releasing holds lets it go on.
      const org = await t.call('POST', '/v1/audit/legal-holds', t.adminKey, { matter: 'Litigation 7' });
      expect(org.status).toBe(201);
      expect((await t.call('POST', `/v1/mail/legal-holds/${contact.body.id}/release`, t.adminKey)).status).toBe(200);
      expect((await t.call('POST', `/v1/mail/legal-holds/${contact.body.id}/release`, t.adminKey)).body.code).toBe('legal_hold_released');
      expect(await t.c.mail.retention.purge()).toMatchObject({ purged: 0, held: 3 });
      expect((await t.call('POST', `/v1/audit/legal-holds/${org.body.id}/release`, t.adminKey)).status).toBe(200);
      expect(await t.c.mail.retention.purge()).toMatchObject({ purged: 1, held: 2 });
      expect((await row(fromHeldContact!)).content_purged_at).not.toBeNull();
      // A message still waiting for a reviewer is never purged, whatever its age.
      expect((await row(waiting!)).content_purged_at).toBeNull();
      expect((await t.c.auditLog.verify()).ok).toBe(true);

      const holds = await t.call('GET', '/v1/mail/legal-holds', t.adminKey);
      expect(holds.body.legal_holds.map((h: { scope: string; released_at: string | null }) => [h.scope, h.released_at !== null])).toEqual([
        ['contact', true],
        ['thread', false],
        ['mailbox', false],
      ]);
    });

    it('runs as `mailward mail purge --dry-run --json` against the store', async () => {
      const r = await runCli(['mail', 'purge', '--dry-run', '--json'], t.env);
      expect(r.code, r.stderr).toBe(0);
      const out = JSON.parse(r.stdout);
      expect(out).toMatchObject({ dry_run: true });
      expect(out.organizations[0]).toMatchObject({ org_id: t.orgId });
      const help = await runCli(['mail', 'purge', '--help'], t.env);
      expect(help.stdout).toContain('--dry-run');
    });
  });
}
