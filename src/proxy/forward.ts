// Forwarding to origins with one undici Pool per origin (stack.md §4: undici behind node:http
// beat @fastify/reply-from and node's Agent). Bodies stream both ways with backpressure, so a
// 200 MB upload or an endless SSE stream costs a few buffers, and responses are written as the
// origin writes them.
import { readFileSync } from 'node:fs';
import type http from 'node:http';
import type { IncomingHttpHeaders } from 'node:http';
import { type Duplex, Readable } from 'node:stream';
import { type Dispatcher, Pool } from 'undici';
import { applyCors } from './cors.ts';
import { filterResponseHeaders } from './headers.ts';
import type { OriginTarget } from './routing.ts';

export interface ForwardLimits {
  /** Largest request body accepted (413 above). Cloudflare's largest plan accepts 500 MB. */
  maxBodyBytes: number;
  /** Time for the origin to send response headers; 504 after (Cloudflare waits 100 s, error 524). */
  responseTimeoutMs: number;
  /** Longest silence inside a response body. Long: SSE and long polls are legitimately quiet. */
  bodyIdleTimeoutMs: number;
  connectionsPerOrigin: number;
}

export const DEFAULT_FORWARD_LIMITS: ForwardLimits = {
  maxBodyBytes: 500 * 1024 * 1024,
  responseTimeoutMs: 100_000,
  bodyIdleTimeoutMs: 900_000,
  connectionsPerOrigin: 64,
};

export interface ForwardRequest {
  target: OriginTarget;
  method: string;
  /** Path and query as sent to the origin. */
  path: string;
  /** Flat [name, value, …] list, already filtered, including `host`. */
  headers: string[];
  /** The declared Content-Length, or null. */
  contentLength: string | null;
  /** The request declared a Transfer-Encoding (a body of unknown length). */
  chunked: boolean;
  /** The app's CORS headers for this request's Origin (cors.ts), or null. */
  cors: Record<string, string> | null;
  /** A cookie of Gatehouse's own for the client, added to the origin's Set-Cookie headers. */
  setCookie: string | null;
}

/** A failure before the response started: the caller answers with this status. */
export class ForwardError extends Error {
  constructor(
    readonly status: 400 | 413 | 502 | 504,
    message: string,
  ) {
    super(message);
  }
}

class BodyTooLarge extends Error {}

export class Forwarder {
  private readonly pools = new Map<string, Pool>();

  constructor(private readonly limits: ForwardLimits) {}

  /** Opens pools for the origins in force and closes those no rule names any more. */
  sync(origins: readonly OriginTarget[]): void {
    const keep = new Set(origins.map((origin) => origin.key));
    for (const [key, pool] of this.pools) {
      if (keep.has(key)) continue;
      this.pools.delete(key);
      // close() lets requests in flight finish.
      pool.close().catch(() => {});
    }
    for (const origin of origins) this.pool(origin);
  }

  async close(): Promise<void> {
    const pools = [...this.pools.values()];
    this.pools.clear();
    await Promise.all(pools.map((pool) => pool.destroy().catch(() => {})));
  }

  /** Checks the declared body size before any byte goes to the origin. */
  declaredTooLarge(contentLength: string | null): boolean {
    return contentLength !== null && Number(contentLength) > this.limits.maxBodyBytes;
  }

  /**
   * Streams the request to the origin and the response to the client. `fail` gets a ForwardError
   * when nothing has been written to the client yet (the caller answers with its status); once
   * the response has started, a failure cuts the connection, which is all HTTP/1.1 can say then.
   */
  forward(
    request: ForwardRequest,
    req: http.IncomingMessage,
    res: http.ServerResponse,
    fail: (error: ForwardError) => void,
  ): void {
    const body = this.body(req, request);
    this.pool(request.target).dispatch(
      { path: request.path, method: request.method, headers: request.headers, body },
      new ResponseRelay(request, res, body, fail),
    );
  }

  /**
   * Proxies a WebSocket (or other HTTP/1.1 Upgrade) handshake, then splices the two sockets.
   * An origin that refuses the upgrade is reported as 502.
   */
  async upgrade(
    request: Pick<ForwardRequest, 'target' | 'path' | 'headers'>,
    protocol: string,
    socket: Duplex,
    head: Buffer,
  ): Promise<void> {
    const pool = this.pool(request.target);
    let upgraded: Awaited<ReturnType<Pool['upgrade']>>;
    try {
      upgraded = await pool.upgrade({
        path: request.path,
        method: 'GET',
        headers: request.headers,
        protocol,
      });
    } catch (error) {
      throw classify(error);
    }
    const upstream = upgraded.socket;
    const lines = ['HTTP/1.1 101 Switching Protocols'];
    for (const [name, value] of Object.entries(upgraded.headers)) {
      if (value === undefined) continue;
      for (const one of Array.isArray(value) ? value : [value]) lines.push(`${name}: ${one}`);
    }
    socket.write(`${lines.join('\r\n')}\r\n\r\n`);
    if (head.length > 0) upstream.write(head);
    // Either side hanging up ends the tunnel: a half-open WebSocket is of no use to anyone, and
    // waiting for the other side's FIN would keep sockets (and server shutdown) hanging.
    const end = () => {
      socket.destroy();
      upstream.destroy();
    };
    for (const side of [upstream, socket]) side.on('error', end).on('end', end).on('close', end);
    upstream.pipe(socket);
    socket.pipe(upstream);
  }

