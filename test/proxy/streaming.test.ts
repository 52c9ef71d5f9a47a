// The forwarding path: streaming both ways, WebSocket upgrades, limits and origin failures.
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../support/ports.ts';
import {
  API,
  app,
  appToken,
  BROWSER,
  type Origin,
  type ProxyHarness,
  policy,
  route,
  send,
  startOrigin,
  startProxyHarness,
} from './support.ts';

let harness: ProxyHarness;
let origin: Origin;
let slow: Origin;
let upgrades = 0;
/** Resolved by the test when it has read the first SSE event; the origin then sends the second. */
let secondEvent: () => void = () => {};
let uploaded = 0;
/** Called when the origin receives `/hang` (which it never answers), and when that request closes. */
let hangArrived: () => void = () => {};
let hangClosed: () => void = () => {};

const site = app({
  name: 'site',
  hosts: ['site.test', 'slow.test', 'dead.test'],
  policies: [policy('allow', [{ everyone: {} }])],
});

beforeAll(async () => {
  origin = await startOrigin((req, res) => {
    if (req.url === '/events') {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      res.write('data: one\n\n');
      secondEvent = () => res.end('data: two\n\n');
      return;
    }
    if (req.url === '/hang') {
      res.on('close', () => hangClosed());
      hangArrived();
      return;
    }
    if (req.url === '/upload') {
      uploaded = 0;
      req.on('data', (chunk: Buffer) => {
        uploaded += chunk.length;
      });
      req.on('end', () => res.end(JSON.stringify({ received: uploaded })));
      return;
    }
    res.end('ok');
  });
  // A minimal WebSocket echo (RFC 6455): handshake, then one masked text frame in, one text frame out.
  origin.server.on('upgrade', (req, socket) => {
    upgrades += 1;
    const accept = createHash('sha1')
      .update(`${req.headers['sec-websocket-key']}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`)
      .digest('base64');
    socket.write(
      `HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: ${accept}\r\nx-saw-assertion: ${req.headers['cf-access-jwt-assertion'] ? 'yes' : 'no'}\r\n\r\n`,
    );
    socket.on('end', () => socket.destroy());
    socket.on('data', (frame: Buffer) => {
      const length = frame[1]! & 0x7f;
      const mask = frame.subarray(2, 6);
      const text = Buffer.from(
        frame.subarray(6, 6 + length).map((byte, i) => byte ^ mask[i % 4]!),
      ).toString();
      const reply = Buffer.from(`echo: ${text}`);
      socket.write(Buffer.concat([Buffer.from([0x81, reply.length]), reply]));
    });
  });
  slow = await startOrigin(() => {
    // Never answers.
  });
  harness = await startProxyHarness(
    {
      apps: [site],
      ingress: [
        route('slow.test', slow),
        route('dead.test', `http://127.0.0.1:${await freePort()}`),
        route('site.test', origin),
      ],
    },
    { responseTimeoutMs: 300, maxBodyBytes: 300 * 1024 * 1024 },
  );
});

afterAll(async () => {
  await harness?.close();
  await origin?.close();
  await slow?.close();
});

async function cookie(): Promise<[string, string]> {
  return ['cookie', `CF_Authorization=${await appToken(harness, site)}`];
}

