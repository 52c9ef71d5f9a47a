// Multi-node benchmark: `GATEHOUSE_TEST_DATABASE_URL=postgres://… npx tsx bench/multinode/run.ts`
// (needs wrk). Real `gatehouse start` nodes on one fresh PostgreSQL database, a service-token
// request proxied to a loopback origin, measured with `wrk -t1 -c32 -d5s`:
//   1. one node, direct;  2. the round-robin balancer over one node (its own cost);
//   3. the balancer over two nodes.
// Scaling is (3) / (2). Interleaved rounds, medians. Throughput only scales with free cores:
// on a 2-core machine the balancer, wrk, the origin and the nodes share them (see README.md).
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { startBalancer } from '../../test/multinode/balancer.ts';
import { hit, startCluster, startOrigin, waitUntil } from '../../test/multinode/support.ts';
import { createTestDatabase } from '../../test/support/databases.ts';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const APP = 'bench.test';

/** Asynchronous: the origin runs in this process and must keep answering while wrk runs. */
async function wrk(url: string, headers: Record<string, string>): Promise<number> {
  const args = ['-t1', '-c32', `-d${SECONDS}s`];
  for (const [name, value] of Object.entries(headers)) args.push('-H', `${name}: ${value}`);
  const { stdout: out } = await promisify(execFile)('wrk', [...args, url], { encoding: 'utf8' });
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(out)?.[1];
  const errors = /Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1];
  if (!rps || Number(rps) === 0) throw new Error(`wrk measured nothing:\n${out}`);
  if (errors) throw new Error(`wrk saw ${errors} non-2xx answers:\n${out}`);
  return Number(rps);
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

async function main(): Promise<void> {
  const database = await createTestDatabase('postgres');
  const origin = await startOrigin();
  const cluster = await startCluster({
    databaseUrl: database.url,
    nodes: 2,
    config: { ingress: [{ hostname: APP, service: origin.url }, { service: 'http_status:404' }] },
  });
  const single = await startBalancer([cluster.nodes[0]!.port]);
  try {
    const token = (await cluster.api(cluster.nodes[0]!, 'POST', '/service_tokens', { name: 'bench' })).body
      .result;
    await cluster.api(cluster.nodes[0]!, 'POST', '/apps', {
      type: 'self_hosted',
      name: 'Bench',
      domain: APP,
      policies: [
        { name: 'svc', decision: 'non_identity', include: [{ service_token: { token_id: token.id } }] },
      ],
    });
    const headers = {
      Host: APP,
      'CF-Access-Client-Id': token.client_id,
      'CF-Access-Client-Secret': token.client_secret,
    };
    for (const node of cluster.nodes) {
      await waitUntil(
        async () => (await hit(node.base, APP, '/', headers)).status === 200,
        5000,
        'app ready',
      );
    }
    const targets = {
      'one node, direct': `${cluster.nodes[0]!.base}/`,
      'balancer -> one node': `http://127.0.0.1:${single.port}/`,
      'balancer -> two nodes': `http://127.0.0.1:${cluster.balancer.port}/`,
    };
    const results: Record<string, number[]> = Object.fromEntries(
      Object.keys(targets).map((name) => [name, []]),
    );
    for (const url of Object.values(targets)) await wrk(url, headers); // warm-up
    for (let round = 0; round < ROUNDS; round++) {
      for (const [name, url] of Object.entries(targets)) results[name]!.push(await wrk(url, headers));
    }
    const cores = execFileSync('nproc', { encoding: 'utf8' }).trim();
    console.log(
      `cores: ${cores}, load average: ${execFileSync('cat', ['/proc/loadavg'], { encoding: 'utf8' }).trim()}`,
    );
    for (const [name, values] of Object.entries(results)) {
      console.log(
        `${name.padEnd(24)} ${median(values).toFixed(0).padStart(7)} req/s  (rounds: ${values.map((v) => v.toFixed(0)).join(', ')})`,
      );
    }
    const ratio = median(results['balancer -> two nodes']!) / median(results['balancer -> one node']!);
    console.log(`two nodes / one node behind the same balancer: ${ratio.toFixed(2)}x`);
  } finally {
    await single.close();
    await cluster.close();
    await origin.close();
    await database.cleanup();
  }
}

await main();
