// One pass over the client's raw headers: collect the credentials Access reads, and build the
// header list for the origin without anything the client must not be able to set.
// - Hop-by-hop headers go (RFC 9110 §7.6.1: Connection, the fields it lists, Proxy-Connection,
//   Keep-Alive, TE, Transfer-Encoding, Upgrade).
// - Every `Cf-Access-*` header goes (decision 4): the identity headers are Gatehouse's to set,
//   and `Cf-Access-Token` / `CF-Access-Client-*` are credentials.
// - `X-Forwarded-*`, `Forwarded`, `Cf-Connecting-Ip` and `CF-IPCountry` go: Gatehouse writes
//   these itself (the country only from its configured source, src/geo/country.ts).
// - `Expect` goes: Node already answered `100-continue`, and undici refuses to send it.
// - `Authorization` and `Cookie` are held back; the proxy decides what of them the origin gets.

export interface ScannedHeaders {
  /** Flat [name, value, …] list for the origin, without host, authorization and cookie. */
  forward: string[];
  host: string | null;
  authorization: readonly string[];
  cookie: readonly string[];
  accessToken: readonly string[];
  clientId: readonly string[];
  clientSecret: readonly string[];
  /** Values of the app's `read_service_tokens_from_header` header. */
  serviceTokenJson: readonly string[];
  accept: string;
  requestedWith: boolean;
  origin: string | null;
  contentLength: string | null;
  /** A Transfer-Encoding was declared: the body's length is unknown (RFC 9112 §6.1). */
  chunked: boolean;
  /** Value of `Upgrade`, kept for WebSocket requests. */
  upgrade: string | null;
}

const DROPPED = new Set([
  'connection',
  'proxy-connection',
  'keep-alive',
  'te',
  'transfer-encoding',
  'upgrade',
  'http2-settings',
  'expect',
  'forwarded',
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-forwarded-host',
  'x-forwarded-port',
  'x-real-ip',
  'cf-connecting-ip',
  'cf-ipcountry',
]);

/** Credential headers, collected value by value (RFC 9110 §5.3: a name may repeat) and kept from the origin. */
const COLLECTED = new Map<string, CollectedHeader>([
  ['authorization', 'authorization'],
  ['cookie', 'cookie'],
  ['cf-access-token', 'accessToken'],
  ['cf-access-client-id', 'clientId'],
  ['cf-access-client-secret', 'clientSecret'],
]);
type CollectedHeader =
  | 'authorization'
  | 'cookie'
  | 'accessToken'
  | 'clientId'
  | 'clientSecret'
  | 'serviceTokenJson';
/** Most requests carry none of most credential headers: they share this list instead of allocating one each. */
const NONE: readonly string[] = Object.freeze([]);

export function scanRequestHeaders(
  raw: readonly string[],
  serviceTokenHeader: string | null,
): ScannedHeaders {
  const scanned: ScannedHeaders = {
    forward: [],
    host: null,
    authorization: NONE,
    cookie: NONE,
    accessToken: NONE,
    clientId: NONE,
    clientSecret: NONE,
    serviceTokenJson: NONE,
    accept: '',
    requestedWith: false,
    origin: null,
    contentLength: null,
    chunked: false,
    upgrade: null,
  };
  let connection: string[] | null = null;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    const value = raw[i + 1]!;
    const collected = name === serviceTokenHeader ? 'serviceTokenJson' : COLLECTED.get(name);
    if (collected !== undefined) {
      const list = scanned[collected];
      // Past the shared empty list, the list is this request's own.
      if (list === NONE) scanned[collected] = [value];
      else (list as string[]).push(value);
      continue;
    }
    switch (name) {
      case 'host':
        scanned.host = value;
        continue;
      case 'connection':
        // `keep-alive` and `close` (nearly every Connection header) name no other header.
        if (namesNoHeader(value)) continue;
        connection ??= [];
        for (const token of value.split(',')) connection.push(token.trim().toLowerCase());
        continue;
      case 'upgrade':
        scanned.upgrade = value;
        continue;
      case 'transfer-encoding':
        scanned.chunked = true;
        continue;
      case 'accept':
        scanned.accept += value;
        break;
      case 'x-requested-with':
        scanned.requestedWith = true;
        break;
      case 'origin':
        scanned.origin = value;
        break;
      case 'content-length':
        scanned.contentLength = value;
        break;
    }
    if (DROPPED.has(name) || name.startsWith('cf-access-')) continue;
    scanned.forward.push(name, value);
  }
  if (connection) {
    const listed = new Set(connection);
    // A client may not use Connection to strip Gatehouse's credentials handling or identity headers.
    listed.delete('authorization');
    listed.delete('cookie');
    const kept: string[] = [];
    for (let i = 0; i < scanned.forward.length; i += 2) {
      if (!listed.has(scanned.forward[i]!)) kept.push(scanned.forward[i]!, scanned.forward[i + 1]!);
    }
    scanned.forward = kept;
  }
  return scanned;
}

/** Response headers that are hop-by-hop, plus those named in the origin's Connection header. */
export function filterResponseHeaders(
  headers: Record<string, string | string[] | undefined>,
): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  const connection = headers.connection;
  const listed =
    connection && !(typeof connection === 'string' && namesNoHeader(connection))
      ? new Set(
          (Array.isArray(connection) ? connection.join(',') : connection)
            .split(',')
            .map((token) => token.trim().toLowerCase()),
        )
      : null;
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined || RESPONSE_HOP_BY_HOP.has(name) || listed?.has(name)) continue;
    out[name] = value;
  }
  return out;
}

/** A Connection header of just `keep-alive` or `close`: it lists no other header to remove. */
function namesNoHeader(connection: string): boolean {
  const value = connection.length <= 10 ? connection.trim().toLowerCase() : '';
  return value === 'keep-alive' || value === 'close';
}

const RESPONSE_HOP_BY_HOP = new Set([
  'connection',
  'proxy-connection',
  'keep-alive',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

/** Access's own cookies never reach the origin: they are credentials for Gatehouse only. */
const ACCESS_COOKIES = new Set(['CF_Authorization', 'CF_Binding', 'CF_AppSession']);
export const APP_COOKIE = 'CF_Authorization';

/** Finds the app cookie's values (RFC 6265 §5.4: a name may repeat) and the Cookie header without Access's cookies. */
export function splitCookies(headers: readonly string[]): { tokens: string[]; rest: string | null } {
  const tokens: string[] = [];
  const rest: string[] = [];
  for (const header of headers) {
    // Every Access cookie name starts with `CF_`: a header without it goes to the origin whole.
    if (!header.includes('CF_')) {
      const whole = header.trim();
      if (whole) rest.push(whole);
      continue;
    }
    for (let start = 0; start < header.length; ) {
      const semicolon = header.indexOf(';', start);
      const end = semicolon === -1 ? header.length : semicolon;
      const pair = header.slice(start, end).trim();
      start = end + 1;
      if (!pair) continue;
      const equals = pair.indexOf('=');
      const name = equals === -1 ? pair : pair.slice(0, equals);
      if (ACCESS_COOKIES.has(name)) {
        if (name === APP_COOKIE) tokens.push(pair.slice(equals + 1));
        continue;
      }
      rest.push(pair);
    }
  }
  return { tokens, rest: rest.length > 0 ? rest.join('; ') : null };
}
