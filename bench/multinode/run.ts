// Multi-node benchmark: `GATEHOUSE_TEST_DATABASE_URL=postgres://… npx tsx bench/multinode/run.ts`
// (needs wrk and nginx). Real `gatehouse start` nodes on one fresh PostgreSQL database, each
// pinned to its own CPU (node i on CPU i mod nproc), a service-token request proxied to a
// loopback origin, measured with `wrk -t1 -c32`:
//   1. one node, direct;  2. nginx (round robin) over one node;  3. nginx over two nodes.
// Scaling is (3) / (2): the same balancer, one node (and its CPU) more. Interleaved rounds,
// medians. wrk, nginx and the origin are not pinned: they share the CPUs (see README.md).
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { hit, startCluster, startOrigin, waitUntil } from '../../test/multinode/support.ts';
import { createTestDatabase } from '../../test/support/databases.ts';
import { freePort } from '../../test/support/ports.ts';
import { startNginx } from '../nginx.ts';

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
  // Each node gets a CPU of its own, so a second node brings a second CPU (on two cores, all).
  const cpus = Number(execFileSync('nproc', { encoding: 'utf8' }).trim());
  cluster.nodes.forEach((node, i) => {
    execFileSync('taskset', ['-a', '-cp', String(i % cpus), String(node.process.child.pid)], {
      stdio: 'ignore',
    });
  });
  const ports = { one: await freePort(), two: await freePort() };
  const nginx = await startNginx([
    { port: ports.one, upstreams: [cluster.nodes[0]!.port], keepHost: true },
    { port: ports.two, upstreams: cluster.nodes.map((node) => node.port), keepHost: true },
  ]);
  if (!nginx) throw new Error('nginx is needed: apt-get install -y nginx-light');
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
      'nginx -> one node': `http://127.0.0.1:${ports.one}/`,
      'nginx -> two nodes': `http://127.0.0.1:${ports.two}/`,
    };
    const results: Record<string, number[]> = Object.fromEntries(
      Object.keys(targets).map((name) => [name, []]),
    );
    for (const url of Object.values(targets)) await wrk(url, headers); // warm-up
    for (let round = 0; round < ROUNDS; round++) {
      for (const [name, url] of Object.entries(targets)) results[name]!.push(await wrk(url, headers));
    }
    console.log(
      `cores: ${cpus}, load average: ${execFileSync('cat', ['/proc/loadavg'], { encoding: 'utf8' }).trim()}`,
    );
    for (const [name, values] of Object.entries(results)) {
      console.log(
        `${name.padEnd(24)} ${median(values).toFixed(0).padStart(7)} req/s  (rounds: ${values.map((v) => v.toFixed(0)).join(', ')})`,
      );
    }
    const ratio = median(results['nginx -> two nodes']!) / median(results['nginx -> one node']!);
    console.log(`two nodes / one node behind the same balancer: ${ratio.toFixed(2)}x`);
  } finally {
    nginx.stop();
    await cluster.close();
    await origin.close();
    await database.cleanup();
  }
}

await main();
