// `gatehouse start --workers 2` on SQLite: a change written through the API (served by one worker)
// reaches the snapshot of every worker, so every connection sees the new decision.
import Cloudflare from 'cloudflare';
import { afterAll, describe, expect, it } from 'vitest';
import { killAllCli, runCli, startCli } from '../support/cli.ts';
import { tempDir } from '../support/databases.ts';
import { freePort } from '../support/ports.ts';
import { send, startOrigin } from './support.ts';

afterAll(() => killAllCli());

describe('--workers', () => {
  it('runs several processes on one listener and hands every change to all of them', async () => {
    const temp = tempDir('gatehouse-workers-');
    const origin = await startOrigin();
    try {
      const port = await freePort();
      const team = `http://127.0.0.1:${port}`;
      const common = ['--data-dir', 'data', '--listen', `127.0.0.1:${port}`, '--team-domain', team];
      const created = await runCli(
        [
          'api-token',
          'create',
          '--name',
          'workers',
          '--permission',
          'Access: Apps and Policies Write',
          '--permission',
          'Cloudflare Tunnel Write',
          '--data-dir',
          'data',
        ],
        { cwd: temp.dir, timeoutMs: 60_000 },
      );
      expect(created.code).toBe(0);
      const gatehouse = startCli(['start', '--workers', '2', ...common], {
        cwd: temp.dir,
        timeoutMs: 150_000,
      });
      await gatehouse.waitForStderr(/started workers/, 60_000);
      // Both workers are listening when both said so.
      await waitFor(() => (gatehouse.stderr().match(/Gatehouse is running/g) ?? []).length === 2, 60_000);

      const client = new Cloudflare({
        apiToken: created.stdout.trim(),
        baseURL: `${team}/client/v4`,
        maxRetries: 0,
      });
      const account_id = (await client.accounts.list()).result[0]!.id;
      // Fresh connections: the cluster spreads them over the workers.
      const statuses = async () =>
        Promise.all(Array.from({ length: 12 }, () => send(port, { host: 'wiki.workers.test' }))).then(
          (responses) => responses.map((response) => response.status),
        );
      expect(new Set(await statuses())).toEqual(new Set([404]));

      let tunnelId = '';
      for await (const tunnel of client.zeroTrust.tunnels.cloudflared.list({ account_id }))
        tunnelId = tunnel.id!;
      await client.zeroTrust.tunnels.cloudflared.configurations.update(tunnelId, {
        account_id,
        config: {
          ingress: [
            { hostname: 'wiki.workers.test', service: origin.url },
            { service: 'http_status:404' },
          ] as {
            hostname: string;
            service: string;
          }[],
        },
      });
      const open = await client.zeroTrust.access.policies.create({
        account_id,
        name: 'open',
        decision: 'bypass',
        include: [{ everyone: {} }],
      });
      await client.zeroTrust.access.applications.create({
        account_id,
        type: 'self_hosted',
        name: 'wiki',
        domain: 'wiki.workers.test',
        policies: [open.id!],
      } as never);
      // Without the relay the worker that did not serve these writes would keep answering 404.
      await waitFor(async () => (await statuses()).every((status) => status === 200), 5_000);

      const stopped = await gatehouse.stop('SIGTERM');
      expect(stopped.code).toBe(0);
      expect(stopped.stderr).toContain('stopped');
    } finally {
      await origin.close();
      temp.cleanup();
    }
  }, 180_000);
});

async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
