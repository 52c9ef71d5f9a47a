// A whole gateway with the proxy wired in, real origins on loopback, and a raw HTTP client that
// can send what browsers and attackers send (repeated headers, any Host).
import { randomBytes, randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { IngressRule } from '../../src/config/settings.ts';
import { mintJwt } from '../../src/keys/jwt.ts';
import { type CompiledApp, compilePolicies, evaluate, type Identity } from '../../src/policy/index.ts';
import type { PolicyDefinition } from '../../src/policy/types.ts';
import type { ProxyApp, ProxyConfig } from '../../src/proxy/config.ts';
import type { ForwardLimits } from '../../src/proxy/forward.ts';
import { GatehouseProxy } from '../../src/proxy/proxy.ts';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { proxyApp } from '../support/proxy-app.ts';

export interface ProxyHarness {
  gateway: TestGateway;
  proxy: GatehouseProxy;
  port: number;
  teamDomain: string;
  config: ProxyConfig;
  /** Replaces the configuration (a new object, as the snapshot does on change). */
  setConfig(change: Partial<ProxyConfig>): void;
  close(): Promise<void>;
}

export async function startProxyHarness(
  config: Partial<ProxyConfig>,
  limits: Partial<ForwardLimits> = {},
): Promise<ProxyHarness> {
  let proxy: GatehouseProxy | null = null;
  const gateway = await startTestGateway({
    server: {
      appHosts: (req, res, host) => proxy!.handleRequest(req, res, host),
      appUpgrades: (req, socket, head, host) => proxy!.handleUpgrade(req, socket, head, host),
    },
  });
  const harness: ProxyHarness = {
    gateway,
    proxy: null as unknown as GatehouseProxy,
    port: Number(new URL(gateway.url).port),
    teamDomain: gateway.url,
    config: {
      apps: [],
      ingress: [],
      org: { denyUnmatchedRequests: true, strictServiceTokens: false },
      serviceTokens: new Map(),
      userRevocations: new Map(),
      ...config,
    },
    setConfig(change) {
      harness.config = { ...harness.config, ...change };
    },
    async close() {
      await proxy!.close();
      await gateway.close();
    },
  };
  proxy = new GatehouseProxy({
    teamDomain: gateway.url,
    keys: gateway.gateway.keys,
    config: () => harness.config,
    limits,
    onError: (error) => console.error('proxy error', error),
  });
  harness.proxy = proxy;
  return harness;
}

/** An app with defaults as the API creates them, and its policies compiled by the real engine. */
export function app(
  overrides: Omit<Partial<ProxyApp>, 'policies'> & { policies?: PolicyDefinition[] },
): ProxyApp {
  const { policies, ...rest } = overrides;
  const compiled = compilePolicies(policies ?? []);
  const built = proxyApp(compiled, {
    id: randomUUID(),
    aud: randomBytes(32).toString('hex'),
    name: 'app',
    hosts: [],
    ...rest,
  });
  compiledOf.set(built, compiled);
  return built;
}

const compiledOf = new WeakMap<ProxyApp, CompiledApp>();

/**
 * What the login writes into the app token about the policy that admitted the user: it evaluates
 * the app's policies with the full login identity (here: the email) and records the winner.
 */
export function admittedClaims(target: ProxyApp, identity: Identity): Record<string, unknown> {
  const compiled = compiledOf.get(target);
  if (!compiled) return {};
  const decision = evaluate(compiled, { now: Date.now(), identity });
  return decision.policy
    ? { policy_id: decision.policy.id, policy_precedence: decision.policy.precedence }
    : {};
}

let precedence = 0;
export function policy(
  decision: PolicyDefinition['decision'],
  include: PolicyDefinition['include'],
  extra: Partial<PolicyDefinition> = {},
): PolicyDefinition {
  precedence += 1;
  return { id: randomUUID(), name: `${decision} ${precedence}`, decision, precedence, include, ...extra };
}

export interface SeenRequest {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  rawHeaders: string[];
  body: Buffer;
}

export interface Origin {
  url: string;
  seen: SeenRequest[];
  server: http.Server;
  close(): Promise<void>;
}

/** An origin that records what reached it and answers 200 with a small JSON echo. */
export async function startOrigin(
  handler?: (req: http.IncomingMessage, res: http.ServerResponse) => void,
): Promise<Origin> {
  const seen: SeenRequest[] = [];
  const server = http.createServer((req, res) => {
    if (handler) return handler(req, res);
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      seen.push({
        method: req.method!,
        url: req.url!,
        headers: req.headers,
        rawHeaders: req.rawHeaders,
        body: Buffer.concat(chunks),
      });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ ok: true, url: req.url }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    seen,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export function route(
  hostname: string,
  origin: Origin | string,
  extra: Partial<IngressRule> = {},
): IngressRule {
  return { hostname, service: typeof origin === 'string' ? origin : origin.url, ...extra };
}

export interface Response {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** One request to the gateway with the given Host; `headers` may repeat names. */
export function send(
  port: number,
  options: {
    host: string;
    path?: string;
    method?: string;
    headers?: [string, string][];
    body?: Buffer | string;
  },
): Promise<Response> {
  return new Promise((resolve, reject) => {
    const headers: string[] = ['host', options.host];
    for (const [name, value] of options.headers ?? []) headers.push(name, value);
    const req = http.request({
      host: '127.0.0.1',
      port,
      method: options.method ?? 'GET',
      path: options.path ?? '/',
      headers,
      setHost: false,
      agent: false,
    });
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () =>
        resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks).toString() }),
      );
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

export const BROWSER: [string, string] = ['accept', 'text/html,application/xhtml+xml,*/*;q=0.8'];
export const API: [string, string] = ['accept', 'application/json'];

/**
 * An app token as the login issues it (spec §4.3), naming the policy that admits its email
 * (admittedClaims) unless `claims` says otherwise.
 */
export function appToken(
  harness: ProxyHarness,
  target: ProxyApp,
  claims: Record<string, unknown> = {},
  lifetimeSeconds = 3600,
): Promise<string> {
  const email = typeof claims.email === 'string' ? claims.email : 'alice@example.com';
  return mintJwt(
    harness.gateway.gateway.keys,
    {
      type: 'app',
      aud: [target.aud],
      sub: 'b5d5d1c8-3f2a-4e53-9f3c-6a6f0c5e2a11',
      email,
      identity_nonce: 'nonce-1',
      country: 'NL',
      ...admittedClaims(target, { email }),
      ...claims,
    },
    {
      issuer: harness.teamDomain,
      expiresAt: Math.floor(Date.now() / 1000) + lifetimeSeconds,
      // mintJwt sets iat (and nbf) from its clock: an `iat` claim asks for that issue time.
      ...(typeof claims.iat === 'number' && { now: new Date(claims.iat * 1000) }),
    },
  );
}

/** A flow-2 RFC 9068 access token as the SaaS issuer will mint it (decision 2). */
export function saasAccessToken(
  harness: ProxyHarness,
  clientId: string,
  claims: Record<string, unknown> = {},
): Promise<string> {
  return mintJwt(
    harness.gateway.gateway.keys,
    {
      aud: clientId,
      client_id: clientId,
      sub: 'b5d5d1c8-3f2a-4e53-9f3c-6a6f0c5e2a11',
      email: 'alice@example.com',
      scope: 'openid email',
      jti: randomUUID(),
      ...claims,
    },
    {
      issuer: `${harness.teamDomain}/cdn-cgi/access/sso/oidc/${clientId}`,
      expiresAt: Math.floor(Date.now() / 1000) + 600,
      type: 'at+jwt',
    },
  );
}

/** Decodes a JWT payload (the test checks what the origin received). */
export function claimsOf(token: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8')) as Record<
    string,
    unknown
  >;
}
