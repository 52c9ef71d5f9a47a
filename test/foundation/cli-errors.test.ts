// `gatehouse start` refusing to run, as a user sees it: bad settings exit 2, an unreachable or
// unusable database and a missing master key exit non-zero, each with one clear line on stderr
// (no stack trace, no password) and nothing half-started.
import { existsSync, mkdirSync, renameSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadSettings } from '../../src/config/settings.ts';
import { openGateway } from '../../src/gateway.ts';
import { createLogger } from '../../src/logging.ts';
import { type CliResult, killAllCli, runCli, startCli } from '../support/cli.ts';
import { tempDir } from '../support/databases.ts';

// The tests run concurrently (each one mostly waits on its child), so cleanup waits for all of them.
const cleanups: (() => void)[] = [];
afterAll(async () => {
  await killAllCli();
  for (const cleanup of cleanups.splice(0)) cleanup();
});

/** Nothing listens on port 1; the password must never appear in any output. */
const UNREACHABLE_URL = 'postgres://user:secret@127.0.0.1:1/x';

function workDir(): string {
  const temp = tempDir('gatehouse-cli-errors-');
  cleanups.push(temp.cleanup);
  return temp.dir;
}

/** One `gatehouse: error: ...` line and nothing else: no stack, no logs of a half start. */
function errorLine(result: CliResult): string {
  expect(result.stdout).toBe('');
  const lines = result.stderr.split('\n').filter(Boolean);
  expect(lines, result.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(/^gatehouse: error: /);
  return lines[0]!;
}

describe.concurrent('gatehouse start refuses', () => {
  it('a bad value: exit 2, naming the key, the value, where it came from and what is accepted', async () => {
    // From the environment: the flags' path is exercised by every other command in these tests.
    const cwd = workDir();
    const result = await runCli(['start', '--data-dir', 'data'], {
      cwd,
      env: { GATEHOUSE_LISTEN: 'nonsense' },
    });
    expect(result.code).toBe(2);
    const line = errorLine(result);
    expect(line).toContain('invalid setting listen = "nonsense" (from GATEHOUSE_LISTEN)');
    expect(line).toContain('expected HOST:PORT');
    expect(existsSync(path.join(cwd, 'data'))).toBe(false);
  });

  it('an unreachable database: start retries and says so, the URL with its password hidden', async () => {
    // Issue 9: a node starting while PostgreSQL is down waits for it, logging each retry.
    const cwd = workDir();
    const node = startCli(
      ['start', '--data-dir', 'data', '--listen', '127.0.0.1:0', '--database-url', UNREACHABLE_URL],
      { cwd },
    );
    const line = await node.waitForStderr(/database unreachable at start; retrying/);
    const log = JSON.parse(line) as { attempt: number; retryInMs: number; error: string };
    expect(log.attempt).toBe(1);
    expect(log.retryInMs).toBeGreaterThan(0);
    expect(log.error).toContain('cannot connect to database postgres://user:***@127.0.0.1:1/x');
    const result = await node.stop('SIGTERM');
    // Nothing is open yet while it waits, so SIGTERM's default action ends it.
    expect(result.signal).toBe('SIGTERM');
    expect(result.stderr).not.toContain('secret');
    expect(existsSync(path.join(cwd, 'data', 'master.key'))).toBe(false);
  });

  it('an unreachable database for a one-shot command: exit 1 at once, password hidden', async () => {
    const cwd = workDir();
    const result = await runCli(['migrate', '--data-dir', 'data', '--database-url', UNREACHABLE_URL], {
      cwd,
    });
    expect(result.code).toBe(1);
    const line = errorLine(result);
    expect(line).toContain('cannot connect to database postgres://user:***@127.0.0.1:1/x');
    expect(result.stderr).not.toContain('secret');
  });

  it('a SQLite path that is a directory (unusable), naming it', async () => {
    // A file that is not a database and a failing migration are checked in store.test.ts.
    const cwd = workDir();
    mkdirSync(path.join(cwd, 'a-directory.db'));
    const result = await runCli(
      ['start', '--data-dir', 'data', '--listen', '127.0.0.1:0', '--database-url', 'sqlite:a-directory.db'],
      { cwd },
    );
    expect(result.code, result.stderr).toBe(1);
    const line = errorLine(result);
    expect(line).toContain('cannot open database sqlite:a-directory.db');
    expect(line).toContain('unable to open database file');
    expect(existsSync(path.join(cwd, 'data'))).toBe(false);
  });

  it('encrypted keys without their master key: exit 1, naming the file and the variable, creating none', async () => {
    const cwd = workDir();
    const dataDir = path.join(cwd, 'data');
    // A previous run made the keys (in-process: cheaper than another child).
    const settings = loadSettings({ dataDir, logLevel: 'silent' }, {});
    await (await openGateway(settings, createLogger('silent'))).close();
    const keyFile = path.join(dataDir, 'master.key');
    renameSync(keyFile, path.join(cwd, 'master.key.moved'));

    const result = await runCli(['start', '--data-dir', 'data', '--listen', '127.0.0.1:0'], { cwd });
    expect(result.code).toBe(1);
    const line = errorLine(result);
    expect(line).toContain(keyFile);
    expect(line).toContain('GATEHOUSE_MASTER_KEY is not set');
    expect(line).toContain('encrypted with a master key');
    expect(existsSync(keyFile)).toBe(false);
  });
});
