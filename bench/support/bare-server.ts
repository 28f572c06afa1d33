// The baselines: a bare fastify hello-world on the same machine, same Node, and the minimal TOTP route the
// issue compares Mailward with: the same HMAC (RFC 6238 with node:crypto) and one SQLite insert per code, on a
// database file with Mailward's SQLite settings (WAL, synchronous=NORMAL). No key check, no vault, no audit chain.
import { createHmac, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import Fastify from 'fastify';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mw-bare-'));
const db = new Database(path.join(dir, 'bare.db'));
db.pragma('journal_mode = WAL');
db.pragma('synchronous = NORMAL');
db.exec('create table codes (id text primary key, secret text not null, at text not null, expires_at text not null)');
const insert = db.prepare('insert into codes (id, secret, at, expires_at) values (?, ?, ?, ?)');
const seed = Buffer.from('12345678901234567890');

const app = Fastify({ logger: false });
app.get('/healthz', async () => ({ status: 'ok' }));
app.get('/hello', async () => ({ hello: 'world' }));
app.post('/totp', async () => {
  const now = Date.now();
  const step = Math.floor(now / 30_000);
  const counter = Buffer.alloc(8);
  counter.writeUInt32BE(Math.floor(step / 2 ** 32), 0);
  counter.writeUInt32BE(step % 2 ** 32, 4);
  const mac = createHmac('sha1', seed).update(counter).digest();
  const o = mac[mac.length - 1]! & 0xf;
  const bin = ((mac[o]! & 0x7f) << 24) | (mac[o + 1]! << 16) | (mac[o + 2]! << 8) | mac[o + 3]!;
  const code = String(bin % 1_000_000).padStart(6, '0');
  const expiresAt = new Date((step + 1) * 30_000).toISOString();
  insert.run(randomUUID(), 'bench-otp', new Date(now).toISOString(), expiresAt);
  return { code, period: 30, digits: 6, expires_at: expiresAt };
});
process.on('SIGTERM', () => {
  db.close();
  fs.rmSync(dir, { recursive: true, force: true });
  process.exit(0);
});
await app.listen({ host: '127.0.0.1', port: Number(process.env.PORT) });
