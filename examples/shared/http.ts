// Small node:http helpers shared by the example origins: bounded bodies, JSON and HTML replies.
import type http from 'node:http';
import type { z } from 'zod';

export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** Reads a request body of at most `limit` bytes (413 beyond it). */
export async function readBody(req: http.IncomingMessage, limit = 256 * 1024): Promise<string> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > limit) throw new HttpError(413, `body larger than ${limit} bytes`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw new HttpError(413, `body larger than ${limit} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

export async function readJson(req: http.IncomingMessage, limit?: number): Promise<unknown> {
  if (!String(req.headers['content-type'] ?? '').startsWith('application/json')) {
    throw new HttpError(415, 'expected content-type: application/json');
  }
  try {
    return JSON.parse(await readBody(req, limit));
  } catch (error) {
    if (error instanceof HttpError) throw error;
    throw new HttpError(400, 'body is not valid JSON');
  }
}

export async function readForm(req: http.IncomingMessage, limit?: number): Promise<URLSearchParams> {
  if (!String(req.headers['content-type'] ?? '').startsWith('application/x-www-form-urlencoded')) {
    throw new HttpError(415, 'expected a form post');
  }
  return new URLSearchParams(await readBody(req, limit));
}

export function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
  });
  res.end(text);
}

export function sendHtml(res: http.ServerResponse, status: number, title: string, body: string): void {
  const text = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title>
<style>body{font-family:system-ui,sans-serif;max-width:50rem;margin:2rem auto;padding:0 1rem}
table{border-collapse:collapse}td,th{padding:.25rem .5rem;border-bottom:1px solid #ddd;text-align:left}
textarea{width:100%;min-height:12rem}pre{white-space:pre-wrap}</style></head><body>${body}</body></html>`;
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
    'x-frame-options': 'DENY',
  });
  res.end(text);
}

export function redirect(res: http.ServerResponse, location: string): void {
  res.writeHead(303, { location, 'cache-control': 'no-store' });
  res.end();
}

export function escapeHtml(text: string): string {
  return text.replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!,
  );
}

/** True when the client asked for JSON rather than a page. */
export function wantsJson(req: http.IncomingMessage): boolean {
  return (req.url ?? '').startsWith('/api/') || !String(req.headers.accept ?? '').includes('text/html');
}

/**
 * A form post must come from this site's own pages: the Origin (or, failing that, Referer)
 * host must be the request's Host. Blocks cross-site form posts riding the user's session.
 */
export function sameOrigin(req: http.IncomingMessage): boolean {
  const source = req.headers.origin ?? req.headers.referer;
  if (typeof source !== 'string') return false;
  try {
    return new URL(source).host === req.headers.host;
  } catch {
    return false;
  }
}

/** Validates input with a zod schema; the first problem becomes a 400 naming the field. */
export function parse<T>(schema: z.ZodType<T>, input: unknown): T {
  const parsed = schema.safeParse(input);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new HttpError(400, `${issue.path.join('.') || 'body'}: ${issue.message}`);
  }
  return parsed.data;
}
