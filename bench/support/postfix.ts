/**
 * Peers for the mail benches: a private Postfix instance (its own config and
 * queue under a temp dir, `postfix -c DIR start`, loopback ports only, never
 * 25) and an OpenDKIM milter (`opendkim -f -x conf`), both from Debian
 * (`apt-get install postfix opendkim opendkim-tools`). The benches skip these
 * rows with a message when they are not installed: CI does not need them.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort } from './bench-kit.js';

const POSTFIX = '/usr/sbin/postfix';
const OPENDKIM = '/usr/sbin/opendkim';
export const SMTP_SOURCE = '/usr/sbin/smtp-source';

/** Why the peers cannot run here, or undefined when they can (Linux, root, Postfix and OpenDKIM installed; not MAILWARD_BENCH_PEERS=0). */
export const peersMissing = (): string | undefined => {
  if (process.env.MAILWARD_BENCH_PEERS === '0') return 'MAILWARD_BENCH_PEERS=0';
  if (process.platform !== 'linux') return 'peers need Linux (/proc for their CPU)';
  if (process.getuid?.() !== 0) return 'peers need root (a private Postfix instance runs its daemons as user postfix)';
  for (const f of [POSTFIX, OPENDKIM, SMTP_SOURCE])
    if (!fs.existsSync(f)) return `${f} is not installed (apt-get install postfix opendkim opendkim-tools)`;
  // Postfix's daemons run as user postfix: they must pass through the temp dir to reach their queue under it.
  if ((fs.statSync(os.tmpdir()).mode & 0o001) === 0)
    return `${os.tmpdir()} is not searchable by other users, so Postfix's daemons cannot reach their queue under it (set TMPDIR=/var/tmp)`;
  return undefined;
};

/** CPU ms (user + system) of a process and all its descendants, the exited ones that were reaped included (cutime/cstime). */
export const treeCpuMs = (rootPid: number): number => {
  const stats = new Map<number, { ppid: number; ticks: number }>();
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const f = fs.readFileSync(`/proc/${e}/stat`, 'utf8').split(') ')[1]!.split(' ');
      // Fields after the name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14).
      stats.set(Number(e), { ppid: Number(f[1]), ticks: Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]) });
    } catch {
      /* exited meanwhile: its time is now in its parent's cutime */
    }
  }
  let ticks = 0;
  const inTree = (pid: number): boolean => {
    for (let p = pid, hops = 0; p > 1 && hops < 64; hops++) {
      if (p === rootPid) return true;
      p = stats.get(p)?.ppid ?? 0;
    }
    return false;
  };
  for (const [pid, s] of stats) if (inTree(pid)) ticks += s.ticks;
  return (ticks * 1000) / 100; // USER_HZ is 100 on Linux
};

export type Milter = { port: number; pid: number; stop: () => Promise<void> };

