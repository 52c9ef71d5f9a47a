// Client ID metadata documents (draft-ietf-oauth-client-id-metadata-document; MCP 2025-11-25
// "Client ID Metadata Documents"): an MCP client names itself with an https URL as `client_id`,
// and the authorization server fetches its metadata from that URL. The URL is chosen by whoever
// starts an authorization request, so the fetch is hardened against SSRF (draft §6.5):
// - https only; http only to a loopback address, and only when allowed (development);
// - the host is resolved here, every address checked (no loopback, private, link-local or
//   otherwise non-public address unless configured), and the connection made to the checked
//   address, so a second DNS answer cannot rebind the name to an internal host;
// - at most 5 KB, 5 s for the whole exchange, no redirects (draft §4.1: "MUST NOT follow");
// - the document must name the URL as its `client_id` exactly (draft §4.1), must not carry a
//   secret or a shared-secret auth method (draft §4.1), and must not point at other URLs
//   Gatehouse would fetch later (`jwks_uri`, `request_uris`, `sector_identifier_uri`).
// Results are cached per the response's HTTP caching headers (draft §4.3), in a bounded cache.

import type { LookupAddress } from 'node:dns';
import { lookup as dnsLookup } from 'node:dns/promises';
import type { LookupFunction } from 'node:net';
import { Agent, request } from 'undici';
import { type AddressScope, addressScope } from './addresses.ts';

export const MAX_DOCUMENT_BYTES = 5 * 1024;
export const FETCH_TIMEOUT_MS = 5_000;
const MAX_URL_LENGTH = 2048;
const MAX_REDIRECT_URIS = 20;
const MAX_CACHE_SECONDS = 86_400;

export type ClientMetadataErrorCode =
  | 'invalid_client_id'
  | 'forbidden_address'
  | 'unresolvable'
  | 'redirect'
  | 'bad_status'
  | 'too_large'
  | 'timeout'
  | 'fetch_failed'
  | 'invalid_document';

