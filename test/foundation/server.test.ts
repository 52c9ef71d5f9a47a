// The one listener and its Host dispatch: health and certs on the team domain, a 404 that
// names nothing for unknown hosts, `--api-listen` limited to health and /client/v4, and a
// graceful shutdown that finishes requests in flight and refuses new connections.
import http from 'node:http';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { normaliseHost } from '../../src/server.ts';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { freePort } from '../support/ports.ts';

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** A request to `base` (the listener) with any Host header and a raw, unnormalised path. */
function request(
  base: string,
  rawPath: string,
  options: { host?: string; agent?: http.Agent; method?: string } = {},
): Promise<Answer> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: url.hostname,
        port: url.port,
        path: rawPath,
        method: options.method ?? 'GET',
        headers: { host: options.host ?? url.host, accept: 'text/html,application/json' },
        agent: options.agent ?? false,
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          body += chunk;
        });
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/** Resolves with the connection error code, or 'connected' when the port accepted. */
function tryConnect(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve('connected');
    });
    socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? 'error'));
  });
}

/** Sends bytes as they are and returns everything the server answers before closing. */
function rawRequest(port: number, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => socket.end(text));
    let answer = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      answer += chunk;
    });
    socket.on('end', () => resolve(answer));
    socket.on('error', reject);
  });
}

function expectRevealsNothing(answer: Answer): void {
  expect(answer.status).toBe(404);
  expect(answer.headers['content-type']).toMatch(/^text\/plain/);
  const everything = `${answer.body}\n${JSON.stringify(answer.headers)}`.toLowerCase();
  for (const word of ['gatehouse', 'fastify', 'cdn-cgi', 'client/v4', 'route', 'stack', 'node', 'express']) {
    expect(everything).not.toContain(word);
  }
  expect(answer.body).not.toMatch(/\/[a-z]/i); // no paths
  expect(answer.body.length).toBeLessThan(64);
  expect(answer.headers['x-powered-by']).toBeUndefined();
  expect(answer.headers.server).toBeUndefined();
}

describe('listeners', () => {
  let tg: TestGateway;
  let apiBase: string;

  beforeAll(async () => {
    const apiPort = await freePort();
    apiBase = `http://127.0.0.1:${apiPort}`;
    tg = await startTestGateway({ settings: { apiListen: `127.0.0.1:${apiPort}` } });
  });
  afterAll(async () => {
    await tg?.close();
  });

  it('/healthz answers 200 on the team domain', async () => {
    const answer = await request(tg.url, '/healthz');
    expect(answer.status).toBe(200);
    expect(JSON.parse(answer.body)).toEqual({ status: 'ok' });
  });

  it('/readyz answers 200 with its checks', async () => {
    const answer = await request(tg.url, '/readyz');
    expect(answer.status).toBe(200);
    expect(JSON.parse(answer.body)).toEqual({ status: 'ready', checks: { store: true, keys: true } });
  });

  it('/cdn-cgi/access/certs is served on the team domain, with its current key', async () => {
    const answer = await request(tg.url, '/cdn-cgi/access/certs');
    expect(answer.status).toBe(200);
    const certs = JSON.parse(answer.body) as { public_cert: { kid: string } };
    expect(certs.public_cert.kid).toBe(tg.gateway.keys.signingKey().kid);
  });

  it('matches the team domain whatever the case of the Host header', async () => {
    const host = new URL(tg.url).host;
    expect((await request(tg.url, '/healthz', { host: ` ${host.toUpperCase()}` })).status).toBe(200);
  });

  it('an unknown Host gets a plain 404 that reveals nothing, whatever the path', async () => {
    for (const path of [
      '/',
      '/healthz',
      '/cdn-cgi/access/certs',
      '/client/v4/accounts',
      '/../../etc/passwd',
    ]) {
      expectRevealsNothing(await request(tg.url, path, { host: 'unknown.example.com' }));
    }
    // No Host at all (HTTP/1.0) is no better.
    const raw = await rawRequest(Number(new URL(tg.url).port), 'GET /healthz HTTP/1.0\r\n\r\n');
    expect(raw).toMatch(/^HTTP\/1\.[01] 404 /);
    const [head, body] = raw.split('\r\n\r\n') as [string, string];
    expect(body).toBe('Not found\n');
    expect(head.toLowerCase()).not.toContain('gatehouse');
  });

  it('--api-listen serves /healthz and /readyz', async () => {
    const health = await request(apiBase, '/healthz');
    expect(health.status).toBe(200);
    expect(JSON.parse(health.body)).toEqual({ status: 'ok' });
    expect((await request(apiBase, '/readyz')).status).toBe(200);
  });

  it('--api-listen hands /client/v4 paths to the same app as the team domain', async () => {
    for (const path of ['/client/v4/accounts', '/client/v4', '/client/v4/user/tokens/verify']) {
      const viaApi = await request(apiBase, path);
      const viaTeam = await request(tg.url, path);
      expect({ status: viaApi.status, body: viaApi.body }).toEqual({
        status: viaTeam.status,
        body: viaTeam.body,
      });
    }
  });

  it('--api-listen answers every other path with the plain 404, even ones that start alike', async () => {
    for (const path of [
      '/',
      '/cdn-cgi/access/certs',
      '/client/v4-evil',
      '/client/v40/accounts',
      '/client/v4/../../cdn-cgi/access/certs',
      '/client/v4/%2e%2e/%2e%2e/cdn-cgi/access/certs',
      '/CLIENT/V4/accounts',
    ]) {
      const answer = await request(apiBase, path);
      if (path.startsWith('/client/v4/')) {
        // Reaches the API app, which must not resolve it to the certs route.
        expect(answer.body).not.toContain('public_cert');
        expect(answer.status).toBeGreaterThanOrEqual(400);
      } else {
        expectRevealsNothing(answer);
      }
    }
  });
});