  private pool(target: OriginTarget): Pool {
    let pool = this.pools.get(target.key);
    if (!pool) {
      const https = target.origin.startsWith('https:');
      pool = new Pool(target.origin, {
        connections: this.limits.connectionsPerOrigin,
        headersTimeout: this.limits.responseTimeoutMs,
        bodyTimeout: this.limits.bodyIdleTimeoutMs,
        connect: {
          timeout: target.connectTimeoutMs,
          ...(https && {
            rejectUnauthorized: !target.noTLSVerify,
            // cloudflared's caPool names a PEM file; read once, when the pool opens.
            ...(target.caPool && { ca: readFileSync(target.caPool, 'utf8') }),
            ...(target.httpHostHeader && { servername: target.httpHostHeader }),
          }),
        },
      });
      this.pools.set(target.key, pool);
    }
    return pool;
  }

  /** No body for requests that declare none; a counted stream when the length is unknown. */
  private body(req: http.IncomingMessage, { contentLength, chunked }: ForwardRequest) {
    if (contentLength !== null) return contentLength === '0' ? null : req;
    if (!chunked) return null;
    return Readable.from(limited(req, this.limits.maxBodyBytes), { objectMode: false });
  }
}

/**
 * One exchange with the origin, as an undici dispatch handler: the response is written to the
 * client as it arrives, with backpressure both ways (a full client socket pauses the origin's).
 * This is what `Pool.stream` does, without what the proxy does not need per request: its promise,
 * its async-resource scope, and `finished()`'s half-dozen listeners on the response (undici's own
 * TODO says as much); it was the largest part of the forwarder in the proxy's CPU profile.
 */
class ResponseRelay implements Dispatcher.DispatchHandler {
  private controller: Dispatcher.DispatchController | null = null;
  private settled = false;
  /** Set when the exchange must end before undici has started it (the client left, the body failed). */
  private abortReason: Error | null = null;

  constructor(
    private readonly request: ForwardRequest,
    private readonly res: http.ServerResponse,
    body: Readable | http.IncomingMessage | null,
    private readonly fail: (error: ForwardError) => void,
  ) {
    // A slow origin must not keep a pooled connection busy for nobody.
    res.once('close', () => {
      if (!res.writableFinished && !this.settled) this.end(new Error('client went away'));
    });
    // A failing request body (a client reset, the size limit) ends the exchange, even while the
    // request waits for a pooled connection.
    body?.on('error', (error: Error) => this.end(error));
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    if (this.abortReason) controller.abort(this.abortReason);
  }

  onResponseStart(
    _controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: IncomingHttpHeaders,
  ): void {
    // 1xx (103 Early Hints) is not relayed: node:http answers `Expect` itself.
    if (statusCode < 200 || this.settled) return;
    const { request, res } = this;
    const out = filterResponseHeaders(headers);
    if (request.setCookie) out['set-cookie'] = withCookie(out['set-cookie'], request.setCookie);
    res.writeHead(statusCode, request.cors ? applyCors(out, request.cors) : out);
    // Every chunk is written as it arrives. An event stream also gets its headers at once, so the
    // client knows it is connected before the first event; other responses send them with the
    // first chunk (one write instead of two).
    if (String(headers['content-type']).startsWith('text/event-stream')) res.flushHeaders();
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.res.write(chunk)) return;
    controller.pause();
    this.res.once('drain', () => controller.resume());
  }

  onResponseEnd(): void {
    if (this.settled) return;
    this.settled = true;
    this.res.end();
  }

  /** undici's report that the exchange failed (the origin, a timeout, or an abort of ours). */
  onResponseError(_controller: Dispatcher.DispatchController, error: Error): void {
    this.settle(error);
  }

  /** Ends the exchange from our side: undici is told to stop, now or as soon as it starts. */
  private end(reason: Error): void {
    if (this.settled) return;
    this.abortReason = reason;
    this.controller?.abort(reason);
    this.settle(reason);
  }

  private settle(error: Error): void {
    if (this.settled) return;
    this.settled = true;
    const { res } = this;
    if (res.headersSent || res.destroyed) res.destroy();
    else this.fail(classify(error));
  }
}

function withCookie(existing: string | string[] | undefined, cookie: string): string | string[] {
  if (existing === undefined) return cookie;
  return Array.isArray(existing) ? [...existing, cookie] : [existing, cookie];
}

async function* limited(req: http.IncomingMessage, max: number): AsyncGenerator<Buffer> {
  let total = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    total += chunk.length;
    if (total > max) throw new BodyTooLarge('request body over the limit');
    yield chunk;
  }
}

function classify(error: unknown): ForwardError {
  if (error instanceof ForwardError) return error;
  if (error instanceof BodyTooLarge) return new ForwardError(413, error.message);
  const code = (error as { code?: string })?.code;
  if (code === 'UND_ERR_HEADERS_TIMEOUT') return new ForwardError(504, 'origin response timeout');
  if (code === 'UND_ERR_REQ_CONTENT_LENGTH_MISMATCH') return new ForwardError(400, 'body length mismatch');
  const cause = (error as { cause?: unknown })?.cause;
  if (cause instanceof BodyTooLarge) return new ForwardError(413, cause.message);
  return new ForwardError(502, `origin unreachable: ${code ?? (error as Error)?.message ?? 'error'}`);
}
