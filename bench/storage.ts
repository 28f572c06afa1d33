import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { type DKIMSignOptions, dkimSign } from 'mailauth';
import { createTransport } from 'nodemailer';
import pg from 'pg';
import { selfSignedCert } from '../test/support/outbound-sink.js';
import { api, benchStore, fmt, freePort, outsideSender, repoRoot, startProcess, table } from './support/bench-kit.js';

const N = Number(process.env.MAILWARD_BENCH_STORAGE_MESSAGES ?? 300);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mw-bench-storage-'));
const pair = selfSignedCert(dir);

const { dnsFile, pem } = outsideSender(dir);

/** A seeded xorshift generator: the same messages in every run. */
let seed = 0x2545f491;
const rnd = () => {
  seed ^= seed << 13;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  return (seed >>> 0) / 2 ** 32;
};
const syllables = [
  'ca',
  'di',
  'o',
  'lo',
  'gy',
  'pa',
  'ti',
  'ent',
  're',
  'sult',
  'lab',
  'fol',
  'low',
  'up',
  'vis',
  'it',
  'mg',
  'dose',
  'ren',
  'al',
];
const vocab = Array.from({ length: 3000 }, () =>
  Array.from({ length: 1 + Math.floor(rnd() * 4) }, () => syllables[Math.floor(rnd() * syllables.length)]).join(''),
);
// Zipf-like: common words far more often than rare ones, as in prose.
const word = () => vocab[Math.floor(vocab.length * rnd() ** 2.5)]!;
const prose = (bytes: number) => {
  const out: string[] = [];
  let n = 0;
  while (n < bytes) {
    const s = `${Array.from({ length: 6 + Math.floor(rnd() * 14) }, word).join(' ')}.`;
    out.push(s.charAt(0).toUpperCase() + s.slice(1));
    n += s.length + 1;
  }
  return out.join(' ');
};
const wrap = (s: string) => s.replace(/(.{1,76})(\s|$)/g, '$1\r\n');
const TO = 'results-reader@bench.example';

const headers = (i: number, contentType: string) =>
  `From: Lab Results <results@lab.example>\r\nTo: ${TO}\r\nSubject: Results ${i} ${prose(30)}\r\nMessage-ID: <bench.${i}.${Date.now()}@lab.example>\r\nDate: ${new Date().toUTCString()}\r\nMIME-Version: 1.0\r\nContent-Type: ${contentType}\r\n\r\n`;

const alternative = (i: number) => {
  const text = prose(4500);
  const html = `<html><body><p>${text.split('. ').join('.</p>\r\n<p>')}</p></body></html>`;
  return `${headers(i, 'multipart/alternative; boundary="b1"')}--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n${wrap(text)}\r\n--b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n${wrap(html)}\r\n--b1--\r\n`;
};
const withPdf = (i: number) => {
  const pdf = Buffer.from(Array.from({ length: 5000 }, () => Math.floor(rnd() * 256)));
  const b64 = pdf.toString('base64').replace(/(.{76})/g, '$1\r\n');
  return `${headers(i, 'multipart/mixed; boundary="b2"')}--b2\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n${wrap(prose(3300))}\r\n--b2\r\nContent-Type: application/pdf; name="results.pdf"\r\nContent-Disposition: attachment; filename="results.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\n${b64}\r\n--b2--\r\n`;
};

const build = async (make: (i: number) => string) => {
  const out: Buffer[] = [];
  for (let i = 0; i < N; i++) {
    const raw = Buffer.from(make(i));
    const s = await dkimSign(raw, {
      signatureData: [{ signingDomain: 'lab.example', selector: 'sel', privateKey: pem }],
    } as DKIMSignOptions);
    out.push(Buffer.concat([Buffer.from(s.signatures), raw]));
  }
  return out;
};

const send = async (port: number, messages: Buffer[]) => {
  const tr = createTransport({
    host: '127.0.0.1',
    port,
    secure: false,
    requireTLS: true,
    pool: true,
    maxConnections: 4,
    maxMessages: Infinity,
    tls: { ca: pair.cert, servername: 'localhost' },
  });
  let ok = 0;
  let next = 0;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (next < messages.length) {
        const raw = messages[next++]!;
        const info = await tr.sendMail({ envelope: { from: 'results@lab.example', to: [TO] }, raw });
        if (/^250 /.test(String(info.response))) ok++;
      }
    }),
  );
  tr.close();
  return ok;
};

