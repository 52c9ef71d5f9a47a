// The external evaluation client against a real endpoint on 127.0.0.1 that behaves like
// Cloudflare's example worker (verifies our token, answers a signed {success, nonce}), and
// against endpoints that misbehave in every way the client must refuse.
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, type JWTPayload, jwtVerify, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compilePolicies, evaluate } from '../../src/policy/index.ts';
import {
  createExternalEvaluator,
  type ExternalEvaluationRequestClaims,
  type ExternalEvaluatorOptions,
} from '../../src/policy-external/external-evaluation.ts';
import { NOW, policy } from './fixtures.ts';

type KeyPair = Awaited<ReturnType<typeof generateKeyPair>>;

let server: Server;
let base: string;
let accountKey: KeyPair;
let endpointRsa: KeyPair;
let endpointEc: KeyPair;
let rogueRsa: KeyPair;
const hits = new Map<string, number>();
const received: ExternalEvaluationRequestClaims[] = [];

const alice = { email: 'alice@example.com', userUid: '6f1c3b1e-0000-4000-8000-000000000001', amr: ['pwd'] };

/** What the endpoint answers per scenario, given the verified request claims. */
async function answer(
  scenario: string,
  claims: JWTPayload,
): Promise<{ status: number; body: string; headers?: Record<string, string> }> {
  const now = Math.floor(Date.now() / 1000);
  const reply = (payload: JWTPayload, key: KeyPair, alg = 'RS256', kid = 'eval-rs') =>
    new SignJWT(payload).setProtectedHeader({ alg, kid }).sign(key.privateKey);
  const ok = { success: true, nonce: claims.nonce, iat: now, exp: now + 60 };
  const json = async (token: string | Promise<string>) => ({
    status: 200,
    body: JSON.stringify({ token: await token }),
  });
  switch (scenario) {
    case 'allow':
      return json(reply(ok, endpointRsa));
    case 'allow-es256':
      return json(reply(ok, endpointEc, 'ES256', 'eval-ec'));
    case 'allow-short':
      return json(reply({ ...ok, exp: now + 5 }, endpointRsa));
    case 'deny':
      return json(reply({ ...ok, success: false }, endpointRsa));
    case 'success-as-text':
      return json(reply({ ...ok, success: 'true' }, endpointRsa));
    case 'bad-signature':
      return json(reply(ok, rogueRsa));
    case 'wrong-nonce':
      return json(reply({ ...ok, nonce: 'an-earlier-nonce' }, endpointRsa));
    case 'expired':
      return json(reply({ ...ok, iat: now - 120, exp: now - 60 }, endpointRsa));
    case 'no-exp':
      return json(reply({ success: true, nonce: claims.nonce }, endpointRsa));
    case 'hs256':
      return json(
        new SignJWT(ok).setProtectedHeader({ alg: 'HS256' }).sign(new TextEncoder().encode('x'.repeat(32))),
      );
    case 'slow':
      await new Promise((resolve) => setTimeout(resolve, 2000));
      return json(reply(ok, endpointRsa));
    case 'error':
      return { status: 500, body: 'internal error' };
    case 'redirect':
      return { status: 302, body: '', headers: { location: `${base}/evaluate/allow` } };
    case 'not-json':
      return { status: 200, body: 'hello' };
    case 'huge':
      return { status: 200, body: JSON.stringify({ token: 'x'.repeat(100_000) }) };
    default:
      return { status: 404, body: '' };
  }
}

async function readJson(request: IncomingMessage): Promise<{ token?: string }> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

