import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { tempDir } from './dialects.js';
import { repoRoot } from './processes.js';

/** The official MCP Inspector 2.x (devDependency), its CLI mode: `mcp-inspector --cli ...`. */
const INSPECTOR_DIR = path.join(repoRoot, 'node_modules', '@modelcontextprotocol', 'inspector');
const INSPECTOR_BIN = path.join(INSPECTOR_DIR, 'clients', 'launcher', 'build', 'index.js');
/** The installed Inspector's version (package.json). */
export const inspectorVersion = (): string =>
  (JSON.parse(fs.readFileSync(path.join(INSPECTOR_DIR, 'package.json'), 'utf8')) as { version: string }).version;

export type InspectorRun = {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  /** Resolves with the exit code. */
  exited: Promise<number | null>;
  /** The authorization URL the Inspector asks a person to open ("Please navigate to: ..."), once printed. */
  authorizationUrl: () => string | undefined;
};

/** A home directory for Inspector runs that share state (its OAuth store), with the do-nothing `xdg-open`. */
export const inspectorHome = () => {
  const home = tempDir('inspector-home');
  fs.mkdirSync(path.join(home, 'bin'));
  fs.writeFileSync(path.join(home, 'bin', 'xdg-open'), '#!/bin/sh\nexit 0\n', { mode: 0o755 });
  return home;
};

/**
 * Runs the Inspector CLI with `args`, in a home of its own (its state files), secrets kept in memory, and with
 * MCP_AUTO_OPEN_ENABLED=true: the switch its CLI documents for running the interactive OAuth flow without a TTY. It
 * then prints the authorization URL and waits on its loopback callback (`--callback-url`) for the browser, which the
 * test drives. Its attempt to open a desktop browser finds an `xdg-open` that does nothing (no desktop here).
 */
export const runInspector = (args: string[], opts: { home?: string; env?: Record<string, string> } = {}): InspectorRun => {
  const home = opts.home ?? inspectorHome();
  const bin = path.join(home, 'bin');
  // A generous connect timeout (its default is 15 s): `mailward mcp` under tsx starts slowly on a loaded machine.
  const child = spawn(process.execPath, [INSPECTOR_BIN, '--cli', '--connect-timeout', '120000', ...args], {
    cwd: repoRoot,
    env: {
      PATH: `${bin}:${process.env.PATH ?? ''}`,
      HOME: home,
      MCP_INSPECTOR_SECRET_STORE: 'memory',
      MCP_AUTO_OPEN_ENABLED: 'true',
      BROWSER: 'true',
      NO_COLOR: '1',
      ...opts.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout?.on('data', (d) => {
    out += d;
  });
  child.stderr?.on('data', (d) => {
    err += d;
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    exited,
    authorizationUrl: () => /Please navigate to: (\S+)/.exec(err)?.[1],
  };
};
