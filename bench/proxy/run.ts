// Proxy benchmark: `npx tsx bench/proxy/run.ts [--baseline <other checkout>] [--rounds N]` (needs
// wrk; nginx is optional: `apt-get install -y wrk nginx-light`). Loopback only, about three
// minutes. With --baseline, that checkout's gatehouse server is measured in the same run
// (before/after). The gateway runs with the node flags of bin/gatehouse.js's `#!` line.
// Setup as in spec/stack.md §4: the server under test alone on CPU 1 (taskset), wrk and the
// origin on CPU 0; `wrk -t1 -c32 -d5s --latency`; 3 interleaved rounds (--rounds) after a
// warm-up; medians, and ratios to the reference paired per round. CPU µs/request = the server
// process's utime+stime from /proc/<pid>/stat / requests.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../../test/support/ports.ts';
import { has, pin, startNginx } from '../nginx.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const ROUNDS = roundsOption();
const SECONDS = 5;
const CONNECTIONS = 32;
const CLOCK_TICKS = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;

const children: ChildProcess[] = [];
const stopAtEnd: (() => void)[] = [];
function stopAll(): void {
  for (const child of children) child.kill('SIGTERM');
  for (const stop of stopAtEnd.splice(0)) stop();
}
process.on('exit', stopAll);

/** `--rounds N` (default 3): more interleaved rounds when the machine is noisy. */
function roundsOption(): number {
  const at = process.argv.indexOf('--rounds');
  if (at === -1) return 3;
  const rounds = Number(process.argv[at + 1]);
  if (!Number.isInteger(rounds) || rounds < 1 || rounds > 50) throw new Error('--rounds takes 1 to 50');
  return rounds;
}

/**
 * The node flags on a checkout's bin/gatehouse.js `#!` line (`#!/usr/bin/env -S node <flags>`):
 * the gateway is measured as `npx gatehouse start` runs it (a --baseline checkout's with its own
 * bin's flags). The origin and the reference proxy run with Node's defaults, which suit a
 * minimal proxy better (bench/README.md: with the gateway's flags the reference got slower).
 */
function binNodeFlags(root: string): string[] {
  const shebang = readFileSync(path.join(root, 'bin/gatehouse.js'), 'utf8').split('\n', 1)[0]!.trim();
  const words = shebang.split(/\s+/);
  if (!shebang.startsWith('#!') || !words.includes('node')) {
    throw new Error(`${root}/bin/gatehouse.js does not start with a #!…node line: ${shebang}`);
  }
  return words.slice(words.indexOf('node') + 1);
}
const GATEWAY_NODE_FLAGS = binNodeFlags(path.resolve(here, '../..'));

/** Starts `servers.ts <mode>` as a plain node process (tsx as an import hook, no extra process). */
async function startNode(
  cpu: number,
  mode: string,
  ...args: string[]
): Promise<Record<string, string> & { pid: number }> {
  const nodeFlags = mode === 'gatehouse' ? GATEWAY_NODE_FLAGS : [];
  return startServers(path.join(here, 'servers.ts'), nodeFlags, cpu, mode, ...args);
}

/** `servers.ts` of this tree, or of another checkout (`--baseline <dir>`: before/after in one run). */
async function startServers(
  script: string,
  nodeFlags: string[],
  cpu: number,
  mode: string,
  ...args: string[]
): Promise<Record<string, string> & { pid: number }> {
  const [command, ...rest] = pin(cpu, [
    process.execPath,
    ...nodeFlags,
    '--import',
    'tsx',
    script,
    mode,
    ...args,
  ]);
  const child = spawn(command!, rest, { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  return new Promise((resolve, reject) => {
    let buffered = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      const line = buffered.split('\n')[0];
      if (buffered.includes('\n') && line) resolve(JSON.parse(line));
    });
    child.once('exit', (code) => reject(new Error(`${mode} exited with ${code}`)));
  });
}

function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]);
}

interface Run {
  rps: number;
  p99ms: number;
  cpuUsPerRequest: number;
}

function wrk(
  port: number,
  headers: string[],
  seconds: number,
): { rps: number; requests: number; p99ms: number } {
  const args = ['-t1', `-c${CONNECTIONS}`, `-d${seconds}s`, '--latency'];
  for (const header of headers) args.push('-H', header);
  args.push(`http://127.0.0.1:${port}/`);
  const [command, ...rest] = pin(0, ['wrk', ...args]);
  const out = execFileSync(command!, rest).toString();
  const requests = Number(/(\d+) requests in/.exec(out)?.[1]);
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]);
  const p99 = /99%\s+([\d.]+)(us|ms|s)/.exec(out);
  const p99ms = p99 ? Number(p99[1]) * (p99[2] === 'us' ? 0.001 : p99[2] === 's' ? 1000 : 1) : Number.NaN;
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(out);
  if (non2xx) throw new Error(`wrk saw ${non2xx[1]} error responses on port ${port}`);
  return { rps, requests, p99ms };
}