/** An OpenDKIM milter on a loopback port: `mode: 's'` signs (RSA-2048, relaxed/relaxed), `'v'` verifies against `testKeys`. */
export const startOpenDkim = async (
  dir: string,
  opts: { mode: 's'; domain: string; selector: string; keyPem: string } | { mode: 'v'; testKeys: Record<string, string> },
): Promise<Milter> => {
  fs.mkdirSync(dir, { recursive: true });
  const port = await freePort();
  const lines = [
    'Syslog no',
    `Socket inet:${port}@127.0.0.1`,
    `Mode ${opts.mode}`,
    'Canonicalization relaxed/relaxed',
    'RequireSafeKeys no',
    `PidFile ${path.join(dir, 'opendkim.pid')}`,
  ];
  if (opts.mode === 's') {
    const keyFile = path.join(dir, 'dkim.key');
    fs.writeFileSync(keyFile, opts.keyPem, { mode: 0o600 });
    lines.push(`Domain ${opts.domain}`, `Selector ${opts.selector}`, `KeyFile ${keyFile}`, 'SignatureAlgorithm rsa-sha256');
  } else {
    // OpenDKIM's own test hook: public keys from a file instead of DNS (the Mailward side reads them from
    // MAILWARD_DNS_OVERRIDES, also without a DNS round trip).
    const keys = path.join(dir, 'test-keys');
    fs.writeFileSync(
      keys,
      `${Object.entries(opts.testKeys)
        .map(([n, v]) => `${n} ${v}`)
        .join('\n')}\n`,
    );
    lines.push(`TestPublicKeys ${keys}`, 'AlwaysAddARHeader yes');
  }
  const conf = path.join(dir, 'opendkim.conf');
  fs.writeFileSync(conf, `${lines.join('\n')}\n`);
  const child: ChildProcess = spawn(OPENDKIM, ['-f', '-x', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr?.on('data', (d) => {
    err += d;
  });
  await waitListening(port, () => (child.exitCode !== null ? `opendkim exited: ${err}` : undefined));
  return {
    port,
    pid: child.pid!,
    stop: () =>
      new Promise<void>((r) => {
        if (child.exitCode !== null) return r();
        child.once('exit', () => r());
        child.kill('SIGTERM');
      }),
  };
};

export type Postfix = { port: number; dir: string; masterPid: () => number; stop: () => void };

/**
 * A private Postfix instance in `dir` listening on a free loopback port, with the milter on `milterPort` (if any).
 * `relay`: deliver everything to that loopback port (STARTTLS required, as Mailward's relay);
 * `maildir`: accept mail for `domain` and deliver each message to a Maildir under `dir/mail` (virtual(8)).
 */
export const startPostfix = async (
  dir: string,
  opts: { milterPort?: number; tls?: { keyFile: string; certFile: string } } & ({ relayPort: number } | { maildirDomain: string }),
): Promise<Postfix> => {
  fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
  // The daemons run as user postfix and nobody: they must reach their queue, data and Maildir under the temp dir.
  for (let d = dir; d.startsWith(`${os.tmpdir()}${path.sep}`); d = path.dirname(d)) fs.chmodSync(d, 0o755);
  const port = await freePort();
  const queue = path.join(dir, 'queue');
  const data = path.join(dir, 'data');
  fs.mkdirSync(queue, { recursive: true, mode: 0o755 });
  fs.mkdirSync(data, { recursive: true, mode: 0o700 });
  execFileSync('chown', ['postfix:postfix', data]);
  const main: Record<string, string> = {
    compatibility_level: '3.6',
    queue_directory: queue,
    data_directory: data,
    maillog_file: path.join(dir, 'maillog'),
    maillog_file_prefixes: dir,
    myhostname: 'mx.peer.example',
    mydomain: 'peer.example',
    inet_interfaces: '127.0.0.1',
    inet_protocols: 'ipv4',
    mydestination: '',
    mynetworks: '127.0.0.0/8',
    smtpd_relay_restrictions: 'permit_mynetworks, reject',
    alias_maps: '',
    alias_database: '',
    local_recipient_maps: '',
    biff: 'no',
    smtpd_milters: opts.milterPort ? `inet:127.0.0.1:${opts.milterPort}` : '',
    non_smtpd_milters: '',
    milter_default_action: 'tempfail',
    smtp_dns_support_level: 'disabled',
    smtpd_peername_lookup: 'no',
    // Enough smtpd and smtp processes for the benches' connections, nothing throttled.
    default_process_limit: '200',
    smtpd_client_connection_count_limit: '0',
    smtpd_client_connection_rate_limit: '0',
    smtpd_client_message_rate_limit: '0',
    in_flow_delay: '0s',
  };
  if (opts.tls) {
    main.smtpd_tls_cert_file = opts.tls.certFile;
    main.smtpd_tls_key_file = opts.tls.keyFile;
    main.smtpd_tls_security_level = 'may';
  }
  if ('relayPort' in opts) {
    main.relayhost = `[127.0.0.1]:${opts.relayPort}`;
    main.smtp_tls_security_level = 'encrypt';
    main.default_destination_concurrency_limit = '32';
    main.smtp_destination_concurrency_limit = '32';
    main.relay_destination_concurrency_limit = '32';
  } else {
    const mail = path.join(dir, 'mail');
    fs.mkdirSync(mail, { recursive: true });
    execFileSync('chown', ['65534:65534', mail]);
    main.virtual_mailbox_domains = opts.maildirDomain;
    main.virtual_mailbox_base = mail;
    main.virtual_mailbox_maps = 'static:maildir/';
    main.virtual_uid_maps = 'static:65534';
    main.virtual_gid_maps = 'static:65534';
    main.virtual_destination_concurrency_limit = '32';
  }
  fs.writeFileSync(
    path.join(dir, 'main.cf'),
    `${Object.entries(main)
      .map(([k, v]) => `${k} = ${v}`)
      .join('\n')}\n`,
  );
  // No chroot (the columns: service type private unpriv chroot wakeup maxproc command).
  const master = [
    `127.0.0.1:${port} inet n - n - - smtpd`,
    'pickup unix n - n 60 1 pickup',
    'cleanup unix n - n - 0 cleanup',
    'qmgr unix n - n 300 1 qmgr',
    'tlsmgr unix - - n 1000? 1 tlsmgr',
    'rewrite unix - - n - - trivial-rewrite',
    'bounce unix - - n - 0 bounce',
    'defer unix - - n - 0 bounce',
    'trace unix - - n - 0 bounce',
    'verify unix - - n - 1 verify',
    'flush unix n - n 1000? 0 flush',
    'proxymap unix - - n - - proxymap',
    'smtp unix - - n - - smtp',
    'relay unix - - n - - smtp',
    'showq unix n - n - - showq',
    'error unix - - n - - error',
    'retry unix - - n - - error',
    'discard unix - - n - - discard',
    'local unix - n n - - local',
    'virtual unix - n n - - virtual',
    'lmtp unix - - n - - lmtp',
    'anvil unix - - n - 1 anvil',
    'scache unix - - n - 1 scache',
    'postlog unix-dgram n - n - 1 postlogd',
  ];
  fs.writeFileSync(path.join(dir, 'master.cf'), `${master.join('\n')}\n`);
  try {
    execFileSync(POSTFIX, ['-c', dir, 'start'], { stdio: 'pipe' });
  } catch {
    // Postfix logs to its maillog_file, not to stderr (unless on a terminal).
    const log = fs.existsSync(main.maillog_file!) ? fs.readFileSync(main.maillog_file!, 'utf8') : '';
    throw new Error(
      `postfix -c ${dir} start failed: ${log
        .split('\n')
        .filter((l) => /fatal|error/.test(l))
        .join('\n')}`,
    );
  }
  const masterPid = () => Number(fs.readFileSync(path.join(queue, 'pid', 'master.pid'), 'utf8').trim());
  await waitListening(port, () => undefined);
  return {
    port,
    dir,
    masterPid,
    stop: () => {
      try {
        execFileSync(POSTFIX, ['-c', dir, 'stop'], { stdio: 'pipe' });
      } catch {
        /* already stopped */
      }
    },
  };
};

/** How many messages a Maildir instance has delivered (files in any mail/<domain>/<user>/new). */
export const maildirCount = (dir: string): number => {
  let n = 0;
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      if (!e.isDirectory()) continue;
      const p = path.join(d, e.name);
      if (e.name === 'new') n += fs.readdirSync(p).length;
      else if (e.name !== 'tmp' && e.name !== 'cur') walk(p);
    }
  };
  walk(path.join(dir, 'mail'));
  return n;
};

const waitListening = async (port: number, failed: () => string | undefined) => {
  const { connect } = await import('node:net');
  const end = Date.now() + 30_000;
  for (;;) {
    const why = failed();
    if (why) throw new Error(why);
    const ok = await new Promise<boolean>((r) => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        r(true);
      });
      s.once('error', () => r(false));
    });
    if (ok) return;
    if (Date.now() > end) throw new Error(`nothing listens on 127.0.0.1:${port}`);
    await new Promise((r) => setTimeout(r, 100));
  }
};
