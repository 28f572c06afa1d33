import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import path from 'node:path';
import { repoRoot } from './processes.js';
import { waitFor } from './wait.js';

export type Rpc = { jsonrpc: '2.0'; id: string | number | null; result?: any; error?: { code: number; message: string } };

/** `mailward mcp` as a child process spoken to in raw JSON-RPC lines, as a client with its own framing would. */
export const rawStdio = (env: Record<string, string>) => {
  const child: ChildProcessWithoutNullStreams = spawn(
    process.execPath,
    ['--import', 'tsx', path.join(repoRoot, 'src/cli/main.ts'), 'mcp'],
    {
      cwd: repoRoot,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    },
  );
  const answers: Rpc[] = [];
  let pending = '';
  let stderr = '';
  child.stdout.on('data', (d) => {
    pending += d;
    for (let nl = pending.indexOf('\n'); nl !== -1; nl = pending.indexOf('\n')) {
      answers.push(JSON.parse(pending.slice(0, nl)) as Rpc);
      pending = pending.slice(nl + 1);
    }
  });
  child.stderr.on('data', (d) => {
    stderr += d;
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const send = (line: string) => new Promise<void>((resolve, reject) => child.stdin.write(`${line}\n`, (e) => (e ? reject(e) : resolve())));
  /** The next answer (from `from` on) that `match` accepts; fails at the deadline or when the process exits. */
  const answer = async (match: (a: Rpc) => boolean, from = 0, deadlineMs = 120_000): Promise<Rpc> => {
    let a: Rpc | undefined;
    const got = await waitFor(
      () => {
        a = answers.slice(from).find(match);
        if (a) return true;
        if (child.exitCode !== null) throw new Error(`mailward mcp exited (${child.exitCode}) without answering:\n${stderr}`);
        return false;
      },
      { timeoutMs: deadlineMs, everyMs: 20 },
    );
    if (!got || !a) throw new Error(`no answer in time; got ${JSON.stringify(answers)}\n${stderr}`);
    return a;
  };
  return { child, answers, send, answer, exited, stderr: () => stderr };
};
