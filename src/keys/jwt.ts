// JWT helpers on jose with an explicit allow-list: RS256 only, keys chosen by kid from the key
// ring, never from the token (no jku/x5u/jwk/x5c), required claims, at most 60 s clock skew.
import { errors, type JWTPayload, type JWTVerifyResult, jwtVerify, SignJWT } from 'jose';
import type { KeyRing } from './keyring.ts';

export const CLOCK_TOLERANCE_SECONDS = 60;
/** Tokens larger than this are refused before any parsing (headers are bounded anyway). */
export const MAX_TOKEN_LENGTH = 8192;

export class TokenError extends Error {}

export interface MintOptions {
  issuer: string;
  /** Expiry as Unix seconds. */
  expiresAt: number;
  /** Header `typ`: `JWT` for Access app tokens, `at+jwt` for RFC 9068 access tokens. */
  type?: string;
  now?: Date;
}

export async function mintJwt(keys: KeyRing, claims: JWTPayload, options: MintOptions): Promise<string> {
  const { kid, key } = keys.signingKey();
  const iat = Math.floor((options.now ?? new Date()).getTime() / 1000);
  return new SignJWT(claims)
    .setProtectedHeader({ alg: 'RS256', kid, typ: options.type ?? 'JWT' })
    .setIssuer(options.issuer)
    .setIssuedAt(iat)
    .setNotBefore(iat)
    .setExpirationTime(options.expiresAt)
    .sign(key);
}

export interface VerifyOptions {
  issuer: string;
  /** When set, the token's `aud` must contain it. */
  audience?: string;
  requiredClaims?: string[];
  /** Expected header `typ`, when the token kind fixes it. */
  type?: string;
  now?: Date;
}

export async function verifyJwt(
  keys: KeyRing,
  token: string,
  options: VerifyOptions,
): Promise<JWTVerifyResult> {
  if (token.length > MAX_TOKEN_LENGTH) throw new TokenError('token too large');
  try {
    return await jwtVerify(
      token,
      (header) => {
        if (header.jku || header.x5u || header.jwk || header.x5c || header.crit) {
          throw new TokenError('token header names its own key material');
        }
        const key = header.kid ? keys.verificationKey(header.kid) : null;
        if (!key) throw new TokenError('token signed by an unknown key');
        return key;
      },
      {
        algorithms: ['RS256'],
        issuer: options.issuer,
        ...(options.audience !== undefined && { audience: options.audience }),
        ...(options.type !== undefined && { typ: options.type }),
        requiredClaims: ['iat', 'exp', ...(options.requiredClaims ?? [])],
        clockTolerance: CLOCK_TOLERANCE_SECONDS,
        ...(options.now && { currentDate: options.now }),
      },
    );
  } catch (error) {
    if (error instanceof TokenError) throw error;
    if (error instanceof errors.JOSEError) throw new TokenError(`${error.code}: ${error.message}`);
    throw new TokenError('malformed token');
  }
}