/** Why a client ID metadata document was refused; the message is safe to show the client. */
export class ClientMetadataError extends Error {
  constructor(
    readonly code: ClientMetadataErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/** The client metadata Gatehouse keeps from a document: only fields it understands and allows. */
export interface ClientMetadata {
  client_id: string;
  client_name: string;
  redirect_uris: string[];
  grant_types: string[];
  response_types: string[];
  /** Always `none`: a document-named client is public (draft §4.1 forbids shared secrets). */
  token_endpoint_auth_method: 'none';
  application_type: 'web' | 'native';
  scope?: string;
  client_uri?: string;
  logo_uri?: string;
}

export interface ClientMetadataFetcherOptions {
  /** Loopback addresses (and http to them): development and tests only. */
  allowLoopback?: boolean;
  /** Private, link-local and other non-public addresses: only for documents inside the network. */
  allowPrivateNetworks?: boolean;
  /** Resolves a host name to every address it has (tests: names that exist nowhere else). */
  resolve?: (hostname: string) => Promise<LookupAddress[]>;
  /** Extra trusted CA certificates (PEM), for a private PKI. */
  ca?: string[];
  cacheEntries?: number;
  maxBytes?: number;
  timeoutMs?: number;
  now?: () => number;
}

interface CacheEntry {
  metadata: ClientMetadata;
  expiresAt: number;
}

export class ClientMetadataFetcher {
  private readonly cache = new Map<string, CacheEntry>();
  private readonly pending = new Map<string, Promise<ClientMetadata>>();
  private readonly now: () => number;
  private readonly resolve: (hostname: string) => Promise<LookupAddress[]>;
  /** Network fetches made, for tests and metrics (cache hits do not count). */
  fetches = 0;

  constructor(private readonly options: ClientMetadataFetcherOptions = {}) {
    this.now = options.now ?? Date.now;
    this.resolve = options.resolve ?? ((hostname) => dnsLookup(hostname, { all: true, verbatim: true }));
  }

  /** The validated metadata for a `client_id` URL, from the cache or fetched; throws ClientMetadataError. */
  async get(clientId: string): Promise<ClientMetadata> {
    const cached = this.cache.get(clientId);
    if (cached) {
      this.cache.delete(clientId);
      if (cached.expiresAt > this.now()) {
        this.cache.set(clientId, cached); // most recently used goes last
        return cached.metadata;
      }
    }
    // Concurrent authorization requests for one client share one fetch.
    let inFlight = this.pending.get(clientId);
    if (!inFlight) {
      inFlight = this.fetch(clientId).finally(() => this.pending.delete(clientId));
      this.pending.set(clientId, inFlight);
    }
    return inFlight;
  }

  private async fetch(clientId: string): Promise<ClientMetadata> {
    const url = parseClientIdUrl(clientId, this.options.allowLoopback === true);
    const hostname = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
    const addresses = addressScope(hostname)
      ? [{ address: hostname, family: hostname.includes(':') ? 6 : 4 }]
      : await this.lookup(hostname);
    // Every address is checked, not only the one used: a name with one public and one internal
    // address must not be accepted on the strength of the public one.
    for (const { address } of addresses) this.checkAddress(addressScope(address) ?? 'private');
    if (url.protocol === 'http:' && !addresses.every(({ address }) => addressScope(address) === 'loopback')) {
      throw new ClientMetadataError('invalid_client_id', 'client_id must be an https URL');
    }
    const pinned = addresses[0]!;
    const timeoutMs = this.options.timeoutMs ?? FETCH_TIMEOUT_MS;
    const maxBytes = this.options.maxBytes ?? MAX_DOCUMENT_BYTES;
    const agent = new Agent({
      connections: 1,
      connect: {
        timeout: timeoutMs,
        ...(this.options.ca && { ca: this.options.ca }),
        // The connection goes to the address checked above, whatever DNS says now; TLS still
        // verifies the certificate against the host name (SNI and name check use the URL).
        lookup: ((_host, opts, callback) => {
          if (opts.all) callback(null, [pinned]);
          else callback(null, pinned.address, pinned.family);
        }) satisfies LookupFunction,
      },
    });
    this.fetches++;
    const signal = AbortSignal.timeout(timeoutMs);
    try {
      const response = await request(url, {
        dispatcher: agent,
        method: 'GET',
        headers: { accept: 'application/json' },
        signal,
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
      });
      if (response.statusCode >= 300 && response.statusCode < 400) {
        discard(response.body);
        throw new ClientMetadataError(
          'redirect',
          'the client metadata document URL redirects; redirects are not followed',
        );
      }
      if (response.statusCode !== 200) {
        discard(response.body);
        throw new ClientMetadataError(
          'bad_status',
          `the client metadata document answered ${response.statusCode}`,
        );
      }
      const declared = Number(response.headers['content-length']);
      if (Number.isFinite(declared) && declared > maxBytes) {
        discard(response.body);
        throw new ClientMetadataError(
          'too_large',
          `the client metadata document is larger than ${maxBytes} bytes`,
        );
      }
      const chunks: Buffer[] = [];
      let size = 0;
      for await (const chunk of response.body) {
        size += (chunk as Buffer).length;
        if (size > maxBytes) {
          discard(response.body);
          throw new ClientMetadataError(
            'too_large',
            `the client metadata document is larger than ${maxBytes} bytes`,
          );
        }
        chunks.push(chunk as Buffer);
      }
      const metadata = validateDocument(clientId, Buffer.concat(chunks).toString('utf8'));
      const lifetime = cacheLifetimeSeconds(response.headers, this.now());
      if (lifetime > 0) this.remember(clientId, metadata, lifetime);
      return metadata;
    } catch (error) {
      if (error instanceof ClientMetadataError) throw error;
      if (signal.aborted || isTimeout(error)) {
        throw new ClientMetadataError(
          'timeout',
          `the client metadata document took longer than ${timeoutMs} ms`,
        );
      }
      throw new ClientMetadataError('fetch_failed', 'the client metadata document could not be fetched');
    } finally {
      agent.destroy().catch(() => {});
    }
  }

  private async lookup(hostname: string): Promise<LookupAddress[]> {
    let addresses: LookupAddress[];
    try {
      addresses = await this.resolve(hostname);
    } catch {
      throw new ClientMetadataError('unresolvable', 'the client_id host name does not resolve');
    }
    if (addresses.length === 0)
      throw new ClientMetadataError('unresolvable', 'the client_id host name does not resolve');
    return addresses;
  }

  private checkAddress(scope: AddressScope): void {
    if (scope === 'loopback' && !this.options.allowLoopback) {
      throw new ClientMetadataError('forbidden_address', 'the client_id host is a loopback address');
    }
    if (scope === 'private' && !this.options.allowPrivateNetworks) {
      throw new ClientMetadataError('forbidden_address', 'the client_id host is not a public address');
    }
  }

  private remember(clientId: string, metadata: ClientMetadata, seconds: number): void {
    const limit = this.options.cacheEntries ?? 1000;
    this.cache.delete(clientId);
    // Least recently used first: Map iteration follows insertion order.
    while (this.cache.size >= limit) this.cache.delete(this.cache.keys().next().value!);
    this.cache.set(clientId, { metadata, expiresAt: this.now() + seconds * 1000 });
  }
}

/**
 * Checks a `client_id` URL (draft §3): https, a path, no fragment, no user info, no dot segments.
 * The URL must already be in canonical form (the parser's serialisation equals it), which also
 * refuses dot segments, `%2e` tricks and odd host spellings that would make two texts name one client.
 */
export function parseClientIdUrl(clientId: string, allowLoopbackHttp: boolean): URL {
  const refuse = (why: string) => new ClientMetadataError('invalid_client_id', `client_id ${why}`);
  if (clientId.length > MAX_URL_LENGTH || !URL.canParse(clientId)) throw refuse('must be an https URL');
  const url = new URL(clientId);
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && allowLoopbackHttp)) {
    throw refuse('must be an https URL');
  }
  if (url.username || url.password) throw refuse('must not contain credentials');
  if (clientId.includes('#')) throw refuse('must not contain a fragment');
  if (url.pathname === '/' || url.pathname === '') throw refuse('must contain a path');
  if (url.href !== clientId) throw refuse('must be a canonical URL without dot segments');
  return url;
}

