// Signing keys as relying parties see them: the certs endpoint in Cloudflare's exact shape,
// tokens that verify with jose's remote JWKS across one rotation and not after two, and a
// verifier that refuses every token it should.
import {
  createHash,
  createPublicKey,
  generateKeyPairSync,
  type JsonWebKey,
  randomBytes,
  X509Certificate,
} from 'node:crypto';
import { createRemoteJWKSet, type JWTPayload, jwtVerify, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CLOCK_TOLERANCE_SECONDS,
  MAX_TOKEN_LENGTH,
  mintJwt,
  TokenError,
  verifyJwt,
} from '../../src/keys/jwt.ts';
import { type CertsDocument, KeyRing, PREVIOUS_KEY_GRACE_MS } from '../../src/keys/keyring.ts';
import { decodeMasterKey } from '../../src/keys/master-key.ts';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';

let tg: TestGateway;
beforeAll(async () => {
  tg = await startTestGateway();
});
afterAll(async () => {
  await tg?.close();
});

const nowSeconds = () => Math.floor(Date.now() / 1000);

async function fetchCerts(): Promise<CertsDocument> {
  const response = await fetch(`${tg.url}/cdn-cgi/access/certs`);
  expect(response.status).toBe(200);
  expect(response.headers.get('content-type')).toMatch(/^application\/json/);
  return (await response.json()) as CertsDocument;
}

/** Verifies as an origin would: a fresh remote JWKS (no cache) on the team domain's certs. */
async function verifiesRemotely(token: string, audience: string): Promise<boolean> {
  const jwks = createRemoteJWKSet(new URL(`${tg.url}/cdn-cgi/access/certs`));
  try {
    await jwtVerify(token, jwks, { issuer: tg.url, audience, algorithms: ['RS256'] });
    return true;
  } catch {
    return false;
  }
}

async function verifiesLocally(token: string, audience: string): Promise<boolean> {
  try {
    await verifyJwt(tg.gateway.keys, token, { issuer: tg.url, audience });
    return true;
  } catch (error) {
    expect(error).toBeInstanceOf(TokenError);
    return false;
  }
}

function mint(claims: JWTPayload = {}, options: { issuer?: string; expiresAt?: number; now?: Date } = {}) {
  return mintJwt(
    tg.gateway.keys,
    { aud: ['app-aud'], sub: 'user-1', email: 'user@example.com', ...claims },
    {
      issuer: options.issuer ?? tg.url,
      expiresAt: options.expiresAt ?? nowSeconds() + 600,
      now: options.now,
    },
  );
}

function checkCertsShape(certs: CertsDocument, kids: string[]): void {
  expect(Object.keys(certs).sort()).toEqual(['keys', 'public_cert', 'public_certs']);
  expect(certs.keys.map((key) => key.kid)).toEqual(kids);
  expect(certs.public_cert.kid).toBe(kids[0]);
  expect(certs.public_certs.map((entry) => entry.kid)).toEqual(kids);
  expect(certs.public_cert).toEqual(certs.public_certs[0]);
  for (const [index, jwk] of certs.keys.entries()) {
    expect(Object.keys(jwk).sort()).toEqual(['alg', 'e', 'kid', 'kty', 'n', 'use']);
    expect(jwk).toMatchObject({ kty: 'RSA', alg: 'RS256', use: 'sig', e: 'AQAB' });
    expect(jwk.kid).toMatch(/^[0-9a-f]{64}$/);
    expect(Buffer.from(jwk.n!, 'base64url')).toHaveLength(256); // 2048-bit modulus

    const entry = certs.public_certs[index]!;
    expect(Object.keys(entry).sort()).toEqual(['cert', 'kid']);
    expect(entry.cert).toMatch(
      /^-----BEGIN CERTIFICATE-----\r?\n[\s\S]+\r?\n-----END CERTIFICATE-----\r?\n?$/,
    );
    const cert = new X509Certificate(entry.cert);
    expect(cert.verify(cert.publicKey)).toBe(true); // self-signed by the key it carries
    expect(new Date(cert.validTo).getTime()).toBeGreaterThan(Date.now() + 42 * 86_400_000);
    const fromCert = cert.publicKey.export({ format: 'jwk' });
    expect({ n: fromCert.n, e: fromCert.e }).toEqual({ n: jwk.n, e: jwk.e });
    // The kid is the SHA-256 of the public key's SPKI.
    const spki = createPublicKey({
      key: jwk as JsonWebKey,
      format: 'jwk',
    }).export({
      type: 'spki',
      format: 'der',
    });
    expect(createHash('sha256').update(spki).digest('hex')).toBe(jwk.kid);
  }
}