describe('streaming', () => {
  it('delivers SSE events one by one before the response ends', async () => {
    const auth = await cookie();
    const events: string[] = [];
    await new Promise<void>((resolve, reject) => {
      const req = http.request({
        host: '127.0.0.1',
        port: harness.port,
        path: '/events',
        headers: { host: 'site.test', cookie: auth[1] },
      });
      req.on('response', (res) => {
        expect(res.headers['content-type']).toBe('text/event-stream');
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          events.push(chunk);
          // The origin sends the second event only after the first reached the client: a
          // buffering proxy would never get here and the test would time out.
          if (events.length === 1) secondEvent();
        });
        res.on('end', resolve);
      });
      req.on('error', reject);
      req.end();
    });
    expect(events.join('')).toBe('data: one\n\ndata: two\n\n');
    expect(events[0]).toBe('data: one\n\n');
  });

  it('proxies a WebSocket after authorization and refuses one without credentials', async () => {
    const auth = await cookie();
    const handshake = (headers: string) =>
      new Promise<{ head: string; socket: net.Socket; rest: Buffer }>((resolve, reject) => {
        const socket = net.connect(harness.port, '127.0.0.1');
        let buffered = Buffer.alloc(0);
        socket.on('data', function onData(chunk: Buffer) {
          buffered = Buffer.concat([buffered, chunk]);
          const end = buffered.indexOf('\r\n\r\n');
          if (end === -1) return;
          socket.off('data', onData);
          resolve({ head: buffered.subarray(0, end).toString(), socket, rest: buffered.subarray(end + 4) });
        });
        socket.on('error', reject);
        socket.write(
          `GET /chat HTTP/1.1\r\nhost: site.test\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-version: 13\r\nsec-websocket-key: ${randomBytes(16).toString('base64')}\r\n${headers}\r\n`,
        );
      });
    const before = upgrades;
    const refused = await handshake('accept: application/json\r\n');
    expect(refused.head).toMatch(/^HTTP\/1.1 401/);
    refused.socket.destroy();
    expect(upgrades).toBe(before);

    const { head, socket } = await handshake(`cookie: ${auth[1]}\r\n`);
    expect(head).toMatch(/^HTTP\/1.1 101/);
    expect(head).toContain('x-saw-assertion: yes');
    const payload = Buffer.from('hello');
    const mask = randomBytes(4);
    const frame = Buffer.concat([
      Buffer.from([0x81, 0x80 | payload.length]),
      mask,
      payload.map((byte, i) => byte ^ mask[i % 4]!),
    ]);
    const reply = await new Promise<Buffer>((resolve) => {
      socket.once('data', resolve);
      socket.write(frame);
    });
    expect(reply[0]).toBe(0x81);
    expect(reply.subarray(2).toString()).toBe('echo: hello');
    socket.destroy();
  });

  it('cancels the origin request when the client goes away before the origin answers', async () => {
    // A proxy that waits for origins as long as production does (100 s): without the
    // cancellation the origin's request stays open, its pooled connection busy, and this test
    // times out.
    const patient = await startProxyHarness({ apps: [site], ingress: [route('site.test', origin)] });
    try {
      const arrived = new Promise<void>((resolve) => {
        hangArrived = resolve;
      });
      const closed = new Promise<void>((resolve) => {
        hangClosed = resolve;
      });
      const req = http.request({
        host: '127.0.0.1',
        port: patient.port,
        path: '/hang',
        headers: { host: 'site.test', cookie: `CF_Authorization=${await appToken(patient, site)}` },
      });
      req.on('error', () => {});
      req.end();
      await arrived;
      req.destroy();
      await closed;
    } finally {
      await patient.close();
    }
  });

  it('streams a 200 MB upload without holding it in memory', async () => {
    const auth = await cookie();
    const total = 200 * 1024 * 1024;
    const chunk = Buffer.alloc(1024 * 1024, 7);
    const baseline = process.memoryUsage().rss;
    let peak = baseline;
    const sampler = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage().rss);
    }, 20);
    const response = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request({
        host: '127.0.0.1',
        port: harness.port,
        method: 'POST',
        path: '/upload',
        headers: { host: 'site.test', cookie: auth[1], 'content-length': total, accept: 'application/json' },
      });
      req.on('response', (res) => {
        let body = '';
        res.on('data', (data) => {
          body += data;
        });
        res.on('end', () => resolve({ status: res.statusCode!, body }));
      });
      req.on('error', reject);
      let sent = 0;
      const pump = () => {
        while (sent < total) {
          sent += chunk.length;
          if (!req.write(chunk)) return void req.once('drain', pump);
        }
        req.end();
      };
      pump();
    });
    clearInterval(sampler);
    expect(response.status).toBe(200);
    expect(JSON.parse(response.body)).toEqual({ received: total });
    // Client, proxy and origin share this process: buffering the body would add 200 MB.
    expect(peak - baseline).toBeLessThan(100 * 1024 * 1024);
  });
});

describe('limits and failures', () => {
  it('answers 504 when the origin does not answer in time and 502 when it is down, as branded pages', async () => {
    const auth = await cookie();
    const timeout = await send(harness.port, { host: 'slow.test', headers: [BROWSER, auth] });
    expect(timeout.status).toBe(504);
    expect(timeout.body).toContain('Gateway timeout');
    const dead = await send(harness.port, { host: 'dead.test', headers: [BROWSER, auth] });
    expect(dead.status).toBe(502);
    expect(dead.body).toContain('Bad gateway');
    expect(dead.body).not.toContain('127.0.0.1');
    const api = await send(harness.port, { host: 'dead.test', headers: [API, auth] });
    expect(JSON.parse(api.body)).toEqual({ error: 'bad_gateway' });
  });

  it('refuses bodies over the limit with 413, declared or chunked', async () => {
    const auth = await cookie();
    const declared = await send(harness.port, {
      host: 'site.test',
      method: 'POST',
      path: '/upload',
      headers: [API, auth, ['content-length', String(301 * 1024 * 1024)]],
    }).catch((error: Error) => ({ status: 0, body: error.message }));
    expect(declared.status).toBe(413);

    // The proxy answers 413 and closes while the client is still sending: the client sees the
    // answer or, if the close wins the race, a reset.
    const chunked = await new Promise<number | string>((resolve) => {
      const req = http.request({
        host: '127.0.0.1',
        port: harness.port,
        method: 'POST',
        path: '/upload',
        headers: { host: 'site.test', cookie: auth[1], 'transfer-encoding': 'chunked' },
      });
      req.on('response', (res) => {
        res.resume();
        resolve(res.statusCode!);
      });
      req.on('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? 'error'));
      const chunk = Buffer.alloc(1024 * 1024);
      let sent = 0;
      const pump = () => {
        while (sent < 310 && !req.destroyed) {
          sent += 1;
          if (!req.write(chunk)) return void req.once('drain', pump);
        }
        req.end();
      };
      pump();
    });
    // The origin never saw more than the limit.
    expect([413, 'EPIPE', 'ECONNRESET']).toContain(chunked);
    expect(uploaded).toBeLessThanOrEqual(300 * 1024 * 1024);
  });

  it('answers 431 to oversized request headers', async () => {
    const response = await send(harness.port, {
      host: 'site.test',
      headers: [API, ['x-big', 'x'.repeat(20_000)]],
    });
    expect(response.status).toBe(431);
  });
});