describe('normaliseHost', () => {
  it('folds case, drops the default port and a fully qualified trailing dot', () => {
    expect(normaliseHost('Auth.Example.com', '443')).toBe('auth.example.com');
    expect(normaliseHost('auth.example.com:443', '443')).toBe('auth.example.com');
    expect(normaliseHost('auth.example.com:8443', '443')).toBe('auth.example.com:8443');
    expect(normaliseHost('auth.example.com.', '443')).toBe('auth.example.com');
    expect(normaliseHost('auth.example.com.:443', '443')).toBe('auth.example.com');
    expect(normaliseHost('auth.example.com.:8443', '443')).toBe('auth.example.com:8443');
    expect(normaliseHost('[::1]:8080', '80')).toBe('[::1]:8080');
    expect(normaliseHost(undefined, '80')).toBeNull();
    expect(normaliseHost('', '80')).toBeNull();
  });
});

describe('graceful shutdown', () => {
  it('finishes a slow request in flight, refuses new connections, and then closes', async () => {
    let started!: () => void;
    const inFlight = new Promise<void>((resolve) => {
      started = resolve;
    });
    const apiPort = await freePort();
    const tg = await startTestGateway({
      settings: { apiListen: `127.0.0.1:${apiPort}` },
      server: {
        appHosts: (_req, res, host) => {
          if (host !== 'slow.example.com') return false;
          started();
          setTimeout(() => {
            res.writeHead(200, { 'content-type': 'text/plain' });
            res.end('slow and complete');
          }, 400);
          return true;
        },
      },
    });
    const port = Number(new URL(tg.url).port);
    // A keep-alive client, as browsers and proxies are: its connection stays open after the answer.
    const agent = new http.Agent({ keepAlive: true });
    try {
      const slow = request(tg.url, '/report', { host: 'slow.example.com', agent });
      await inFlight;
      let closed = false;
      const closing = tg.server.close().then(() => {
        closed = true;
      });

      // Both listeners stop accepting at once, while the slow request is still running.
      expect(await tryConnect(port)).toBe('ECONNREFUSED');
      expect(await tryConnect(apiPort)).toBe('ECONNREFUSED');
      expect(closed).toBe(false);

      const answer = await slow;
      const answeredAt = Date.now();
      expect(answer.status).toBe(200);
      expect(answer.body).toBe('slow and complete');
      await closing;
      // The client's keep-alive connection went idle with the answer and was closed then; close()
      // did not sit out the 5 s keep-alive timeout (nor the 10 s drain limit).
      expect(Date.now() - answeredAt).toBeLessThan(4000);
      expect(await tryConnect(port)).toBe('ECONNREFUSED');
      expect(await tryConnect(apiPort)).toBe('ECONNREFUSED');
      // The store was closed with the server.
      expect(await tg.gateway.store.ping()).toBe(false);
    } finally {
      agent.destroy();
      await tg.database.cleanup();
    }
  });
});

describe('shutdown with upgraded connections', () => {
  it('cuts a WebSocket left open once the drain limit passes, instead of waiting forever', async () => {
    const tg = await startTestGateway({
      server: {
        drainTimeoutMs: 300,
        appUpgrades: (_req, socket, _head, host) => {
          if (host !== 'ws.example.com') return false;
          socket.write(
            'HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\r\n',
          );
          return true; // and then never closes it, like a long-lived WebSocket
        },
      },
    });
    const port = Number(new URL(tg.url).port);
    const client = net.connect(port, '127.0.0.1');
    try {
      const clientClosed = new Promise<void>((resolve) => client.once('close', () => resolve()));
      client.on('error', () => {});
      const switched = new Promise<string>((resolve) => {
        let text = '';
        client.setEncoding('utf8').on('data', (chunk: string) => {
          text += chunk;
          if (text.includes('\r\n\r\n')) resolve(text);
        });
      });
      client.write(
        'GET /socket HTTP/1.1\r\nhost: ws.example.com\r\nconnection: Upgrade\r\nupgrade: websocket\r\n' +
          'sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
      );
      expect(await switched).toMatch(/^HTTP\/1\.1 101 /);

      await tg.server.close();
      await clientClosed;
      expect(client.destroyed).toBe(true);
      expect(await tryConnect(port)).toBe('ECONNREFUSED');
    } finally {
      client.destroy();
      await tg.database.cleanup();
    }
  });
});
