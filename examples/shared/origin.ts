// The skeleton every example origin shares: health check, the Access check in front of every
// other route, and errors in the caller's format (JSON for the API, a page for people).
import http from 'node:http';
import { AccessDenied, type AccessIdentity, type AccessVerifier } from './access.ts';
import { escapeHtml, HttpError, sendHtml, sendJson, wantsJson } from './http.ts';
import { closeServer, listenOn } from './listen.ts';

export type Route = (
  req: http.IncomingMessage,
  res: http.ServerResponse,
  url: URL,
  identity: AccessIdentity,
) => Promise<void>;

export interface Origin {
  server: http.Server;
  /** Listens on host:port (port 0: any free one); resolves with the bound `host:port`. */
  listen(port: number, host?: string): Promise<string>;
  close(): Promise<void>;
}

export function createOrigin(
  name: string,
  verify: AccessVerifier,
  route: Route,
  onError: (error: unknown) => void = (error) => console.error(`${name}:`, error),
): Origin {
  const server = http.createServer({ headersTimeout: 30_000, requestTimeout: 60_000 }, (req, res) => {
    const url = new URL(req.url ?? '/', 'http://origin.invalid');
    if (url.pathname === '/healthz') return sendJson(res, 200, { status: 'ok' });
    verify(req.headers)
      .then((identity) => route(req, res, url, identity))
      .catch((error: unknown) => {
        if (res.headersSent) {
          res.destroy();
          return;
        }
        const [status, message] =
          error instanceof AccessDenied
            ? [403, `${name} accepts only requests that come through Gatehouse with a valid Access assertion`]
            : error instanceof HttpError
              ? [error.status, error.message]
              : [500, 'internal error'];
        if (status === 500) onError(error);
        if (wantsJson(req)) sendJson(res, status, { error: message });
        else sendHtml(res, status, name, `<h1>${status}</h1><p>${escapeHtml(message)}</p>`);
      });
  });
  return {
    server,
    listen: (port, host) => listenOn(server, port, host),
    close: () => closeServer(server),
  };
}
