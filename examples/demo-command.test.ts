// `gatehouse demo` as a user runs it: a child process on free ports, seeded through the
// management API, the wiki behind Gatehouse's login, a clean stop on SIGINT, and a second
// start on the same data that reuses what the first one created.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DEMO_NAMES, managementApi } from '../src/cli/demo.ts';
import { type CliProcess, killAllCli, startCli } from '../test/support/cli.ts';
import { tempDir } from '../test/support/databases.ts';
import { freePort } from '../test/support/ports.ts';
import { fetchVia } from './shared/connect.ts';

const dir = tempDir('gatehouse-demo-');
afterAll(async () => {
  await killAllCli();
  dir.cleanup();
});

async function waitForStdout(cli: CliProcess, pattern: RegExp, timeoutMs = 45_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pattern.test(cli.stdout())) {
    if (cli.child.exitCode !== null) throw new Error(`demo exited early:\n${cli.stdout()}\n${cli.stderr()}`);
    if (Date.now() > deadline) throw new Error(`no ${pattern} on stdout:\n${cli.stdout()}\n${cli.stderr()}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe('gatehouse demo', () => {
  it('starts, seeds, guards the wiki, stops on SIGINT and starts again on the same data', async () => {
    const port = await freePort();
    const args = [
      'demo',
      '--port',
      String(port),
      '--data-dir',
      'demo-data',
      '--wiki-port',
      String(await freePort()),
      '--dashboard-port',
      String(await freePort()),
      '--mcp-port',
      String(await freePort()),
      '--mcp-saas-port',
      String(await freePort()),
    ];
    const listen = `127.0.0.1:${port}`;
    const teamDomain = `http://auth.localhost:${port}`;
    const connect = fetchVia(listen);

    const seeded = async () => {
      const { admin } = JSON.parse(readFileSync(path.join(dir.dir, 'demo-data', 'demo-tokens.json'), 'utf8'));
      const api = managementApi(connect, `${teamDomain}/client/v4`, admin);
      const [account] = await api<{ id: string }[]>('GET', '/accounts');
      const apps = await api<{ name: string; aud?: string; domain?: string }[]>(
        'GET',
        `/accounts/${account!.id}/access/apps?per_page=50`,
      );
      const policies = await api<{ name: string }[]>(
        'GET',
        `/accounts/${account!.id}/access/policies?per_page=50`,
      );
      return { apps, policies };
    };

    const first = startCli(args, { cwd: dir.dir, timeoutMs: 90_000 });
    await waitForStdout(first, /Gatehouse demo is ready\./);
    expect(first.stdout()).toContain(`http://wiki.localhost:${port}/`);
    expect(first.stdout()).toContain(`http://mcp.localhost:${port}/mcp`);
    const before = await seeded();
    expect(before.apps.map((a) => a.name).sort()).toEqual(
      [DEMO_NAMES.dashboard, DEMO_NAMES.mcp, DEMO_NAMES.mcpSaas, DEMO_NAMES.wiki].sort(),
    );
    expect(before.apps.find((a) => a.name === DEMO_NAMES.wiki)?.domain).toBe('wiki.localhost');

    // A browser without a session is sent to the team domain's login for the wiki.
    const wiki = await connect(`http://wiki.localhost:${port}/`, {
      headers: { accept: 'text/html' },
      redirect: 'manual',
    });
    expect(wiki.status).toBe(302);
    expect(wiki.headers.get('location')).toMatch(
      new RegExp(`^${teamDomain}/cdn-cgi/access/login/wiki\\.localhost:${port}\\?`),
    );

    first.child.kill('SIGINT');
    const stopped = await first.exited;
    expect(stopped.code).toBe(0);
    expect(stopped.stdout).toContain('Gatehouse demo stopped.');

    const second = startCli(args, { cwd: dir.dir, timeoutMs: 90_000 });
    await waitForStdout(second, /Gatehouse demo is ready\./);
    const after = await seeded();
    // Same objects, none duplicated: the wiki keeps its AUD, so its origin keeps trusting it.
    expect(after.apps.map((a) => [a.name, a.aud])).toEqual(before.apps.map((a) => [a.name, a.aud]));
    expect(after.policies.map((p) => p.name).sort()).toEqual(before.policies.map((p) => p.name).sort());
    const again = await connect(`http://wiki.localhost:${port}/`, {
      headers: { accept: 'text/html' },
      redirect: 'manual',
    });
    expect(again.status).toBe(302);
    second.child.kill('SIGTERM');
    expect((await second.exited).code).toBe(0);
  }, 180_000);
});