function measure(pid: number, port: number, headers: string[]): Run {
  const before = cpuTicks(pid);
  const { rps, requests, p99ms } = wrk(port, headers, SECONDS);
  const ticks = cpuTicks(pid) - before;
  return { rps, p99ms, cpuUsPerRequest: (ticks * 1_000_000) / CLOCK_TICKS / requests };
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

async function main(): Promise<void> {
  if (!has('wrk')) {
    process.stderr.write('wrk is not installed (apt-get install -y wrk); nothing to measure\n');
    return;
  }
  const originPort = await freePort();
  const origin = await startNode(0, 'origin', String(originPort));
  const referencePort = await freePort();
  const reference = await startNode(1, 'reference', String(referencePort), String(originPort));
  const gatehousePort = await freePort();
  const gatehouse = await startNode(1, 'gatehouse', String(gatehousePort), String(originPort));
  const baselineDir = process.argv.includes('--baseline')
    ? process.argv[process.argv.indexOf('--baseline') + 1]
    : undefined;
  const baselinePort = await freePort();
  const baseline = baselineDir
    ? await startServers(
        path.resolve(baselineDir, 'bench/proxy/servers.ts'),
        binNodeFlags(path.resolve(baselineDir)),
        1,
        'gatehouse',
        String(baselinePort),
        String(originPort),
      )
    : null;
  const nginxPort = await freePort();
  const nginx = await startNginx([{ port: nginxPort, upstreams: [originPort] }], 1);
  // nginx runs in the foreground as this process's child: stop it, or the bench never exits.
  if (nginx) stopAtEnd.push(nginx.stop);
  const nginxPid = nginx?.workerPid ?? null;
  if (nginxPid === null) process.stderr.write('nginx not installed: the outside anchor is left out\n');

  const appHost = 'Host: app.test';
  const configs: { name: string; pid: number; port: number; headers: string[] }[] = [
    { name: 'origin direct', pid: origin.pid, port: originPort, headers: [] },
    ...(nginxPid ? [{ name: 'nginx → origin', pid: nginxPid, port: nginxPort, headers: [] }] : []),
    { name: 'reference undici proxy (no auth)', pid: reference.pid, port: referencePort, headers: [] },
    {
      name: 'Gatehouse, cookie app token',
      pid: gatehouse.pid,
      port: gatehousePort,
      headers: [appHost, `Cookie: CF_Authorization=${gatehouse.session}`],
    },
    {
      name: 'Gatehouse, service token',
      pid: gatehouse.pid,
      port: gatehousePort,
      headers: [
        appHost,
        `CF-Access-Client-Id: ${gatehouse.clientId}`,
        `CF-Access-Client-Secret: ${gatehouse.secret}`,
      ],
    },
    {
      name: 'Gatehouse, linked token (flow 1)',
      pid: gatehouse.pid,
      port: gatehousePort,
      headers: [appHost, `Cf-Access-Token: ${gatehouse.linked}`],
    },
    ...(baseline
      ? [
          {
            name: 'baseline Gatehouse, cookie app token',
            pid: baseline.pid,
            port: baselinePort,
            headers: [appHost, `Cookie: CF_Authorization=${baseline.session}`],
          },
          {
            name: 'baseline Gatehouse, service token',
            pid: baseline.pid,
            port: baselinePort,
            headers: [
              appHost,
              `CF-Access-Client-Id: ${baseline.clientId}`,
              `CF-Access-Client-Secret: ${baseline.secret}`,
            ],
          },
          {
            name: 'baseline Gatehouse, linked token (flow 1)',
            pid: baseline.pid,
            port: baselinePort,
            headers: [appHost, `Cf-Access-Token: ${baseline.linked}`],
          },
        ]
      : []),
  ];
  for (const config of configs) wrk(config.port, config.headers, 2); // warm-up (JIT, pools, caches)
  const runs = new Map<string, Run[]>(configs.map((config) => [config.name, []]));
  for (let round = 0; round < ROUNDS; round++) {
    for (const config of configs)
      runs.get(config.name)!.push(measure(config.pid, config.port, config.headers));
  }
  // Ratios pair each round with the reference's run in the same round, then take the median: on a
  // machine whose speed drifts (a shared host), a slow stretch then moves both sides of a ratio.
  const reference_ = runs.get('reference undici proxy (no auth)')!;
  const ratio = (list: Run[], field: keyof Run) =>
    median(list.map((run, round) => run[field] / reference_[round]![field]));
  const lines = [
    `| config | req/s (median of ${ROUNDS}) | runs | p99 ms | CPU µs/req | req/s vs ref | CPU vs ref | p99 vs ref |`,
    '|---|---|---|---|---|---|---|---|',
  ];
  for (const config of configs) {
    const list = runs.get(config.name)!;
    const rps = median(list.map((run) => run.rps));
    const cpu = median(list.map((run) => run.cpuUsPerRequest));
    const p99 = median(list.map((run) => run.p99ms));
    lines.push(
      `| ${config.name} | ${Math.round(rps).toLocaleString('en')} | ${list.map((run) => `${(run.rps / 1000).toFixed(1)}k`).join(', ')} | ${p99.toFixed(2)} | ${cpu.toFixed(1)} | ${ratio(list, 'rps').toFixed(2)} | ${ratio(list, 'cpuUsPerRequest').toFixed(2)} | ${ratio(list, 'p99ms').toFixed(2)} |`,
    );
  }
  process.stdout.write(`${lines.join('\n')}\n`);
}

main()
  .catch((error) => {
    process.stderr.write(`${(error as Error).stack}\n`);
    process.exitCode = 1;
  })
  .finally(stopAll);
