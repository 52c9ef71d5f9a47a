// Fail-static: PostgreSQL goes away under two running nodes. They keep authorising from their
// last snapshot and keys, /readyz says degraded and why, API writes get 503 in Cloudflare's
// envelope, a node started meanwhile retries and says so; when the database returns, writes
// work again and reach every node, and the late node starts.
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import { killAllCli } from '../support/cli.ts';
import { postgresServerUrl } from '../support/databases.ts';
import {
  type PrivatePostgres,
  privatePostgresUnavailable,
  startPrivatePostgres,
} from './private-postgres.ts';
import { type Cluster, hit, startCluster, startOrigin, waitUntil } from './support.ts';

const skipReason = postgresServerUrl
  ? privatePostgresUnavailable()
  : 'multi-node tests need PostgreSQL: set GATEHOUSE_TEST_DATABASE_URL';

describe.skipIf(skipReason !== null)(`fail-static${skipReason ? ` (skipped: ${skipReason})` : ''}`, () => {
  let server: PrivatePostgres;
  let origin: Awaited<ReturnType<typeof startOrigin>>;
  let cluster: Cluster;
  let token: { id: string; client_id: string; client_secret: string };
  const APP = 'app.test';
  const withToken = () => ({
    'cf-access-client-id': token.client_id,
    'cf-access-client-secret': token.client_secret,
  });

  beforeAll(async () => {
    server = await startPrivatePostgres();
    origin = await startOrigin();
    cluster = await startCluster({
      databaseUrl: server.url,
      nodes: 2,
      config: { ingress: [{ hostname: APP, service: origin.url }, { service: 'http_status:404' }] },
    });
    token = (await cluster.api(cluster.nodes[0]!, 'POST', '/service_tokens', { name: 'robot' })).body.result;
    const app = await cluster.api(cluster.nodes[0]!, 'POST', '/apps', {
      type: 'self_hosted',
      name: 'App',
      domain: APP,
      policies: [
        { name: 'robots', decision: 'non_identity', include: [{ service_token: { token_id: token.id } }] },
      ],
    });
    expect(app.status).toBe(201);
    for (const node of cluster.nodes) {
      await waitUntil(
        async () => (await hit(node.base, APP, '/', withToken())).status === 200,
        5000,
        'allowed',
      );
    }
  }, 300_000);

  afterAll(async () => {
    await cluster?.close();
    // Backstop: any child still running (e.g. a start that failed half-way) is killed too.
    await killAllCli();
    await origin?.close();
    server?.destroy();
  });

  it('keeps authorising, reports degraded, refuses writes with 503, then resynchronises', async () => {
    const [a, b] = cluster.nodes as [Cluster['nodes'][0], Cluster['nodes'][0]];
    onTestFailed(() => {
      for (const node of cluster.nodes)
        console.error(`node ${node.name} stderr (end):\n${node.process.stderr().slice(-4000)}`);
    });
    server.stop();

    for (const node of cluster.nodes) {
      const ready = await waitUntil(
        async () => (await hit(node.base, cluster.teamHost, '/readyz')).status === 503,
        5000,
        'degraded',
      );
      expect(ready).toBeLessThan(5000);
      const answer = await hit(node.base, cluster.teamHost, '/readyz');
      expect(JSON.parse(answer.body)).toMatchObject({
        status: 'degraded',
        checks: { store: false, keys: true },
        reason: expect.stringMatching(/database unreachable/),
      });
    }
    // Requests are still authorised from the snapshot and keys, on both nodes, for a while.
    for (let round = 0; round < 5; round++) {
      for (const node of cluster.nodes) {
        const answer = await hit(node.base, APP, `/still-${round}`, withToken());
        expect(answer.status).toBe(200);
        expect(JSON.parse(answer.body).assertion).toMatch(/^ey/);
      }
      await new Promise((resolve) => setTimeout(resolve, 300));
    }
    // …and still refused when the credential is wrong: fail-static, not fail-open.
    expect(
      (await hit(a.base, APP, '/', { ...withToken(), 'cf-access-client-secret': 'wrong' })).status,
    ).not.toBe(200);
    // Writes: 503 in the Cloudflare envelope, nothing written.
    const write = await cluster.api(a, 'POST', '/service_tokens', { name: 'during-outage' });
    expect(write.status).toBe(503);
    expect(write.body).toEqual({
      success: false,
      errors: [{ code: 10503, message: expect.stringMatching(/database cannot be reached/) }],
      messages: [],
      result: null,
    });

    // A node starting now waits for the database and says so.
    const lateNode = await cluster.addNode();
    await lateNode.process.waitForStderr(/database unreachable at start; retrying/, 60_000);

    server.start();
    // Writes work again (the pool reconnects)…
    await waitUntil(
      async () => (await cluster.api(b, 'DELETE', `/service_tokens/${token.id}`)).status === 200,
      20_000,
      'write after the database returned',
    );
    // …and reach the other node through the re-established LISTEN: the deleted token is refused.
    await waitUntil(
      async () => (await hit(a.base, APP, '/', withToken())).status !== 200,
      5000,
      'resync on A',
    );
    for (const node of [a, b]) {
      await waitUntil(
        async () => (await hit(node.base, cluster.teamHost, '/readyz')).status === 200,
        15_000,
        'ready again',
      );
    }
    // The late node started once the database answered, with the current configuration.
    await lateNode.process.waitForStderr(/Gatehouse is running/, 60_000);
    expect((await hit(lateNode.base, APP, '/', withToken())).status).not.toBe(200);
    expect((await hit(lateNode.base, cluster.teamHost, '/readyz')).status).toBe(200);
  }, 180_000);
});
