import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { headerValue, splitMessage } from '../src/mail/mime.js';
import { tempDir } from './support/dialects.js';
import { freePort, repoRoot } from './support/processes.js';

/** The README's own walkthrough: every ```bash walkthrough block, in order, as one script. */
const walkthroughBlocks = (readme: string): string[] => [...readme.matchAll(/^```bash walkthrough\n([\s\S]*?)^```$/gm)].map((m) => m[1]!);

const STATE = '::walkthrough-state::';

describe('README walkthrough', () => {
  let child: ChildProcess | undefined;
  afterAll(() => {
    // The script's process group (bash, the test relay and the server), also when bash is gone: only what this test started.
    try {
      if (child?.pid) process.kill(-child.pid, 'SIGKILL');
    } catch {
      /* the group has already exited */
    }
  });

  it('runs the blocks as written and reaches a delivered message at the test relay and a received message in the inbox', async () => {
    const blocks = walkthroughBlocks(fs.readFileSync(path.join(repoRoot, 'README.md'), 'utf8'));
    expect(blocks.length).toBeGreaterThanOrEqual(5);
    const script = blocks.join('\n');
    expect(script).not.toMatch(/\b(dep|hum|agt|mbx|msg|key)_\.\.\./); // no placeholders to copy by hand

    const dir = tempDir('mw-readme');
    // Stands in for DNS of the outside sender (no network in CI): SPF allows loopback, DMARC p=none.
    const dns = path.join(dir, 'dns.json');
    fs.writeFileSync(
      dns,
      JSON.stringify({
        TXT: {
          'lab.test': ['v=spf1 ip4:127.0.0.1 -all'],
          'mail.lab.test': ['v=spf1 ip4:127.0.0.1 -all'],
          '_dmarc.lab.test': ['v=DMARC1; p=none'],
        },
      }),
    );
    // A trailer that is not in the README: report what the blocks captured, then stop the background jobs.
    const trailer = `
echo "${STATE} $(jq -nc --arg msg "$MSG" --arg status "$STATUS" --arg relay "$RELAY_DIR" --arg address "$ADDRESS" '{msg:$msg,status:$status,relay:$relay,address:$address}')"
kill $(jobs -p) 2>/dev/null; wait
`;
    const env = {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '/tmp',
      TMPDIR: dir,
      MAILWARD_DATA_DIR: path.join(dir, 'data'),
      MAILWARD_HTTP_PORT: String(await freePort()),
      MAILWARD_SMTP_PORT: String(await freePort()),
      RELAY_PORT: String(await freePort()),
      MAILWARD_DNS_OVERRIDES: dns,
      MAILWARD_DELIVERY_POLL_MS: '100',
      MAILWARD_LOG_LEVEL: 'warn',
      npm_config_update_notifier: 'false',
    };
    child = spawn('bash', ['-euo', 'pipefail', '-c', script + trailer], {
      cwd: repoRoot,
      env,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout!.on('data', (d) => {
      out += d;
    });
    child.stderr!.on('data', (d) => {
      err += d;
    });
    const code = await new Promise<number | null>((resolve) => child!.on('exit', (c) => resolve(c)));
    expect(code, `stdout:\n${out}\nstderr:\n${err}`).toBe(0);

    const stateLine = out.split('\n').find((l) => l.startsWith(STATE));
    expect(stateLine, out).toBeDefined();
    const state = JSON.parse(stateLine!.slice(STATE.length)) as { msg: string; status: string; relay: string; address: string };
    expect(state.status).toBe('delivered');
    expect(out).toContain(`${state.msg}: delivered`);

    // Delivered: the relay holds the message, signed and carrying the identity header, from the agent's address.
    const emls = fs.readdirSync(state.relay).filter((f) => f.endsWith('.eml'));
    expect(emls).toHaveLength(1);
    const { header } = splitMessage(fs.readFileSync(path.join(state.relay, emls[0]!)));
    expect(headerValue(header, 'Subject')).toBe('Your refill is ready');
    expect(headerValue(header, 'To')).toContain('patient@example.org');
    expect(headerValue(header, 'From')).toContain(state.address);
    expect(headerValue(header, 'X-Agent-Identity')?.replace(/\s+/g, '')).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/);
    expect(headerValue(header, 'DKIM-Signature')).toBeTruthy();

    // Received: the inbox listing the last block printed (jq, pretty-printed; the server logs one-line JSON) shows the swaks message.
    const listed = [...out.matchAll(/^\{\n[\s\S]*?^\}$/gm)].map((m) => JSON.parse(m[0]) as Record<string, unknown>);
    expect(listed).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ subject: 'Lab results ready', status: 'received', from: expect.stringContaining('results@lab.test') }),
      ]),
    );
    fs.rmSync(state.relay, { recursive: true, force: true });
  }, 120_000);
});