/** Validates the document against the URL it came from and keeps the fields Gatehouse allows. */
export function validateDocument(clientId: string, text: string): ClientMetadata {
  const invalid = (why: string) =>
    new ClientMetadataError('invalid_document', `client metadata document: ${why}`);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw invalid('not JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw invalid('not a JSON object');
  const doc = value as Record<string, unknown>;
  if (doc.client_id !== clientId) throw invalid('client_id does not equal the document URL');
  if ('client_secret' in doc || 'client_secret_expires_at' in doc)
    throw invalid('must not contain a client secret');
  for (const field of ['jwks_uri', 'jwks', 'request_uris', 'sector_identifier_uri']) {
    if (field in doc) throw invalid(`${field} is not supported`);
  }
  const method = doc.token_endpoint_auth_method ?? 'none';
  if (method !== 'none') throw invalid('token_endpoint_auth_method must be none');
  if (typeof doc.client_name !== 'string' || doc.client_name.length === 0 || doc.client_name.length > 200) {
    throw invalid('client_name is required (at most 200 characters)');
  }
  const redirects = doc.redirect_uris;
  if (
    !Array.isArray(redirects) ||
    redirects.length === 0 ||
    redirects.length > MAX_REDIRECT_URIS ||
    !redirects.every((uri) => typeof uri === 'string' && isRedirectUri(uri))
  ) {
    throw invalid(`redirect_uris must list 1 to ${MAX_REDIRECT_URIS} absolute URIs without fragments`);
  }
  const grantTypes = stringList(doc.grant_types, ['authorization_code']);
  if (!grantTypes?.every((grant) => grant === 'authorization_code' || grant === 'refresh_token')) {
    throw invalid('grant_types may only be authorization_code and refresh_token');
  }
  const responseTypes = stringList(doc.response_types, ['code']);
  if (!responseTypes?.every((type) => type === 'code')) throw invalid('response_types may only be code');
  const applicationType = doc.application_type ?? 'web';
  if (applicationType !== 'web' && applicationType !== 'native')
    throw invalid('application_type must be web or native');
  if (doc.scope !== undefined && (typeof doc.scope !== 'string' || doc.scope.length > 1000))
    throw invalid('scope must be a string');
  const metadata: ClientMetadata = {
    client_id: clientId,
    client_name: doc.client_name,
    redirect_uris: redirects as string[],
    grant_types: grantTypes,
    response_types: responseTypes,
    token_endpoint_auth_method: 'none',
    application_type: applicationType,
    ...(typeof doc.scope === 'string' && { scope: doc.scope }),
  };
  // Shown on pages, never fetched by Gatehouse: https only, so no mixed content or javascript:.
  for (const field of ['client_uri', 'logo_uri'] as const) {
    const uri = doc[field];
    if (
      typeof uri === 'string' &&
      uri.length <= MAX_URL_LENGTH &&
      uri.startsWith('https://') &&
      URL.canParse(uri)
    ) {
      metadata[field] = uri;
    }
  }
  return metadata;
}

function stringList(value: unknown, fallback: string[]): string[] | null {
  if (value === undefined) return fallback;
  if (!Array.isArray(value) || value.length === 0 || value.length > 5) return null;
  return value.every((entry) => typeof entry === 'string') ? (value as string[]) : null;
}

/** An absolute redirect URI without fragment or credentials (RFC 6749 §3.1.2, RFC 8252 §7). */
function isRedirectUri(uri: string): boolean {
  if (uri.length > MAX_URL_LENGTH || uri.includes('#') || !URL.canParse(uri)) return false;
  const url = new URL(uri);
  if (url.username || url.password) return false;
  if (url.protocol === 'javascript:' || url.protocol === 'data:' || url.protocol === 'file:') return false;
  // Plain http only back to the user's own machine (RFC 8252 §7.3).
  if (url.protocol === 'http:')
    return addressScope(url.hostname) === 'loopback' || url.hostname === 'localhost';
  return true;
}

/** Seconds the response may be reused per RFC 9111 §4.2.1 (max-age, else Expires); 0 when not at all. */
export function cacheLifetimeSeconds(
  headers: Record<string, string | string[] | undefined>,
  nowMs: number,
): number {
  const header = (name: string) => {
    const value = headers[name];
    return Array.isArray(value) ? value.join(', ') : (value ?? '');
  };
  const directives = header('cache-control').toLowerCase();
  if (/(^|[\s,])(no-store|no-cache)([\s,=]|$)/.test(directives)) return 0;
  const maxAge = /(?:^|[\s,])max-age\s*=\s*"?(\d{1,10})"?/.exec(directives);
  let seconds: number;
  if (maxAge) {
    seconds = Number(maxAge[1]);
    const age = Number(header('age'));
    if (Number.isFinite(age) && age > 0) seconds -= age;
  } else {
    const expires = Date.parse(header('expires'));
    if (Number.isNaN(expires)) return 0;
    const date = Date.parse(header('date'));
    seconds = Math.floor((expires - (Number.isNaN(date) ? nowMs : date)) / 1000);
  }
  return Math.max(0, Math.min(MAX_CACHE_SECONDS, seconds));
}

/** Drops a response body early; the abort it causes is expected, not an error to report. */
function discard(body: NodeJS.ReadableStream & { destroy(): void }): void {
  body.on('error', () => {});
  body.destroy();
}

function isTimeout(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return (
    code === 'UND_ERR_HEADERS_TIMEOUT' ||
    code === 'UND_ERR_BODY_TIMEOUT' ||
    code === 'UND_ERR_CONNECT_TIMEOUT' ||
    (error as Error | null)?.name === 'TimeoutError' ||
    (error as Error | null)?.name === 'AbortError'
  );
}
