// Hostile tokens in every place the proxy reads one. None may reach the origin, none may cause
// a 5xx; a genuine token is the control that shows the setup lets valid ones through.
import { createHmac, generateKeyPairSync, sign } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TokenError } from '../../src/keys/jwt.ts';
import { TokenVerifier } from '../../src/proxy/tokens.ts';
import {
  API,
  app,
  appToken,
  type Origin,
  type ProxyHarness,
  policy,
  route,
  send,
  startOrigin,
  startProxyHarness,
} from './support.ts';

let harness: ProxyHarness;
let origin: Origin;
const target = app({
  name: 'target',
  hosts: ['target.test'],
  policies: [policy('allow', [{ everyone: {} }])],
});
const elsewhere = app({
  name: 'elsewhere',
  hosts: ['elsewhere.test'],
  policies: [policy('allow', [{ everyone: {} }])],
});

beforeAll(async () => {
  origin = await startOrigin();
  harness = await startProxyHarness({ apps: [target, elsewhere], ingress: [route('target.test', origin)] });
});

afterAll(async () => {
  await harness?.close();
  await origin?.close();
});

const b64 = (value: unknown) =>
  Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');
const nowSeconds = () => Math.floor(Date.now() / 1000);

/** Signs arbitrary header and payload JSON text with the real current key (RS256). */
function signRaw(header: string | object, payload: string | object): string {
  const { kid, key } = harness.gateway.gateway.keys.signingKey();
  const head =
    typeof header === 'string' ? header : JSON.stringify({ alg: 'RS256', kid, typ: 'JWT', ...header });
  const input = `${b64(head)}.${b64(payload)}`;
  return `${input}.${sign('sha256', Buffer.from(input), key).toString('base64url')}`;
}

function claims(extra: Record<string, unknown> = {}) {
  const now = nowSeconds();
  return {
    type: 'app',
    aud: [target.aud],
    sub: 'b5d5d1c8-3f2a-4e53-9f3c-6a6f0c5e2a11',
    email: 'alice@example.com',
    iss: harness.teamDomain,
    iat: now,
    nbf: now,
    exp: now + 600,
    ...extra,
  };
}

async function forgeries(): Promise<[string, string][]> {
  const genuine = await appToken(harness, target);
  const [h, p, s] = genuine.split('.') as [string, string, string];
  const { kid } = harness.gateway.gateway.keys.signingKey();
  const publicPem = harness.gateway.gateway.keys
    .verificationKey(kid)!
    .export({ format: 'pem', type: 'spki' })
    .toString();
  const attacker = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const hsInput = `${b64({ alg: 'HS256', kid, typ: 'JWT' })}.${b64(claims())}`;
  const attackerInput = `${b64({ alg: 'RS256', kid, typ: 'JWT' })}.${b64(claims())}`;
  const flipped = Buffer.from(s, 'base64url');
  flipped[10]! ^= 0x01;
  return [
    ['alg none', `${b64({ alg: 'none', typ: 'JWT' })}.${b64(claims())}.`],
    [
      'HS256 keyed with the public key',
      `${hsInput}.${createHmac('sha256', publicPem).update(hsInput).digest('base64url')}`,
    ],
    ['unknown kid', signRaw({ kid: 'f'.repeat(64) }, claims())],
    ['traversal kid', signRaw({ kid: '../../../../etc/passwd' }, claims())],
    ['jku header', signRaw({ jku: 'https://evil.example/jwks' }, claims())],
    ['x5u header', signRaw({ x5u: 'https://evil.example/cert' }, claims())],
    ['jwk header', signRaw({ jwk: attacker.publicKey.export({ format: 'jwk' }) }, claims())],
    [
      'attacker key with the real kid',
      `${attackerInput}.${sign('sha256', Buffer.from(attackerInput), attacker.privateKey).toString('base64url')}`,
    ],
    [
      'expired',
      signRaw({}, claims({ iat: nowSeconds() - 7200, nbf: nowSeconds() - 7200, exp: nowSeconds() - 3600 })),
    ],
    ['future nbf', signRaw({}, claims({ nbf: nowSeconds() + 3600 }))],
    ['future iat', signRaw({}, claims({ iat: nowSeconds() + 3600 }))],
    ['wrong iss', signRaw({}, claims({ iss: 'https://evil.cloudflareaccess.com' }))],
    ['org token', signRaw({}, claims({ type: 'org' }))],
    ['aud as a bare string', signRaw({}, claims({ aud: target.aud }))],
    ['no aud', signRaw({}, claims({ aud: undefined }))],
    [
      'tampered payload',
      `${h}.${b64({ ...JSON.parse(Buffer.from(p, 'base64url').toString()), email: 'ceo@example.com' })}.${s}`,
    ],
    ['flipped signature bit', `${h}.${p}.${flipped.toString('base64url')}`],
    ['truncated', genuine.slice(0, genuine.length - 20)],
    ['two segments', `${h}.${p}`],
    ['four segments', `${genuine}.${s}`],
    ['oversized', signRaw({}, claims({ pad: 'x'.repeat(9000) }))],
    [
      'duplicate aud claim',
      signRaw(
        {},
        `{"type":"app","aud":["${elsewhere.aud}"],"sub":"x","iss":"${harness.teamDomain}","iat":${nowSeconds()},"nbf":${nowSeconds()},"exp":${nowSeconds() + 600},"aud":["${target.aud}"]}`,
      ),
    ],
    ['duplicate alg header', signRaw(`{"alg":"none","kid":"${kid}","typ":"JWT","alg":"RS256"}`, claims())],
    ['not a JWT at all', 'hello'],
  ];
}

