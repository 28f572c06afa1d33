import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { AppError } from '../kernel/errors.js';
import { ensurePrivateDir } from '../kernel/private-files.js';

/** The settings the TLS loader reads (STYLE.md: each module declares its own config type; `app/config.ts`'s `Config` satisfies it). */
export type SmtpTlsConfig = {
  dataDir: string;
  bootstrap: { domain: string };
  inbound: { tlsKeyFile: string | undefined; tlsCertFile: string | undefined; hostname: string | undefined };
};

export type SmtpTls = { key: Buffer; cert: Buffer; keyFile: string; certFile: string; generated: boolean };

export const devCertPaths = (dataDir: string) => ({
  keyFile: path.join(dataDir, 'smtp-tls-key.pem'),
  certFile: path.join(dataDir, 'smtp-tls-cert.pem'),
});

const HOST_RE = /^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$/i;

/**
 * A self-signed certificate for development (P-256, one year) made with the
 * openssl CLI: node:crypto cannot issue X.509 certificates. Written with mode
 * 0600 next to the store. Throws 500 openssl_missing when openssl cannot run.
 */
export const generateDevCert = (dataDir: string, names: string[]): { keyFile: string; certFile: string } => {
  const { keyFile, certFile } = devCertPaths(dataDir);
  ensurePrivateDir(dataDir);
  const dns = [...new Set(['localhost', ...names.map((n) => n.toLowerCase())])].filter((n) => HOST_RE.test(n));
  const san = [...dns.map((n) => `DNS:${n}`), 'IP:127.0.0.1', 'IP:::1'].join(',');
  const tmpKey = `${keyFile}.${process.pid}.tmp`;
  const tmpCert = `${certFile}.${process.pid}.tmp`;
  try {
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
        tmpKey,
        '-out',
        tmpCert,
        '-days',
        '365',
        '-subj',
        `/CN=${dns[0] === 'localhost' && dns.length > 1 ? dns[1] : dns[0]}`,
        '-addext',
        `subjectAltName=${san}`,
      ],
      { stdio: 'ignore' },
    );
  } catch (e) {
    fs.rmSync(tmpKey, { force: true });
    fs.rmSync(tmpCert, { force: true });
    const missing = (e as NodeJS.ErrnoException).code === 'ENOENT';
    throw new AppError(
      missing ? 'openssl_missing' : 'tls_cert_failed',
      500,
      missing
        ? 'The openssl command is needed to generate the development SMTP certificate: install openssl, or set MAILWARD_SMTP_TLS_KEY_FILE and MAILWARD_SMTP_TLS_CERT_FILE.'
        : 'openssl could not generate the development SMTP certificate; set MAILWARD_SMTP_TLS_KEY_FILE and MAILWARD_SMTP_TLS_CERT_FILE.',
      { cause: e },
    );
  }
  fs.chmodSync(tmpKey, 0o600);
  // Several processes may start on one data dir: the first complete pair wins, renames are atomic.
  if (!fs.existsSync(keyFile) || !fs.existsSync(certFile)) {
    fs.renameSync(tmpKey, keyFile);
    fs.renameSync(tmpCert, certFile);
  } else {
    fs.rmSync(tmpKey, { force: true });
    fs.rmSync(tmpCert, { force: true });
  }
  return { keyFile, certFile };
};

/**
 * The STARTTLS key and certificate: the configured files
 * (MAILWARD_SMTP_TLS_KEY_FILE / _CERT_FILE, both or neither), else the
 * development pair in the data dir, generated when missing. Throws 500
 * tls_config_invalid / openssl_missing; the caller stops start-up.
 */
export const loadSmtpTls = (config: SmtpTlsConfig): SmtpTls => {
  const { tlsKeyFile, tlsCertFile } = config.inbound;
  if (!!tlsKeyFile !== !!tlsCertFile) {
    throw new AppError('tls_config_invalid', 500, 'Set both MAILWARD_SMTP_TLS_KEY_FILE and MAILWARD_SMTP_TLS_CERT_FILE, or neither.');
  }
  let files: { keyFile: string; certFile: string };
  let generated = false;
  if (tlsKeyFile && tlsCertFile) files = { keyFile: tlsKeyFile, certFile: tlsCertFile };
  else {
    files = devCertPaths(config.dataDir);
    if (!fs.existsSync(files.keyFile) || !fs.existsSync(files.certFile)) {
      files = generateDevCert(config.dataDir, [config.inbound.hostname ?? os.hostname(), config.bootstrap.domain]);
      generated = true;
    }
  }
  try {
    return { key: fs.readFileSync(files.keyFile), cert: fs.readFileSync(files.certFile), ...files, generated };
  } catch (e) {
    throw new AppError('tls_config_invalid', 500, 'The SMTP TLS key or certificate file cannot be read.', { cause: e });
  }
};
