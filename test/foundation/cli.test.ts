// The `gatehouse` command as a user runs it: a child process per command, each in its own
// temp directory (cwd and data dir), results on stdout, JSON logs on stderr.
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { PERMISSION_GROUPS } from '../../src/api/permissions.ts';
import { migrations } from '../../src/store/migrations.ts';
import { killAllCli, runCli, startCli } from '../support/cli.ts';
import { tempDir } from '../support/databases.ts';
import { freePort } from '../support/ports.ts';

/** What bin/gatehouse.js's `#!` line gives node (docs/deploy.md, Sizing). */
const YOUNG_GENERATION_FLAGS = ['--min-semi-space-size=16', '--max-semi-space-size=32'];

// The tests run concurrently (each one mostly waits on its child), so cleanup waits for all of them.
const cleanups: (() => void)[] = [];
afterAll(async () => {
  await killAllCli();
  for (const cleanup of cleanups.splice(0)) cleanup();
});

function workDir(): string {
  const temp = tempDir('gatehouse-cli-');
  cleanups.push(temp.cleanup);
  return temp.dir;
}

/** Reads rows from the SQLite database a command left behind (read-only, closed at once). */
function query<T>(file: string, sql: string): T[] {
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    return db.prepare(sql).all() as T[];
  } finally {
    db.close();
  }
}

function get(listen: string, pathname: string, host: string): Promise<{ status: number; body: string }> {
  const [hostname, port] = [
    listen.slice(0, listen.lastIndexOf(':')),
    listen.slice(listen.lastIndexOf(':') + 1),
  ];
  return new Promise((resolve, reject) => {
    const req = http.get({ host: hostname, port, path: pathname, headers: { host }, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        body += chunk;
      });
      res.on('end', () => resolve({ status: res.statusCode!, body }));
    });
    req.on('error', reject);
  });
}

