// One verifier for every token the proxy accepts, with a bounded cache of verified tokens.
// Two kinds, both RS256 under the account's keys and checked offline (no database):
// - Access app tokens (`typ: JWT`, `type: "app"`, `iss` = team domain, `aud` an array of AUDs):
//   a user's session for an app, or, presented at another app, a linked token (decision 1);
// - RFC 9068 access tokens of SaaS apps (`typ: at+jwt`, `iss` = `<team>/cdn-cgi/access/sso/oidc/
//   <client_id>`, `aud` and `client_id` = the app's client_id): linked tokens, flow 2 (decision 2).
// An RS256 verification costs ~70 µs; a cache hit is a hash and a Map lookup (spec stack.md §4).
import { hash } from 'node:crypto';
import type { JWTPayload } from 'jose';
import { CLOCK_TOLERANCE_SECONDS, MAX_TOKEN_LENGTH, TokenError, verifyJwt } from '../keys/jwt.ts';
import { TokenCache } from './token-cache.ts';

export interface AppTokenClaims extends JWTPayload {
  type: 'app';
  aud: string[];
  sub: string;
  iat: number;
  exp: number;
  email?: string;
  identity_nonce?: string;
  country?: string;
  common_name?: string;
  /**
   * Gatehouse's own claims, written by the login: the policy whose match admitted the user and
   * its precedence then. The proxy re-checks that policy's non-identity selectors per request
   * (src/policy/session.ts); a session token without them is sent to log in again.
   */
  policy_id?: string;
  policy_precedence?: number;
}

export interface AccessTokenClaims extends JWTPayload {
  client_id: string;
  sub: string;
  iat: number;
  exp: number;
  email?: string;
}

type Verified = { kind: 'app'; claims: AppTokenClaims } | { kind: 'access'; claims: AccessTokenClaims };

/** A verified token and its SHA-256 (base64), which keys caches without keeping the token. */
export type VerifiedToken = Verified & { digest: string };

/** Cloudflare's client ids are `<32 hex>.access`; SaaS client ids are opaque but URL-safe. */
const CLIENT_ID = /^[A-Za-z0-9._~-]{1,128}$/;
const SEGMENT = /^[A-Za-z0-9_-]+$/;
/** App tokens name their app (and at most a few more); a longer list is not one of ours. */
const MAX_AUDIENCES = 16;

/** Emptied on key rotation (clear()), so a token signed by a withdrawn key stops working. */
export class TokenVerifier extends TokenCache<VerifiedToken> {
  /**
   * The cached verification of a token, synchronously (the hot path: no promise, no tick), or
   * undefined when it must be verified. Throws TokenError for a cached token that has expired.
   */
  lookup(token: string, now = this.nowSeconds()): VerifiedToken | undefined {
    if (token.length > MAX_TOKEN_LENGTH) throw new TokenError('token too large');
    // One-shot hashing: no Hash object per request.
    const key = hash('sha256', token, 'base64');
    const cached = this.cache.get(key);
    if (!cached) return undefined;
    // Entries never outlive the token: expired ones are dropped when met.
    if (cached.claims.exp > now) return cached;
    this.cache.delete(key);
    throw new TokenError('token expired');
  }

  /** Verifies a token, or throws TokenError. Cached results are re-checked against the clock. */
  async verify(token: string): Promise<VerifiedToken> {
    const cached = this.lookup(token);
    if (cached) return cached;
    const key = hash('sha256', token, 'base64');
    const verified: VerifiedToken = { ...(await this.verifyUncached(token)), digest: key };
    this.remember(key, verified);
    return verified;
  }

  private async verifyUncached(token: string): Promise<Verified> {
    const segments = token.split('.');
    if (segments.length !== 3 || !segments.every((segment) => SEGMENT.test(segment))) {
      throw new TokenError('not a compact JWS');
    }
    const header = decodeSegment(segments[0]!);
    const payload = decodeSegment(segments[1]!);
    const now = this.nowSeconds();
    if (header.typ === 'at+jwt') {
      const clientId = payload.client_id;
      if (typeof clientId !== 'string' || !CLIENT_ID.test(clientId)) throw new TokenError('bad client_id');
      const { payload: claims } = await verifyJwt(this.keys, token, {
        issuer: `${this.teamDomain}/cdn-cgi/access/sso/oidc/${clientId}`,
        audience: clientId,
        type: 'at+jwt',
        requiredClaims: ['sub', 'client_id'],
        now: new Date(now * 1000),
      });
      checkTimes(claims, now);
      return { kind: 'access', claims: claims as AccessTokenClaims };
    }
    const { payload: claims } = await verifyJwt(this.keys, token, {
      issuer: this.teamDomain,
      type: 'JWT',
      requiredClaims: ['aud', 'sub', 'nbf'],
      now: new Date(now * 1000),
    });
    checkTimes(claims, now);
    // Cloudflare's `aud` is always an array (spec §8 fact 7); a bare string is not our token.
    const aud = claims.aud;
    if (
      claims.type !== 'app' ||
      !Array.isArray(aud) ||
      aud.length === 0 ||
      aud.length > MAX_AUDIENCES ||
      !aud.every((entry) => typeof entry === 'string') ||
      typeof claims.sub !== 'string'
    ) {
      throw new TokenError('not an Access app token');
    }
    return { kind: 'app', claims: claims as AppTokenClaims };
  }
}

/**
 * jose checks `nbf` with the clock tolerance but lets a future `iat` through and honours `exp`
 * up to the tolerance. Gatehouse issued these tokens on its own clock, so expiry is exact.
 */
function checkTimes(claims: JWTPayload, now: number): void {
  if (typeof claims.exp !== 'number' || claims.exp <= now) throw new TokenError('token expired');
  if (typeof claims.iat !== 'number' || claims.iat > now + CLOCK_TOLERANCE_SECONDS) {
    throw new TokenError('token issued in the future');
  }
}

/**
 * Decodes a header or payload segment, refusing duplicate members: parsers disagree about which
 * copy wins (RFC 7515 §5.2 says reject or take the last), so a token with two `aud` could mean
 * different things to us and to an origin that re-validates it.
 */
function decodeSegment(segment: string): Record<string, unknown> {
  const text = Buffer.from(segment, 'base64url').toString('utf8');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new TokenError('segment is not JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new TokenError('segment is not a JSON object');
  }
  if (hasDuplicateMembers(text)) throw new TokenError('duplicate JSON member');
  return value as Record<string, unknown>;
}

/** Scans already-valid JSON for an object holding the same member name twice, at any depth. */
export function hasDuplicateMembers(json: string): boolean {
  const stack: (Set<string> | null)[] = [];
  let expectKey = false;
  for (let i = 0; i < json.length; i++) {
    const char = json[i];
    if (char === '"') {
      let end = i + 1;
      while (json[end] !== '"') end += json[end] === '\\' ? 2 : 1;
      const top = stack[stack.length - 1];
      if (expectKey && top) {
        const name = JSON.parse(json.slice(i, end + 1)) as string;
        if (top.has(name)) return true;
        top.add(name);
        expectKey = false;
      }
      i = end;
    } else if (char === '{') {
      stack.push(new Set());
      expectKey = true;
    } else if (char === '[') {
      stack.push(null);
    } else if (char === '}' || char === ']') {
      stack.pop();
    } else if (char === ',') {
      expectKey = stack[stack.length - 1] !== null;
    }
  }
  return false;
}
