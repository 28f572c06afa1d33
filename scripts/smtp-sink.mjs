#!/usr/bin/env node
/**
 * A loopback SMTP test relay for trying Mailward without sending real mail (the README walkthrough):
 *
 *   node scripts/smtp-sink.mjs --port 2526 --dir /tmp/relay
 *
 * Listens on 127.0.0.1 only, offers STARTTLS with a throwaway self-signed certificate for 127.0.0.1 and localhost
 * (written to <dir>/cert.pem before it listens: point MAILWARD_SMTP_TLS_CA_FILE at it, so Mailward keeps verifying
 * the relay's certificate), accepts every message, writes each to <dir>/<n>.eml and prints one line per message.
 * It relays nothing onward. Stop it with Ctrl-C.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { SMTPServer } from 'smtp-server';

const { values } = parseArgs({
  options: { port: { type: 'string', default: '2526' }, dir: { type: 'string', default: './test-relay' } },
});
const dir = path.resolve(values.dir);
fs.mkdirSync(dir, { recursive: true });

// openssl, as Mailward's own development certificate: a P-256 key, valid two days, for loopback names only.
const keyFile = path.join(dir, 'key.pem');
const certTmp = path.join(dir, 'cert.pem.tmp');
execFileSync(
  'openssl',
  [
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-keyout',
    keyFile,
    '-out',
    certTmp,
    '-days',
    '2',
  ].concat(['-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1']),
  { stdio: 'ignore' },
);

let n = 0;
const server = new SMTPServer({
  secure: false,
  key: fs.readFileSync(keyFile),
  cert: fs.readFileSync(certTmp),
  disabledCommands: ['AUTH'],
  logger: false,
  size: 50 * 1024 * 1024,
  onData(stream, session, callback) {
    const chunks = [];
    stream.on('data', (c) => chunks.push(c));
    stream.on('end', () => {
      const raw = Buffer.concat(chunks);
      const file = path.join(dir, `${String(++n).padStart(4, '0')}.eml`);
      fs.writeFileSync(file, raw);
      const to = session.envelope.rcptTo.map((r) => r.address).join(',');
      const from = session.envelope.mailFrom ? session.envelope.mailFrom.address : '';
      process.stdout.write(
        `test relay: received ${raw.length} bytes from=<${from}> to=<${to}> tls=${session.secure ? 'yes' : 'no'} -> ${file}\n`,
      );
      callback();
    });
  },
});
server.on('error', (e) => process.stderr.write(`test relay: ${e.message}\n`));
server.listen(Number(values.port), '127.0.0.1', () => {
  // The certificate appears only once the relay listens: waiting for the file is waiting for the relay.
  fs.renameSync(certTmp, path.join(dir, 'cert.pem'));
  process.stdout.write(`test relay: listening on 127.0.0.1:${values.port}, messages in ${dir}\n`);
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => server.close(() => process.exit(0)));