describe('certs and rotation', () => {
  it('a fresh installation publishes exactly its one key', async () => {
    const certs = await fetchCerts();
    checkCertsShape(certs, [tg.gateway.keys.signingKey().kid]);
  });

  it('tokens verify with createRemoteJWKSet across one rotation, and not after a second', async () => {
    const first = await mint();
    const firstKid = tg.gateway.keys.signingKey().kid;
    expect(JSON.parse(Buffer.from(first.split('.')[0]!, 'base64url').toString())).toEqual({
      alg: 'RS256',
      kid: firstKid,
      typ: 'JWT',
    });
    expect(await verifiesRemotely(first, 'app-aud')).toBe(true);
    expect(await verifiesLocally(first, 'app-aud')).toBe(true);

    const secondKid = await tg.gateway.keys.rotate();
    expect(secondKid).not.toBe(firstKid);
    const second = await mint();
    checkCertsShape(await fetchCerts(), [secondKid, firstKid]);
    // The previous key still verifies what it signed; the new key signs from now on.
    expect(await verifiesRemotely(first, 'app-aud')).toBe(true);
    expect(await verifiesLocally(first, 'app-aud')).toBe(true);
    expect(await verifiesRemotely(second, 'app-aud')).toBe(true);

    const thirdKid = await tg.gateway.keys.rotate();
    checkCertsShape(await fetchCerts(), [thirdKid, secondKid]);
    // Signed by the key before the previous one: no longer published, no longer accepted.
    expect(await verifiesRemotely(first, 'app-aud')).toBe(false);
    expect(await verifiesLocally(first, 'app-aud')).toBe(false);
    expect(await verifiesRemotely(second, 'app-aud')).toBe(true);
    expect(await verifiesLocally(second, 'app-aud')).toBe(true);
    expect(await verifiesLocally(await mint(), 'app-aud')).toBe(true);
  });

  it('the previous key stops being published 7 days after the rotation', async () => {
    const { store, repos } = tg.gateway;
    // A second account keeps this clock-driven ring apart from the running gateway's keys.
    const accountId = randomBytes(16).toString('hex');
    const start = Date.parse('2030-01-01T00:00:00.000Z');
    await store.db
      .insertInto('accounts')
      .values({
        account_id: accountId,
        name: 'clock',
        auth_domain: tg.url,
        session_duration: '24h',
        deny_unmatched_requests: 1,
        key_rotation_interval_days: 42,
        created_at: new Date(start).toISOString(),
        updated_at: new Date(start).toISOString(),
      })
      .execute();
    let now = start;
    const ring = new KeyRing(
      store,
      repos.signingKeys,
      accountId,
      decodeMasterKey(randomBytes(32).toString('hex'), 'test'),
      () => new Date(now),
    );
    await ring.start();
    try {
      const firstKid = ring.signingKey().kid;
      now += 86_400_000;
      const secondKid = await ring.rotate();
      const rotatedAt = now;
      expect(ring.certs().keys.map((key) => key.kid)).toEqual([secondKid, firstKid]);
      expect(ring.verificationKey(firstKid)).not.toBeNull();

      now = rotatedAt + PREVIOUS_KEY_GRACE_MS - 1000;
      await ring.reload();
      expect(ring.certs().public_certs.map((entry) => entry.kid)).toEqual([secondKid, firstKid]);

      now = rotatedAt + PREVIOUS_KEY_GRACE_MS + 1000;
      await ring.reload();
      const certs = ring.certs();
      expect(certs.keys.map((key) => key.kid)).toEqual([secondKid]);
      expect(certs.public_certs.map((entry) => entry.kid)).toEqual([secondKid]);
      expect(ring.verificationKey(firstKid)).toBeNull();
      expect(ring.verificationKey(secondKid)).not.toBeNull();

      // Rotation is due once the interval has passed, not before.
      expect(await ring.rotateIfDue(42)).toBeNull();
      now = rotatedAt + 42 * 86_400_000;
      const thirdKid = await ring.rotateIfDue(42);
      expect(thirdKid).toMatch(/^[0-9a-f]{64}$/);
      // Keys retired past the grace period are deleted at the next rotation.
      expect((await repos.signingKeys.list(accountId)).map((row) => row.kid)).toEqual([thirdKid, secondKid]);
    } finally {
      ring.stop();
      await store.db.deleteFrom('accounts').where('account_id', '=', accountId).execute();
    }
  });
});