describe.concurrent('gatehouse', () => {
  it('--help lists the commands', async () => {
    const result = await runCli(['--help'], { cwd: workDir() });
    expect(result.code).toBe(0);
    for (const command of ['start', 'migrate', 'keys', 'api-token', 'demo']) {
      expect(result.stdout).toMatch(new RegExp(`^\\s+${command}\\b`, 'm'));
    }
  });

  it('start on a fresh directory creates it, logs where it runs, answers /healthz and exits 0 on SIGTERM', async () => {
    const cwd = workDir();
    const gatehouse = startCli(['start', '--data-dir', 'state/data', '--listen', '127.0.0.1:0'], { cwd });
    const runningLine = await gatehouse.waitForStderr(/Gatehouse is running/);
    const running = JSON.parse(runningLine) as Record<string, unknown>;
    expect(running.accountId).toMatch(/^[0-9a-f]{32}$/);
    expect(running.teamDomain).toBe('http://auth.localhost:8080'); // the default
    expect(running.listen).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(running.listen).not.toBe('127.0.0.1:0');
    expect(running.database).toBe('sqlite');

    // The default team domain, reached like `curl --resolve`: connect to the listener, name the host.
    const health = await get(String(running.listen), '/healthz', 'auth.localhost:8080');
    expect(health).toEqual({ status: 200, body: JSON.stringify({ status: 'ok' }) });
    expect((await get(String(running.listen), '/readyz', 'auth.localhost:8080')).status).toBe(200);
    expect((await get(String(running.listen), '/healthz', 'elsewhere.example.com')).status).toBe(404);

    const result = await gatehouse.stop('SIGTERM');
    expect(result.signal).toBeNull();
    expect(result.code).toBe(0);
    expect(result.stdout).toBe('');
    const logLines = result.stderr.split('\n').filter(Boolean);
    const logs = logLines.map((line) => JSON.parse(line) as { msg: string; level: number });
    expect(logs.map((log) => log.msg)).toContain('stopped');
    expect(logs.every((log) => typeof log.level === 'number')).toBe(true);

    const dataDir = path.join(cwd, 'state', 'data');
    expect(statSync(path.join(dataDir, 'master.key')).mode & 0o777).toBe(0o600);
    const accounts = query<{ account_id: string }>(
      path.join(dataDir, 'gatehouse.db'),
      'select account_id from accounts',
    );
    expect(accounts).toEqual([{ account_id: running.accountId }]);
  });

  it('run as an installed command, its #! line gives node the larger young generation and SIGTERM still stops it cleanly', async () => {
    const cwd = workDir();
    const gatehouse = startCli(['start', '--data-dir', 'data', '--listen', '127.0.0.1:0'], {
      cwd,
      viaShebang: true,
    });
    const running = JSON.parse(await gatehouse.waitForStderr(/Gatehouse is running/)) as { listen: string };
    // `env -S` replaced itself with node (no launcher in between): the child is the server, and
    // node accepted the flags (it refuses to start on an unknown one).
    const commandLine = readFileSync(`/proc/${gatehouse.child.pid}/cmdline`, 'utf8').split('\0');
    expect(path.basename(commandLine[0]!)).toBe('node');
    expect(commandLine).toEqual(expect.arrayContaining(YOUNG_GENERATION_FLAGS));
    expect((await get(running.listen, '/healthz', 'auth.localhost:8080')).status).toBe(200);
    const result = await gatehouse.stop('SIGTERM');
    expect(result).toMatchObject({ code: 0, signal: null });
    expect(result.stderr).toContain('"msg":"stopped"');
  });

  it('--workers processes of an installed command run with the same node flags, and a stop during their start-up stops them', async () => {
    const cwd = workDir();
    const listen = `127.0.0.1:${await freePort()}`;
    const gatehouse = startCli(['start', '--workers', '2', '--data-dir', 'data', '--listen', listen], {
      cwd,
      viaShebang: true,
      timeoutMs: 60_000,
    });
    await gatehouse.waitForStderr(/started workers/, 30_000);
    // cluster.fork passes the primary's execArgv on; the workers are the primary's children.
    const primary = gatehouse.child.pid!;
    const workers = readFileSync(`/proc/${primary}/task/${primary}/children`, 'utf8').trim().split(/\s+/);
    expect(workers).toHaveLength(2);
    for (const worker of workers) {
      const commandLine = readFileSync(`/proc/${worker}/cmdline`, 'utf8').split('\0');
      expect(commandLine).toEqual(expect.arrayContaining(YOUNG_GENERATION_FLAGS));
    }
    // The workers are still loading: the primary's stop message reaches them before they listen.
    expect(gatehouse.stderr()).not.toContain('Gatehouse is running');
    const result = await gatehouse.stop('SIGTERM');
    expect(result).toMatchObject({ code: 0, signal: null });
    expect(result.stderr.match(/"msg":"stopped"/g)).toHaveLength(3);
  });

  it('migrate applies the migrations and creates the account, but no keys', async () => {
    const cwd = workDir();
    const first = await runCli(['migrate', '--data-dir', 'data'], { cwd });
    expect(first.code).toBe(0);
    expect(first.stderr).toContain('migrations applied');
    expect(first.stdout).toBe('');
    const file = path.join(cwd, 'data', 'gatehouse.db');
    const applied = query<{ name: string }>(file, 'select name from kysely_migration order by name');
    expect(applied.map((row) => row.name)).toEqual(Object.keys(migrations).sort());
    expect(query(file, 'select account_id from accounts')).toHaveLength(1);
    // Migrating touches no keys: the master key is made when keys are.
    expect(query(file, 'select kid from signing_keys')).toEqual([]);
    expect(existsSync(path.join(cwd, 'data', 'master.key'))).toBe(false);
  });

  it('keys rotate prints the new 64-hex kid, which becomes the current key', async () => {
    const cwd = workDir();
    const result = await runCli(['keys', 'rotate', '--data-dir', 'data'], { cwd });
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^[0-9a-f]{64}\n$/);
    const kid = result.stdout.trim();
    const keys = query<{ kid: string; retired_at: string | null }>(
      path.join(cwd, 'data', 'gatehouse.db'),
      'select kid, retired_at from signing_keys order by created_at desc',
    );
    // The first key (made on open) and the one rotate made, which alone is current.
    expect(keys).toHaveLength(2);
    expect(keys[0]).toEqual({ kid, retired_at: null });
    expect(keys[1]!.retired_at).not.toBeNull();
    expect(result.stderr).toContain('rotated');
  });

  it('api-token create prints only the secret and stores only its hash', async () => {
    const cwd = workDir();
    const result = await runCli(
      [
        'api-token',
        'create',
        '--name',
        'ci deploy',
        '--permission',
        'Access: Apps and Policies Read',
        '--permission',
        'Cloudflare Tunnel Write',
        '--data-dir',
        'data',
      ],
      { cwd },
    );
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^[A-Za-z0-9_-]{40}\n$/);
    const secret = result.stdout.trim();
    expect(result.stderr).not.toContain(secret);

    const dataDir = path.join(cwd, 'data');
    const tokens = query<{ name: string; secret_hash: string; permissions: string; status: string }>(
      path.join(dataDir, 'gatehouse.db'),
      'select name, secret_hash, permissions, status from api_tokens',
    );
    expect(tokens).toEqual([
      {
        name: 'ci deploy',
        secret_hash: createHash('sha256').update(secret).digest('hex'),
        permissions: JSON.stringify(['Access: Apps and Policies Read', 'Cloudflare Tunnel Write']),
        status: 'active',
      },
    ]);
    // Not in the database file, its WAL, or anything else the command left behind, while the
    // hash is found by the same search (so the search can see what is stored).
    let hashFound = false;
    for (const name of readdirSync(dataDir)) {
      const bytes = readFileSync(path.join(dataDir, name));
      expect(bytes.includes(Buffer.from(secret)), name).toBe(false);
      hashFound ||= bytes.includes(Buffer.from(tokens[0]!.secret_hash));
    }
    expect(hashFound).toBe(true);
  });

  it('api-token create refuses an unknown permission with exit 2 and lists the valid ones', async () => {
    const cwd = workDir();
    const result = await runCli(
      ['api-token', 'create', '--name', 'x', '--permission', 'Access: Everything', '--data-dir', 'data'],
      { cwd },
    );
    expect(result.code).toBe(2);
    expect(result.stdout).toBe('');
    expect(result.stderr).toContain('unknown permission "Access: Everything"');
    for (const group of PERMISSION_GROUPS) expect(result.stderr).toContain(`"${group}"`);
    expect(result.stderr).not.toMatch(/^\s+at /m); // a usage error, not a crash
    const file = path.join(cwd, 'data', 'gatehouse.db');
    if (existsSync(file)) expect(query(file, 'select id from api_tokens')).toEqual([]);
  });
});