beforeAll(async () => {
  [accountKey, endpointRsa, endpointEc, rogueRsa] = await Promise.all([
    generateKeyPair('RS256'),
    generateKeyPair('RS256'),
    generateKeyPair('ES256'),
    generateKeyPair('RS256'),
  ]);
  const jwks = {
    keys: [
      { ...(await exportJWK(endpointRsa.publicKey)), kid: 'eval-rs', alg: 'RS256', use: 'sig' },
      { ...(await exportJWK(endpointEc.publicKey)), kid: 'eval-ec', alg: 'ES256', use: 'sig' },
    ],
  };
  server = createServer(async (request, response) => {
    const url = request.url ?? '/';
    hits.set(url, (hits.get(url) ?? 0) + 1);
    if (url === '/keys') {
      response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(jwks));
      return;
    }
    try {
      // As the example worker does: only answer requests signed with the Access account key.
      const { token } = await readJson(request);
      const { payload } = await jwtVerify<ExternalEvaluationRequestClaims>(
        token ?? '',
        accountKey.publicKey,
        {
          algorithms: ['RS256'],
        },
      );
      received.push(payload);
      const { status, body, headers } = await answer(url.replace('/evaluate/', ''), payload);
      response.writeHead(status, { 'content-type': 'application/json', ...headers }).end(body);
    } catch {
      response.writeHead(403).end();
    }
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  server.close();
});

const sign = (claims: ExternalEvaluationRequestClaims) =>
  new SignJWT(claims)
    .setProtectedHeader({ alg: 'RS256', kid: 'account' })
    .setIssuer('http://127.0.0.1:8080')
    .sign(accountKey.privateKey);

// The production deadline: a loaded CI machine can take more than a few hundred ms for the first
// JWKS fetch. The timeout test sets its own short deadline.
function evaluator(options: Partial<ExternalEvaluatorOptions> = {}) {
  return createExternalEvaluator({ sign, timeoutMs: 5000, ...options });
}

const target = (scenario: string) => ({
  evaluateUrl: `${base}/evaluate/${scenario}`,
  keysUrl: `${base}/keys`,
});

describe('external evaluation client', () => {
  it('accepts a verified RS256 answer with the same nonce and success: true', async () => {
    const before = Date.now();
    const result = await evaluator({ cacheTtlMs: 45_000 }).evaluate(target('allow'), alice);
    expect(result.success).toBe(true);
    expect(result.detail).toBeUndefined();
    expect(result.expiresAt).toBeGreaterThanOrEqual(before + 45_000);
    expect(result.expiresAt).toBeLessThanOrEqual(Date.now() + 45_000);

    const claims = received.at(-1)!;
    expect(claims.identity).toEqual({ email: alice.email, user_uuid: alice.userUid, amr: ['pwd'] });
    expect(claims.aud).toBe(target('allow').evaluateUrl);
    expect(claims.nonce).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(claims.exp - claims.iat).toBe(60);
  });

  it('accepts ES256 answers', async () => {
    expect((await evaluator().evaluate(target('allow-es256'), alice)).success).toBe(true);
  });

  it('uses a fresh nonce per request', async () => {
    const client = evaluator({ cacheTtlMs: 0 });
    await client.evaluate(target('allow'), alice);
    await client.evaluate(target('allow'), alice);
    const [a, b] = received.slice(-2);
    expect(a!.nonce).not.toBe(b!.nonce);
  });

  it('keeps an answer no longer than its exp', async () => {
    const result = await evaluator({ cacheTtlMs: 60_000 }).evaluate(target('allow-short'), alice);
    expect(result.success).toBe(true);
    expect(result.expiresAt).toBeLessThanOrEqual(Date.now() + 5000);
  });

  it.each([
    ['deny', 'answered success: false'],
    ['success-as-text', 'answered success: false'],
    ['bad-signature', 'failed: ERR_JWS_SIGNATURE_VERIFICATION_FAILED'],
    ['wrong-nonce', 'answer nonce does not match the request'],
    ['expired', 'failed: ERR_JWT_EXPIRED'],
    ['no-exp', 'failed: ERR_JWT_CLAIM_VALIDATION_FAILED'],
    ['hs256', 'failed: ERR_JOSE_ALG_NOT_ALLOWED'],
    ['error', 'answered HTTP 500'],
    ['redirect', 'failed: unexpected redirect'],
    ['not-json', 'answer is not JSON'],
    ['huge', 'answer larger than 65536 bytes'],
    ['missing', 'answered HTTP 404'],
  ])('fails closed on %s', async (scenario, detail) => {
    const result = await evaluator().evaluate(target(scenario), alice);
    expect(result).toMatchObject({ success: false, detail });
  });

  it('does not follow redirects', async () => {
    const before = hits.get('/evaluate/allow') ?? 0;
    await evaluator().evaluate(target('redirect'), alice);
    expect(hits.get('/evaluate/allow') ?? 0).toBe(before);
  });

  it('gives up after the timeout', async () => {
    const started = Date.now();
    const result = await evaluator({ timeoutMs: 200 }).evaluate(target('slow'), alice);
    expect(result).toMatchObject({ success: false, detail: 'no answer within 200 ms' });
    expect(Date.now() - started).toBeLessThan(1500);
  });

  it('fails closed when nothing listens', async () => {
    const closed = createServer();
    closed.listen(0, '127.0.0.1');
    await once(closed, 'listening');
    const url = `http://127.0.0.1:${(closed.address() as AddressInfo).port}/`;
    closed.close();
    await once(closed, 'close');
    const result = await evaluator().evaluate({ evaluateUrl: url, keysUrl: `${url}keys` }, alice);
    expect(result).toMatchObject({ success: false, detail: 'failed: ECONNREFUSED' });
  });

  it('fails closed when signing fails', async () => {
    const result = await evaluator({ sign: () => Promise.reject(new Error('no signing key')) }).evaluate(
      target('allow'),
      alice,
    );
    expect(result).toMatchObject({ success: false, detail: 'failed: no signing key' });
  });
});

describe('external evaluation cache', () => {
  it('reuses an answer per URL and identity until the TTL passes', async () => {
    let offset = 0;
    const client = evaluator({ cacheTtlMs: 30_000, now: () => Date.now() + offset });
    const url = '/evaluate/allow-es256';
    const count = () => hits.get(url) ?? 0;
    const start = count();
    await client.evaluate(target('allow-es256'), alice);
    await client.evaluate(target('allow-es256'), alice);
    expect(count()).toBe(start + 1);
    await client.evaluate(target('allow-es256'), { ...alice, amr: ['pwd', 'mfa'] });
    await client.evaluate(target('allow-es256'), { email: 'bob@example.com' });
    expect(count()).toBe(start + 3);
    offset = 31_000;
    await client.evaluate(target('allow-es256'), alice);
    expect(count()).toBe(start + 4);
  });

  it('shares one exchange between concurrent evaluations', async () => {
    const client = evaluator();
    const start = hits.get('/evaluate/deny') ?? 0;
    const results = await Promise.all([1, 2, 3].map(() => client.evaluate(target('deny'), alice)));
    expect(hits.get('/evaluate/deny')).toBe(start + 1);
    expect(new Set(results).size).toBe(1);
  });

  it('remembers failures briefly so a dead endpoint is not hit per request', async () => {
    let offset = 0;
    const client = evaluator({ failureCacheTtlMs: 5000, now: () => Date.now() + offset });
    const start = hits.get('/evaluate/error') ?? 0;
    await client.evaluate(target('error'), alice);
    await client.evaluate(target('error'), alice);
    expect(hits.get('/evaluate/error')).toBe(start + 1);
    offset = 6000;
    await client.evaluate(target('error'), alice);
    expect(hits.get('/evaluate/error')).toBe(start + 2);
  });

  it('drops the least recently used answers beyond its size', async () => {
    const client = evaluator({ maxCacheEntries: 1 });
    const start = hits.get('/evaluate/allow') ?? 0;
    await client.evaluate(target('allow'), alice);
    await client.evaluate(target('allow'), { email: 'bob@example.com' });
    await client.evaluate(target('allow'), alice);
    expect(hits.get('/evaluate/allow')).toBe(start + 3);
  });
});

describe('with the policy engine', () => {
  it('feeds verdicts to evaluate, keyed by evaluate_url', async () => {
    const good = target('allow');
    const bad = target('deny');
    const app = compilePolicies([
      policy('deny', [{ external_evaluation: { evaluate_url: bad.evaluateUrl, keys_url: bad.keysUrl } }]),
      policy('allow', [{ external_evaluation: { evaluate_url: good.evaluateUrl, keys_url: good.keysUrl } }]),
    ]);
    const verdicts = await evaluator().evaluateAll(app.externalEvaluations, alice);
    expect([...verdicts.keys()]).toEqual([bad.evaluateUrl, good.evaluateUrl]);
    const now = Date.now();
    expect(evaluate(app, { now, identity: alice, externalEvaluations: verdicts }).decision).toBe('allow');
    expect(evaluate(app, { now, identity: alice }).decision).toBe('deny');
    // Verdicts past their expiry fail closed.
    expect(
      evaluate(app, { now: NOW + 10 ** 12, identity: alice, externalEvaluations: verdicts }).policy,
    ).toBeNull();
  });
});
