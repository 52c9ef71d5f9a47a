// Forwarding to origins with one undici Pool per origin (stack.md §4: undici behind node:http
// beat @fastify/reply-from and node's Agent). Bodies stream both ways with backpressure, so a
// 200 MB upload or an endless SSE stream costs a few buffers, and responses are written as the
// origin writes them.
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import type http from 'node:http';
import { type Duplex, Readable } from 'node:stream';
import { Pool } from 'undici';
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

/**
 * Aborts the origin request when the client goes away before the response is complete (a slow
 * origin must not keep a pooled connection busy for nobody). undici accepts an EventEmitter
 * with `aborted` and an 'abort' event as a request signal; it costs far less per request than
 * an AbortController, whose EventTarget machinery showed up in the proxy's CPU profile.
 */
class ClientGone extends EventEmitter {
  aborted = false;
  private readonly onClose = () => {
    if (this.res.writableFinished) return;
    this.aborted = true;
    this.emit('abort');
  };

  constructor(private readonly res: http.ServerResponse) {
    super();
    res.once('close', this.onClose);
  }

  release(): void {
    this.res.off('close', this.onClose);
  }
}

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
   * Streams the request to the origin and the response to the client. Throws ForwardError when
   * nothing has been written to the client yet; once the response has started, a failure cuts
   * the connection, which is all HTTP/1.1 can say at that point.
   */
  async forward(request: ForwardRequest, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const pool = this.pool(request.target);
    const gone = new ClientGone(res);
    try {
      await pool.stream(
        {
          path: request.path,
          method: request.method,
          headers: request.headers,
          body: this.body(req, request.contentLength),
          signal: gone,
        },
        ({ statusCode, headers }) => {
          const out = filterResponseHeaders(headers);
          if (request.setCookie) out['set-cookie'] = [...[out['set-cookie'] ?? []].flat(), request.setCookie];
          res.writeHead(statusCode, request.cors ? applyCors(out, request.cors) : out);
          // Every chunk is written as it arrives. An event stream also gets its headers at once,
          // so the client knows it is connected before the first event; other responses send
          // them with the first chunk (one write instead of two).
          if (String(headers['content-type']).startsWith('text/event-stream')) res.flushHeaders();
          return res;
        },
      );
    } catch (error) {
      if (res.headersSent || gone.aborted) {
        res.destroy();
        return;
      }
      throw classify(error);
    } finally {
      gone.release();
    }
  }

  /**
   * Proxies a WebSocket (or other HTTP/1.1 Upgrade) handshake, then splices the two sockets.
   * An origin that refuses the upgrade is reported as 502.
   */
  async upgrade(request: ForwardRequest, protocol: string, socket: Duplex, head: Buffer): Promise<void> {
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
  private body(req: http.IncomingMessage, contentLength: string | null) {
    if (contentLength !== null) return contentLength === '0' ? null : req;
    if (req.headers['transfer-encoding'] === undefined) return null;
    return Readable.from(limited(req, this.limits.maxBodyBytes), { objectMode: false });
  }
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