describe('hostile tokens', () => {
  it('lets the genuine token through in every place (control)', async () => {
    const token = await appToken(harness, target);
    for (const header of [
      ['cookie', `CF_Authorization=${token}`],
      ['cf-access-token', token],
      ['authorization', `Bearer ${token}`],
    ] as [string, string][]) {
      expect((await send(harness.port, { host: 'target.test', headers: [API, header] })).status).toBe(200);
    }
  });

  for (const place of ['cookie', 'cf-access-token', 'authorization'] as const) {
    it(`refuses every forgery in ${place}`, async () => {
      const before = origin.seen.length;
      for (const [name, token] of await forgeries()) {
        const header: [string, string] =
          place === 'cookie'
            ? ['cookie', `CF_Authorization=${token}`]
            : place === 'authorization'
              ? ['authorization', `Bearer ${token}`]
              : ['cf-access-token', token];
        const response = await send(harness.port, { host: 'target.test', headers: [API, header] });
        expect(response.status, `${name} in ${place}`).toBe(401);
      }
      expect(origin.seen.length).toBe(before);
    });
  }

  it('answers invalid_token for a broken token in Cf-Access-Token', async () => {
    const response = await send(harness.port, {
      host: 'target.test',
      headers: [API, ['cf-access-token', 'a.b.c']],
    });
    expect(response.headers['www-authenticate']).toBe('Bearer error="invalid_token"');
  });
});

describe('verified-token cache', () => {
  it('is emptied on key rotation: a token under a withdrawn key stops working', async () => {
    const { keys } = harness.gateway.gateway;
    const verifier = new TokenVerifier(keys, harness.teamDomain);
    keys.onChange(() => verifier.clear());
    const token = await appToken(harness, target);
    expect((await verifier.verify(token)).kind).toBe('app');
    // Two rotations: the token's key is neither current nor previous any more.
    await keys.rotate();
    await keys.rotate();
    await expect(verifier.verify(token)).rejects.toBeInstanceOf(TokenError);
    const response = await send(harness.port, {
      host: 'target.test',
      headers: [API, ['cf-access-token', token]],
    });
    expect(response.status).toBe(401);
    const fresh = await appToken(harness, target);
    expect(
      (await send(harness.port, { host: 'target.test', headers: [API, ['cf-access-token', fresh]] })).status,
    ).toBe(200);
  });

  it('stays bounded', async () => {
    const verifier = new TokenVerifier(harness.gateway.gateway.keys, harness.teamDomain, 3);
    const tokens = await Promise.all(
      [1, 2, 3, 4, 5].map((n) => appToken(harness, target, { identity_nonce: `n${n}` })),
    );
    for (const token of tokens) await verifier.verify(token);
    expect(verifier.size).toBe(3);
  });
});