/** Bytes the store uses: SQLite pages in use (main file and WAL as one snapshot), PostgreSQL pg_database_size. */
const storeBytes = async (env: Record<string, string>) => {
  if (env.DATABASE_URL) {
    const c = new pg.Client({ connectionString: env.DATABASE_URL });
    await c.connect();
    const r = await c.query<{ n: string }>('select pg_database_size(current_database()) as n');
    await c.end();
    return Number(r.rows[0]!.n);
  }
  const db = new Database(path.join(env.MAILWARD_DATA_DIR!, 'mailward.db'), { readonly: true, fileMustExist: true });
  try {
    const pages = Number(db.pragma('page_count', { simple: true })) - Number(db.pragma('freelist_count', { simple: true }));
    return pages * Number(db.pragma('page_size', { simple: true }));
  } finally {
    db.close();
  }
};

/** Where the bytes are: the sealed columns of the messages, as stored (PostgreSQL: after TOAST compression). */
const sealedBytes = async (env: Record<string, string>) => {
  const q =
    'select sum(LEN(content_sealed)) as content, sum(coalesce(LEN(raw_sealed), 0)) as raw, count(*) as n from messages where direction = $dir';
  if (env.DATABASE_URL) {
    const c = new pg.Client({ connectionString: env.DATABASE_URL });
    await c.connect();
    const r = await c.query<{ content: string; raw: string }>(q.replaceAll('LEN', 'pg_column_size').replace('$dir', "'inbound'"));
    await c.end();
    return { content: Number(r.rows[0]!.content), raw: Number(r.rows[0]!.raw) };
  }
  const db = new Database(path.join(env.MAILWARD_DATA_DIR!, 'mailward.db'), { readonly: true, fileMustExist: true });
  try {
    const r = db.prepare(q.replaceAll('LEN', 'length').replace('$dir', "'inbound'")).get() as { content: number; raw: number };
    return { content: Number(r.content), raw: Number(r.raw) };
  } finally {
    db.close();
  }
};

/** Bytes of the blind search index's three tables and their keys (PostgreSQL: with TOAST and dead rows not yet vacuumed). */
const searchBytes = async (env: Record<string, string>) => {
  const tables = ['search_pending', 'search_segments', 'search_postings'];
  if (env.DATABASE_URL) {
    const c = new pg.Client({ connectionString: env.DATABASE_URL });
    await c.connect();
    const r = await c.query<{ n: string }>('select sum(pg_total_relation_size(t)) as n from unnest($1::text[]) as t', [tables]);
    await c.end();
    return Number(r.rows[0]!.n);
  }
  const db = new Database(path.join(env.MAILWARD_DATA_DIR!, 'mailward.db'), { readonly: true, fileMustExist: true });
  try {
    return Number(
      (db.prepare(`select sum(pgsize) as n from dbstat where name in (${tables.map((t) => `'${t}'`).join(',')})`).get() as { n: number }).n,
    );
  } finally {
    db.close();
  }
};

/** Bytes per table (with its indexes and TOAST), for MAILWARD_BENCH_STORAGE_BREAKDOWN=1: where the bytes went. */
const tableBytes = async (env: Record<string, string>): Promise<Map<string, number>> => {
  if (env.DATABASE_URL) {
    const c = new pg.Client({ connectionString: env.DATABASE_URL });
    await c.connect();
    const r = await c.query<{ t: string; n: string }>(
      "select relname as t, pg_total_relation_size(oid) as n from pg_class where relkind = 'r' and relnamespace = 'public'::regnamespace",
    );
    await c.end();
    return new Map(r.rows.map((x) => [x.t, Number(x.n)]));
  }
  const db = new Database(path.join(env.MAILWARD_DATA_DIR!, 'mailward.db'), { readonly: true, fileMustExist: true });
  try {
    const rows = db
      .prepare(
        'select coalesce(m.tbl_name, d.name) as t, sum(d.pgsize) as n from dbstat d left join sqlite_master m on m.name = d.name group by 1',
      )
      .all() as {
      t: string;
      n: number;
    }[];
    return new Map(rows.map((x) => [x.t, Number(x.n)]));
  } finally {
    db.close();
  }
};
const BREAKDOWN = process.env.MAILWARD_BENCH_STORAGE_BREAKDOWN === '1';

/** Messages whose search entries still wait for the compactor (src/mail/search-index.ts). */
const pendingSearch = async (env: Record<string, string>) => {
  const q = 'select count(*) as n from search_pending';
  if (env.DATABASE_URL) {
    const c = new pg.Client({ connectionString: env.DATABASE_URL });
    await c.connect();
    const r = await c.query<{ n: string }>(q);
    await c.end();
    return Number(r.rows[0]!.n);
  }
  const db = new Database(path.join(env.MAILWARD_DATA_DIR!, 'mailward.db'), { readonly: true, fileMustExist: true });
  try {
    return Number((db.prepare(q).get() as { n: number }).n);
  } finally {
    db.close();
  }
};