describe('verifyJwt refuses', () => {
  const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const claims = () => ({
    iss: tg.url,
    aud: ['app-aud'],
    sub: 'user-1',
    iat: nowSeconds(),
    nbf: nowSeconds(),
    exp: nowSeconds() + 600,
  });

  /** Signs with the gateway's real current key, adding `header` fields. */
  function signWithRealKey(header: Record<string, unknown>): Promise<string> {
    const { kid, key } = tg.gateway.keys.signingKey();
    return new SignJWT(claims()).setProtectedHeader({ alg: 'RS256', kid, ...header }).sign(key);
  }

  async function refused(token: string, audience = 'app-aud', issuer = tg.url): Promise<string> {
    try {
      await verifyJwt(tg.gateway.keys, token, { issuer, audience });
    } catch (error) {
      expect(error).toBeInstanceOf(TokenError);
      return (error as Error).message;
    }
    throw new Error('expected verifyJwt to refuse the token');
  }

  it('accepts the control token these refusals start from', async () => {
    expect(await verifiesLocally(await signWithRealKey({}), 'app-aud')).toBe(true);
    expect(await verifiesLocally(await mint(), 'app-aud')).toBe(true);
  });

  it('alg none', async () => {
    const kid = tg.gateway.keys.signingKey().kid;
    await refused(`${b64({ alg: 'none', kid, typ: 'JWT' })}.${b64(claims())}.`);
  });

  it('HS256 keyed with the public key (algorithm confusion)', async () => {
    const kid = tg.gateway.keys.signingKey().kid;
    const publicPem = tg.gateway.keys.verificationKey(kid)!.export({ type: 'spki', format: 'pem' });
    for (const secret of [
      Buffer.from(publicPem),
      Buffer.from(JSON.stringify((await fetchCerts()).keys[0])),
    ]) {
      const token = await new SignJWT(claims()).setProtectedHeader({ alg: 'HS256', kid }).sign(secret);
      await refused(token);
    }
  });

  it('an unknown kid, a missing kid, and a forged signature under the real kid', async () => {
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const other = (kid?: string) =>
      new SignJWT(claims()).setProtectedHeader({ alg: 'RS256', ...(kid && { kid }) }).sign(privateKey);
    expect(await refused(await other(randomBytes(32).toString('hex')))).toContain('unknown key');
    expect(await refused(await other())).toContain('unknown key');
    await refused(await other(tg.gateway.keys.signingKey().kid));
  });

  it('headers that bring their own key material: jku, jwk, x5u, x5c', async () => {
    const { publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const jwk = publicKey.export({ format: 'jwk' });
    for (const header of [
      { jku: 'https://attacker.example/jwks.json' },
      { jwk: { ...jwk, kty: 'RSA' } },
      { x5u: 'https://attacker.example/cert.pem' },
      { x5c: ['MIIB'] },
    ]) {
      expect(await refused(await signWithRealKey(header))).toContain('key material');
    }
  });

  it('a wrong issuer', async () => {
    await refused(await mint({}, { issuer: 'https://attacker.example' }));
    await refused(await mint(), 'app-aud', 'https://other-team.example');
  });

  it('a wrong audience', async () => {
    const token = await mint({ aud: ['app-a'] });
    await refused(token, 'app-b');
    expect(await verifiesLocally(token, 'app-a')).toBe(true);
  });

  it(`an expired token beyond the ${CLOCK_TOLERANCE_SECONDS} s skew, but not within it`, async () => {
    const issued = new Date(Date.now() - 3600_000);
    const tooOld = await mint({}, { now: issued, expiresAt: nowSeconds() - CLOCK_TOLERANCE_SECONDS - 5 });
    expect(await refused(tooOld)).toContain('exp');
    const justExpired = await mint({}, { now: issued, expiresAt: nowSeconds() - 30 });
    expect(await verifiesLocally(justExpired, 'app-aud')).toBe(true);
  });

  it('a not-before in the future beyond the skew, but not within it', async () => {
    const future = (seconds: number) => new Date(Date.now() + seconds * 1000);
    const tooEarly = await mint(
      {},
      { now: future(CLOCK_TOLERANCE_SECONDS + 30), expiresAt: nowSeconds() + 3600 },
    );
    expect(await refused(tooEarly)).toContain('nbf');
    const slightlyEarly = await mint({}, { now: future(30), expiresAt: nowSeconds() + 3600 });
    expect(await verifiesLocally(slightlyEarly, 'app-aud')).toBe(true);
  });

  it('a token without exp', async () => {
    const { kid, key } = tg.gateway.keys.signingKey();
    const { exp: _exp, ...noExp } = claims();
    await refused(await new SignJWT(noExp).setProtectedHeader({ alg: 'RS256', kid }).sign(key));
  });

  it(`an oversized token (over ${MAX_TOKEN_LENGTH} characters), while a large one under the limit passes`, async () => {
    const large = await mint({ pad: 'x'.repeat(5000) });
    expect(large.length).toBeLessThan(MAX_TOKEN_LENGTH);
    expect(await verifiesLocally(large, 'app-aud')).toBe(true);
    const oversized = await mint({ pad: 'x'.repeat(MAX_TOKEN_LENGTH) });
    expect(oversized.length).toBeGreaterThan(MAX_TOKEN_LENGTH);
    expect(await refused(oversized)).toBe('token too large');
  });

  it('garbage', async () => {
    for (const token of ['', 'a.b.c', 'not a jwt', `${'a'.repeat(10)}..`]) await refused(token);
  });
});
