// How an origin behind Gatehouse trusts a request: only a Cf-Access-Jwt-Assertion that verifies
// against the team domain's keys (`/cdn-cgi/access/certs`), names this application's AUD and
// was issued by the team domain. Cloudflare's own guidance for origins: never trust the
// Cf-Access-Authenticated-User-Email header alone, validate the JWT
// (developers.cloudflare.com/cloudflare-one/identity/authorization-cookie/validating-json/).
import { createRemoteJWKSet, customFetch, errors, type JWTPayload, jwtVerify } from 'jose';
import type { Fetch } from './connect.ts';

export const ASSERTION_HEADER = 'cf-access-jwt-assertion';
/** Assertions are a few hundred bytes; anything far larger is not one. */
const MAX_ASSERTION_LENGTH = 8192;

export interface AccessIdentity {
  email: string;
  sub: string;
  /** The raw assertion, for forwarding as Cf-Access-Token (linked apps, flow 1). */
  assertion: string;
  claims: JWTPayload;
}

export class AccessDenied extends Error {}

export interface AccessVerifierOptions {
  /** The team domain origin, e.g. http://auth.localhost:8080: the `iss` of every assertion. */
  teamDomain: string;
  /** This application's AUD tag (64 hex characters). */
  aud: string;
  /** How to reach the team domain (see fetchVia); the global fetch by default. */
  fetch?: Fetch;
}

export type AccessVerifier = (
  headers: Record<string, string | string[] | undefined>,
) => Promise<AccessIdentity>;

export function createAccessVerifier(options: AccessVerifierOptions): AccessVerifier {
  const teamDomain = options.teamDomain.replace(/\/+$/, '');
  const jwks = createRemoteJWKSet(new URL(`${teamDomain}/cdn-cgi/access/certs`), {
    timeoutDuration: 5000,
    ...(options.fetch && { [customFetch]: options.fetch }),
  });
  return async (headers) => {
    const raw = headers[ASSERTION_HEADER];
    // Two assertion headers mean someone other than Gatehouse added one.
    if (typeof raw !== 'string' || raw.length === 0) throw new AccessDenied('no Access assertion');
    if (raw.length > MAX_ASSERTION_LENGTH) throw new AccessDenied('assertion too large');
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(raw, jwks, {
        issuer: teamDomain,
        audience: options.aud,
        algorithms: ['RS256'],
        clockTolerance: 60,
      }));
    } catch (error) {
      if (error instanceof errors.JOSEError) throw new AccessDenied(`assertion refused: ${error.code}`);
      throw error;
    }
    const email = payload.email;
    if (typeof email !== 'string' || email.length === 0 || typeof payload.sub !== 'string') {
      // A service-token assertion carries no email: these apps act only for people.
      throw new AccessDenied('assertion names no user');
    }
    return { email: email.toLowerCase(), sub: payload.sub, assertion: raw, claims: payload };
  };
}
