// A small round-robin HTTP load balancer in front of several Gatehouse nodes, as an operator
// would put nginx or a cloud balancer (docs/deploy.md). Strict alternation, no stickiness: each
// request, redirect step included, lands on the next node. Counts what each node served.
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Balancer {
  port: number;
  /** Requests forwarded to each target, by index. */
  served: number[];
  close(): Promise<void>;
}

export async function startBalancer(targets: number[], port = 0): Promise<Balancer> {
  const served = targets.map(() => 0);
  let next = 0;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
  const server = http.createServer((req, res) => {
    const index = next;
    next = (next + 1) % targets.length;
    served[index]! += 1;
    const upstream = http.request(
      {
        host: '127.0.0.1',
        port: targets[index],
        method: req.method,
        path: req.url,
        headers: req.headers,
        agent,
      },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.rawHeaders);
        answer.pipe(res);
      },
    );
    upstream.on('error', () => {
      if (!res.headersSent) res.writeHead(502);
      res.end();
    });
    req.pipe(upstream);
  });
  server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    served,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        agent.destroy();
        server.close(() => resolve());
      }),
  };
}
