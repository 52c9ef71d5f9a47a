// Gatehouse's own answers (block and error pages, JSON for programs, redirects). They name no
// internals: no origin address, no policy, no stack trace.
import type http from 'node:http';
import type { Duplex } from 'node:stream';

/** An answer given by Gatehouse itself. */
export interface Reply {
  status: number;
  headers: Record<string, string | string[]>;
  body: string;
}

const TITLES: Record<number, string> = {
  400: 'Bad request',
  401: 'Authentication required',
  403: 'Access denied',
  404: 'Not found',
  413: 'Request too large',
  502: 'Bad gateway',
  504: 'Gateway timeout',
};

const MESSAGES: Record<number, string> = {
  400: 'The request could not be understood.',
  401: 'You need to sign in to reach this application.',
  403: 'You do not have access to this application.',
  404: 'There is nothing here.',
  413: 'The request body is larger than this gateway accepts.',
  502: 'The application could not be reached. Try again in a moment.',
  504: 'The application did not answer in time. Try again in a moment.',
};

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (char) => `&#${char.charCodeAt(0)};`);
}

export function statusTitle(status: number): string {
  return TITLES[status] ?? 'Error';
}

/** A small self-contained page; `message` is admin text (custom_deny_message) and is escaped. */
export function htmlPage(status: number, message?: string): string {
  const title = escapeHtml(`${status} ${statusTitle(status)}`);
  const body = escapeHtml(message ?? MESSAGES[status] ?? '');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${title}</title>
<style>body{font-family:system-ui,sans-serif;background:#f6f7f9;color:#1d2330;display:grid;place-items:center;min-height:100vh;margin:0}
main{background:#fff;border-radius:8px;padding:2rem 2.5rem;box-shadow:0 1px 4px #0002;max-width:32rem}
h1{font-size:1.25rem;margin:0 0 .75rem}p{margin:0;line-height:1.5}small{display:block;margin-top:1.5rem;color:#6b7280}</style>
</head><body><main><h1>${title}</h1><p>${body}</p><small>Gatehouse</small></main></body></html>
`;
}

export function jsonReply(
  status: number,
  body: unknown,
  headers: Record<string, string | string[]> = {},
): Reply {
  return {
    status,
    headers: { 'content-type': 'application/json', 'cache-control': 'no-store', ...headers },
    body: JSON.stringify(body),
  };
}

export function htmlReply(status: number, message?: string): Reply {
  return {
    status,
    headers: { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' },
    body: htmlPage(status, message),
  };
}

/** Gatehouse's own error page: HTML for browsers, a short JSON body for programs. */
export function pageReply(status: number, req: http.IncomingMessage): Reply {
  return (req.headers.accept ?? '').includes('text/html')
    ? htmlReply(status)
    : jsonReply(status, { error: statusTitle(status).toLowerCase().replace(/ /g, '_') });
}

export function sendReply(res: http.ServerResponse, reply: Reply): void {
  // Answering before the request body was read (401, 413…): close the connection afterwards
  // instead of reading (or waiting for) a body nobody wants (RFC 9112 §9.6).
  if (!res.req.complete) res.shouldKeepAlive = false;
  res.writeHead(reply.status, { ...reply.headers, 'content-length': Buffer.byteLength(reply.body) });
  res.end(reply.body);
}

/** The same answer written on a socket whose request asked for an upgrade. */
export function writeRawReply(socket: Duplex, reply: Reply): void {
  if (socket.destroyed) return;
  const lines = [`HTTP/1.1 ${reply.status} ${statusTitle(reply.status)}`];
  for (const [name, value] of Object.entries(reply.headers)) {
    for (const one of Array.isArray(value) ? value : [value]) lines.push(`${name}: ${one}`);
  }
  lines.push(`content-length: ${Buffer.byteLength(reply.body)}`, 'connection: close');
  // After an upgrade request nobody reads this socket, so the client's FIN would never be
  // seen: destroy it once the answer is flushed rather than leave it half-open.
  socket.end(`${lines.join('\r\n')}\r\n\r\n${reply.body}`, () => socket.destroy());
}
