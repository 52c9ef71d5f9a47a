// nginx for the benchmarks (`apt-get install -y nginx-light`): an outside anchor in bench/proxy
// (nginx in front of the origin) and the load balancer in bench/multinode (nginx in front of
// Gatehouse nodes). One worker process, keep-alive to the upstreams, no access log; everything
// lives in a temporary prefix removed on exit.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

export function has(command: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** `argv` run on one CPU when taskset exists (bench/README.md: pinning keeps runs comparable). */
export const pin = (cpu: number, argv: string[]) =>
  has('taskset') ? ['taskset', '-c', String(cpu), ...argv] : argv;

export interface NginxListener {
  port: number;
  /** Upstream ports on 127.0.0.1, balanced round-robin. */
  upstreams: number[];
  /** Forward the client's Host header (Gatehouse routes on it); nginx's default is the upstream's. */
  keepHost?: boolean;
}

export interface Nginx {
  /** The worker that serves (its CPU is what counts). */
  workerPid: number;
  process: ChildProcess;
  stop(): void;
}

/** Starts nginx with one server block per listener; null when nginx is not installed. */
export async function startNginx(
  listeners: NginxListener[],
  cpu: number | null = null,
): Promise<Nginx | null> {
  if (!has('nginx')) return null;
  const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-nginx-'));
  const blocks = listeners.map(
    ({ port, upstreams, keepHost }, i) => `
  upstream u${i} { ${upstreams.map((up) => `server 127.0.0.1:${up};`).join(' ')} keepalive 64; }
  server { listen 127.0.0.1:${port}; location / { proxy_pass http://u${i}; proxy_http_version 1.1;
    proxy_set_header Connection "";${keepHost ? ' proxy_set_header Host $http_host;' : ''} } }`,
  );
  writeFileSync(
    path.join(dir, 'nginx.conf'),
    `worker_processes 1; daemon off; pid ${dir}/nginx.pid; error_log ${dir}/error.log;
events { worker_connections 1024; }
http { access_log off;
  client_body_temp_path ${dir}; proxy_temp_path ${dir}; fastcgi_temp_path ${dir}; uwsgi_temp_path ${dir}; scgi_temp_path ${dir};${blocks.join('')}
}
`,
  );
  const argv = ['nginx', '-e', path.join(dir, 'error.log'), '-p', dir, '-c', path.join(dir, 'nginx.conf')];
  const [command, ...rest] = cpu === null ? argv : pin(cpu, argv);
  const child = spawn(command!, rest, { stdio: 'ignore' });
  const stop = () => {
    child.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  };
  process.on('exit', stop);
  for (let i = 0; i < 50; i++) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    try {
      const master = Number(readFileSync(path.join(dir, 'nginx.pid'), 'utf8'));
      const worker = execFileSync('pgrep', ['-P', String(master)])
        .toString()
        .trim()
        .split('\n')[0];
      if (worker) return { workerPid: Number(worker), process: child, stop };
    } catch {
      // not up yet
    }
  }
  let log = '';
  try {
    log = readFileSync(path.join(dir, 'error.log'), 'utf8');
  } catch {
    // nginx wrote nothing
  }
  stop();
  throw new Error(`nginx did not start within 5 s:\n${log}`);
}