const kinds = [
  { name: 'text + HTML', messages: await build(alternative) },
  { name: 'text + 5 KB PDF', messages: await build(withPdf) },
];
const dialects = (process.env.MAILWARD_BENCH_DIALECTS ?? 'sqlite,postgres').split(',') as ('sqlite' | 'postgres')[];
const rows: Record<string, string | number>[] = [];
for (const kind of kinds) {
  const rawAvg = kind.messages.reduce((n, m) => n + m.length, 0) / N;
  rows.push({
    store: `raw message (Maildir file) [${kind.name}]`,
    'bytes/message': fmt(rawAvg),
    'x raw': '1.00',
    'sealed content': '-',
    'sealed raw': '-',
    'search index': '-',
  });
  for (const dialect of dialects) {
    const store = await benchStore(dialect);
    const smtpPort = await freePort();
    const server = await startProcess(['--import', 'tsx', path.join(repoRoot, 'src/cli/main.ts'), 'serve'], {
      ...store.env,
      MAILWARD_LOG_LEVEL: 'warn',
      MAILWARD_DOMAIN: 'bench.example',
      MAILWARD_DNS_OVERRIDES: dnsFile,
      MAILWARD_SMTP_TLS_KEY_FILE: pair.keyFile,
      MAILWARD_SMTP_TLS_CERT_FILE: pair.caFile,
      MAILWARD_SMTP_RATE_PER_MINUTE: '0',
      MAILWARD_SMTP_HOSTNAME: 'mx.bench.example',
      MAILWARD_SMTP_PORT: String(smtpPort),
    });
    const admin = fs.readFileSync(path.join(store.dataDir, 'bootstrap-admin.key'), 'utf8').trim();
    const call = api(`http://127.0.0.1:${server.port}`, admin);
    const dep = await call('POST', '/v1/departments', { name: 'Cardiology' });
    const human = await call('POST', '/v1/humans', { name: 'Dr. Bench', email: 'bench@bench.example', roles: ['reviewer'] });
    const agent = await call('POST', '/v1/agents', { name: 'Results Reader', department_id: dep.id, responsible_human_id: human.id });
    await call('POST', '/v1/mailboxes', { agent_id: agent.id, address: TO, display_name: 'Results', oversight_mode: 'autonomous' });
    // A few messages first, so tables and indexes have their first pages before the measurement starts.
    await send(smtpPort, kind.messages.slice(0, 5));
    const before = await storeBytes(store.env);
    const sealed0 = await sealedBytes(store.env);
    const search0 = await searchBytes(store.env);
    const tables0 = BREAKDOWN ? await tableBytes(store.env) : new Map<string, number>();
    const ok = await send(smtpPort, kind.messages.slice(5));
    // The steady state: the compactor folds the last entries into segments within a minute (COMPACT_AFTER_MS).
    const waitStart = Date.now();
    while ((await pendingSearch(store.env)) > 0 && Date.now() - waitStart < 120_000) await new Promise((r) => setTimeout(r, 2000));
    const stillPending = await pendingSearch(store.env);
    await server.stop();
    const after = await storeBytes(store.env);
    const sealed1 = await sealedBytes(store.env);
    const search1 = await searchBytes(store.env);
    if (BREAKDOWN) {
      const tables1 = await tableBytes(store.env);
      const grew = [...tables1]
        .map(([t, n]) => [t, (n - (tables0.get(t) ?? 0)) / ok] as const)
        .filter(([, n]) => n >= 50)
        .sort((a, b) => b[1] - a[1]);
      console.log(`${dialect} [${kind.name}] bytes/message by table: ${grew.map(([t, n]) => `${t} ${fmt(n)}`).join(', ')}`);
    }
    await store.drop();
    const per = (after - before) / ok;
    const sent = kind.messages.slice(5).reduce((n, m) => n + m.length, 0) / (N - 5);
    rows.push({
      store: `mailward (${dialect}) [${kind.name}], ${ok}/${N - 5} stored${stillPending ? `, ${stillPending} not compacted` : ''}`,
      'bytes/message': fmt(per),
      'x raw': fmt(per / sent, 2),
      'sealed content': fmt((sealed1.content - sealed0.content) / ok),
      'sealed raw': fmt((sealed1.raw - sealed0.raw) / ok),
      'search index': fmt((search1 - search0) / ok),
    });
  }
}
fs.rmSync(dir, { recursive: true, force: true });
table(
  `Store bytes per inbound message, ${N} messages per kind (target: at most 1.5x raw); load ${fs.readFileSync('/proc/loadavg', 'utf8').trim()}`,
  rows,
);
