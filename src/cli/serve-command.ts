import fs from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { createContainer } from '../app/container.js';
import { writeSecretFileExclusive } from '../app/master-key.js';
import { buildServer } from '../app/http-server.js';
import { createSmtpListener } from '../smtp/smtp-listener.js';
import { loadSmtpTls } from '../smtp/tls-cert.js';
import type { Logger } from '../kernel/log.js';
import { configOrExit, runCommand } from './cli-support.js';
import { unknownEnvVars } from '../app/config.js';
import { ensurePostmasters } from '../app/init.js';
import { SWEEPS_ROLE, whileLeading } from '../store/notify.js';

export const bootstrapKeyPath = (dataDir: string) => path.join(dataDir, 'bootstrap-admin.key');

/**
 * The first admin key lies in plain text in the data dir until the operator
 * takes it away: a standing credential on disk (45 CFR 164.312(a)(1), 164.308(a)(5)(ii)(D)
 * password management). Every start says so, naming the file, until it is gone.
 */
export const warnIfBootstrapKeyRemains = (dataDir: string, logger: Pick<Logger, 'warn'>) => {
  const file = bootstrapKeyPath(dataDir);
  if (!fs.existsSync(file)) return false;
  logger.warn(
    { path: file },
    `the first admin API key is still on disk at ${file}: keep the key in a password manager (or create another admin key and revoke this one), then delete the file (rm ${file})`,
  );
  return true;
};

export const registerServe = (program: Command) =>
  program
    .command('serve')
    .description(
      'Run the REST API (MAILWARD_HTTP_PORT), inbound SMTP (MAILWARD_SMTP_PORT), the outbound delivery worker and the audit checkpoint scheduler',
    )
    .action(
      runCommand(async () => {
        const config = configOrExit();
        // Inbound SMTP: STARTTLS with the configured certificate, or the development one generated into
        // the data dir; checked before anything is initialised, so a missing openssl stops a first start cleanly.
        const tls = loadSmtpTls(config);
        const c = await createContainer(config, { createMasterKey: true });
        const boot = await c.init({ orgName: config.bootstrap.orgName, domain: config.bootstrap.domain }, { onlyIfEmpty: true });
        if (boot) {
          const file = bootstrapKeyPath(config.dataDir);
          writeSecretFileExclusive(file, `${boot.admin_api_key}\n`);
          // CONTRACT.md: print only the path, never the key.
          process.stderr.write(`mailward: initialised ${boot.domain}; first admin API key written to ${file}\n`);
          // Signed and published at once (src/audit/checkpoint-publisher.ts), like `mailward init` does.
          await c.auditLog.checkpoints.current();
        }
        // RFC 5321 4.5.1: organisations from before the postmaster mailboxes get them now.
        for (const domain of await ensurePostmasters({ db: c.store.db, clock: c.clock, audit: c.audit }))
          c.logger.info({ domain }, 'created the Postmaster agent and its postmaster and DMARC report mailboxes');
        warnIfBootstrapKeyRemains(config.dataDir, c.logger);
        // A misspelt setting leaves its default in force without a word: say so (names only, never values).
        for (const u of unknownEnvVars())
          c.logger.warn(
            { variable: u.name, did_you_mean: u.suggestion },
            // No `?` in the text: the log scrubber reads one as the start of a query string.
            `unknown environment variable ${u.name} is ignored${u.suggestion ? `; the closest known name is ${u.suggestion}` : ''}`,
          );
        const app = await buildServer(c);
        const url = await app.listen({ host: config.http.host, port: config.http.port });
        const smtp = createSmtpListener({ receiver: c.inbound.receiver, config, tls, logger: c.logger, metrics: c.metrics.sink });
        let smtpPort: number;
        try {
          smtpPort = await smtp.listen();
        } catch (e) {
          // E.g. the port is taken: stop what started, so the process exits with the error.
          await app.close();
          await c.close();
          throw e;
        }
        // Outbound delivery runs in this process; c.close() stops it. Several processes may share one store.
        c.mail.delivery.start();
        // Webhook fan-out and delivery run here too (src/webhooks/webhook-worker.ts); c.close() stops them.
        c.webhooks.worker.start();
        // Admins are mailed when an endpoint is disabled after sustained failure.
        const stopWebhookNotices = c.startWebhookDisabledNotices();
        c.logger.info(
          {
            http: url,
            smtp: `${config.smtp.host}:${smtpPort}`,
            smtp_tls: tls.generated ? 'generated development certificate' : tls.certFile,
            store: c.store.describe,
          },
          'mailward listening',
        );
        // The periodic sweeps run in one of the processes sharing the store, the sweeps leader (store/notify.ts
        // SWEEPS_ROLE; on SQLite every process leads): the others run none of their statements while idle, and
        // take over at once when the leader's session ends.
        const stopSweeps = whileLeading(c.store.lead, SWEEPS_ROLE, () => {
          const stops = [
            // Approvals expire as they come due (src/oversight/approvals-service.ts).
            c.mail.approvals.startExpirySweeper({ logger: c.logger }),
            // Signed audit checkpoints every N events or T seconds (src/audit/checkpoint-service.ts).
            c.auditLog.checkpoints.startScheduler({ logger: c.logger }),
            // Sealed versions of deleted or superseded vault secrets are destroyed after retention (src/vault/vault-service.ts).
            c.vault.startPurgeScheduler({ logger: c.logger }),
            // Message content past its organisation's retention is destroyed daily, never under a legal hold (src/mail/mail-retention.ts).
            c.mail.retention.startPurgeScheduler({ logger: c.logger }),
            // Messages stored before the blind search index are indexed in the background (src/mail/search-index.ts).
            c.mail.searchBackfill.start({ logger: c.logger }),
            // New messages' search entries are folded into compact segments every few seconds (src/mail/search-index.ts).
            c.mail.searchCompactor.start({ logger: c.logger }),
            // Reviewers are told when something waits, in count-only digests (src/oversight/review-notifications.ts).
            c.reviewNotifications.startScheduler({ logger: c.logger }),
            // Privacy officers are reminded 30, 14, 7 and 1 days before a breach's notice deadline (src/compliance/breach-service.ts).
            c.breaches.startReminderScheduler({ logger: c.logger }),
          ];
          return () => {
            for (const stop of stops) stop();
          };
        });
        await new Promise<void>((resolve) => {
          const stop = async (signal: string) => {
            c.logger.info({ signal }, 'shutting down');
            stopSweeps();
            stopWebhookNotices();
            await smtp.close();
            await app.close();
            await c.close();
            resolve();
          };
          process.once('SIGINT', () => void stop('SIGINT'));
          process.once('SIGTERM', () => void stop('SIGTERM'));
        });
        return 0;
      }),
    );
