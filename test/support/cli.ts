// Runs the real `gatehouse` command (bin/gatehouse.js) as a child process, the way a user does.
// Every child is tracked so a suite can stop the ones still running in afterEach/afterAll,
// and every child has a deadline after which it is killed.
import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const binPath = path.join(repoRoot, 'bin', 'gatehouse.js');

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  /** Working directory of the child; tests give each run its own temp directory. */
  cwd: string;
  /** Added to a copy of this process's environment stripped of every GATEHOUSE_* variable. */
  env?: Record<string, string>;
  /** The child is SIGKILLed after this long (default 20 s). */
  timeoutMs?: number;
  /**
   * Execute bin/gatehouse.js itself, as a shell running `npx gatehouse` or `gatehouse` on PATH
   * does: its `#!` line then picks node and node's flags. By default the test's own node binary
   * runs the file (`node bin/gatehouse.js`), which ignores that line.
   */
  viaShebang?: boolean;
}

const running = new Set<ChildProcess>();

/** The test process's environment without GATEHOUSE_* settings, plus `extra`. */
export function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (!name.startsWith('GATEHOUSE_')) env[name] = value;
  }
  // Vitest's own loader hooks must not leak into the child.
  delete env.NODE_OPTIONS;
  return { ...env, ...extra };
}

export interface CliProcess {
  child: ChildProcess;
  /** Everything written so far. */
  stdout(): string;
  stderr(): string;
  /** Resolves with the first stderr line that matches, rejects if the child exits first. */
  waitForStderr(pattern: RegExp, timeoutMs?: number): Promise<string>;
  /** Resolves when the child exits (it is killed at its deadline). */
  exited: Promise<CliResult>;
  /** Sends `signal` (if the child still runs) and waits for the exit. */
  stop(signal?: NodeJS.Signals): Promise<CliResult>;
}

/** Starts `node bin/gatehouse.js ...args` and returns a handle on the running child. */
export function startCli(args: string[], options: CliOptions): CliProcess {
  const [command, commandArgs] = options.viaShebang
    ? [binPath, args]
    : [process.execPath, [binPath, ...args]];
  const child = spawn(command, commandArgs, {
    cwd: options.cwd,
    env: childEnv(options.env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk;
  });
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  const deadline = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 20_000);
  const exited = new Promise<CliResult>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code, signal) => {
      clearTimeout(deadline);
      running.delete(child);
      resolve({ code, signal, stdout, stderr });
    });
  });

  return {
    child,
    stdout: () => stdout,
    stderr: () => stderr,
    exited,
    waitForStderr(pattern, timeoutMs = 15_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const line = stderr.split('\n').find((l) => pattern.test(l));
          if (line === undefined) return false;
          done();
          resolve(line);
          return true;
        };
        const onData = () => check();
        const timer = setTimeout(() => {
          done();
          reject(new Error(`no stderr line matched ${pattern} within ${timeoutMs} ms; stderr:\n${stderr}`));
        }, timeoutMs);
        const onExit = () => {
          if (check()) return;
          done();
          reject(new Error(`gatehouse exited before printing ${pattern}; stderr:\n${stderr}`));
        };
        const done = () => {
          clearTimeout(timer);
          child.stderr!.off('data', onData);
          child.off('close', onExit);
        };
        if (check()) return;
        child.stderr!.on('data', onData);
        child.once('close', onExit);
      });
    },
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

/** Runs `gatehouse ...args` to completion. */
export function runCli(args: string[], options: CliOptions): Promise<CliResult> {
  return startCli(args, options).exited;
}

/** Kills every child still running (for afterEach/afterAll) and waits for them to go. */
export async function killAllCli(): Promise<void> {
  const children = [...running];
  await Promise.all(
    children.map(
      (child) =>
        new Promise<void>((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolve();
          child.once('close', () => resolve());
          child.kill('SIGKILL');
        }),
    ),
  );
}
