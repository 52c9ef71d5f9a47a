// Test helpers for the example origins: assertions minted by a real gateway's key ring (as the
// proxy mints them), and forgeries of every kind an attacker could send.
import { randomBytes } from 'node:crypto';
import { generateKeyPair, SignJWT } from 'jose';
import { mintJwt } from '../../src/keys/jwt.ts';
import type { TestGateway } from '../../test/support/gateway.ts';

export const randomAud = () => randomBytes(32).toString('hex');

export function assertion(
  gateway: TestGateway,
  aud: string,
  claims: Record<string, unknown> = {},
  options: { issuer?: string; lifetimeSeconds?: number } = {},
): Promise<string> {
  return mintJwt(
    gateway.gateway.keys,
    { type: 'app', aud: [aud], sub: 'user-1', email: 'alice@example.com', identity_nonce: 'n1', ...claims },
    {
      issuer: options.issuer ?? gateway.url,
      expiresAt: Math.floor(Date.now() / 1000) + (options.lifetimeSeconds ?? 600),
    },
  );
}

/** Same claims, signed by a key Gatehouse never published, under the real key's kid. */
export async function forgedAssertion(signer: { issuer: string; kid: string }, aud: string): Promise<string> {
  const { privateKey } = await generateKeyPair('RS256');
  return new SignJWT({ type: 'app', aud: [aud], sub: 'user-1', email: 'mallory@example.com' })
    .setProtectedHeader({ alg: 'RS256', kid: signer.kid })
    .setIssuer(signer.issuer)
    .setIssuedAt()
    .setExpirationTime('10m')
    .sign(privateKey);
}

/** An unsigned token (`alg: none`). */
export function unsignedAssertion(gateway: TestGateway, aud: string): string {
  const part = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
  return `${part({ alg: 'none', typ: 'JWT' })}.${part({
    type: 'app',
    aud: [aud],
    sub: 'user-1',
    email: 'mallory@example.com',
    iss: gateway.url,
    exp: Math.floor(Date.now() / 1000) + 600,
  })}.`;
}
