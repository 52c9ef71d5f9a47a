// A browser on the wire for tests: a cookie jar per host, no redirects followed, and every app
// host (`wiki.localhost:<port>`) reaching the gateway's one listener with its own Host header,
// like `curl --resolve` (Node's resolver may not map `*.localhost` to loopback, and Node's fetch
// replaces a Host header set by the caller, hence node:http).
import http from 'node:http';
import { isIP } from 'node:net';

export interface BrowserRequest {
  /** Defaults to POST with a body, GET without. */
  method?: string;
  /** Sent as application/x-www-form-urlencoded. */
  form?: Record<string, string>;
  /** Sent as application/json, and JSON accepted in return. */
  json?: unknown;
  /** Extra request headers; a `cookie` header here replaces the jar's cookies. */
  headers?: Record<string, string>;
}

export interface BrowserResponse {
  status: number;
  headers: Headers;
  text: string;
  /** The Location header as sent. */
  location: string | null;
}

export class Browser {
  /** Cookies by `host:port`, as the browser would send them. */
  readonly jar = new Map<string, Map<string, string>>();
  /** Every Set-Cookie line received, in order. */
  readonly setCookies: string[] = [];
  private readonly listen: { host: string; port: number };

  /**
   * `listen` is the gateway's listen port on 127.0.0.1, or its `host:port`: URLs naming a host
   * connect there; URLs naming an IP address go where they say.
   */
  constructor(listen: number | string) {
    const url = new URL(`http://${typeof listen === 'number' ? `127.0.0.1:${listen}` : listen}`);
    this.listen = { host: url.hostname.replace(/^\[|\]$/g, ''), port: Number(url.port) };
  }

  async request(url: string, init: BrowserRequest = {}): Promise<BrowserResponse> {
    const target = new URL(url);
    const cookies = this.jar.get(target.host);
    const headers: Record<string, string> = {
      accept: init.json === undefined ? 'text/html' : 'application/json',
      host: target.host,
      ...init.headers,
    };
    if (cookies && cookies.size > 0 && !init.headers?.cookie) {
      headers.cookie = [...cookies].map(([name, value]) => `${name}=${value}`).join('; ');
    }
    let body: string | undefined;
    if (init.form) {
      body = new URLSearchParams(init.form).toString();
      headers['content-type'] = 'application/x-www-form-urlencoded';
    } else if (init.json !== undefined) {
      body = JSON.stringify(init.json);
      headers['content-type'] = 'application/json';
    }
    if (body !== undefined) headers['content-length'] = String(Buffer.byteLength(body));
    const address = target.hostname.replace(/^\[|\]$/g, '');
    const response = await send(
      isIP(address) ? { host: address, port: Number(target.port || 80) } : this.listen,
      {
        path: `${target.pathname}${target.search}`,
        method: init.method ?? (body === undefined ? 'GET' : 'POST'),
        headers,
      },
      body,
    );
    for (const line of response.headers.getSetCookie()) this.keep(target.host, line);
    return { ...response, location: response.headers.get('location') };
  }

  private keep(host: string, line: string): void {
    this.setCookies.push(line);
    const [pair] = line.split(';');
    const index = pair!.indexOf('=');
    const name = pair!.slice(0, index);
    const value = pair!.slice(index + 1);
    const hostJar = this.jar.get(host) ?? new Map<string, string>();
    if (/max-age=0/i.test(line) || value === '') hostJar.delete(name);
    else hostJar.set(name, value);
    this.jar.set(host, hostJar);
  }
}

function send(
  to: { host: string; port: number },
  options: { path: string; method: string; headers: Record<string, string> },
  body: string | undefined,
): Promise<Omit<BrowserResponse, 'location'>> {
  return new Promise((resolve, reject) => {
    const req = http.request({ ...to, ...options }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        const headers = new Headers();
        for (let i = 0; i < res.rawHeaders.length; i += 2)
          headers.append(res.rawHeaders[i]!, res.rawHeaders[i + 1]!);
        resolve({ status: res.statusCode ?? 0, headers, text: Buffer.concat(chunks).toString('utf8') });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}
