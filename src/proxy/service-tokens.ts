// Service token credentials (spec §4.5): `CF-Access-Client-Id` + `CF-Access-Client-Secret`, or
// the app's `read_service_tokens_from_header` header holding
// `{"cf-access-client-id":…,"cf-access-client-secret":…}`. Verified against the in-memory
// configuration's decoded credentials (current secret, or the previous one in its grace).
import { secretOpensToken } from '../keys/service-token-secrets.ts';
import type { ServiceTokenRecord } from './config.ts';
import type { ScannedHeaders } from './headers.ts';

export type ServiceCredential =
  | { kind: 'none' }
  /** Presented but wrong, expired, disabled, partial, duplicated or mixed. */
  | { kind: 'invalid' }
  | { kind: 'valid'; token: ServiceTokenRecord };

/** Client ids are `<32 hex>.access`; secrets 64 hex or `cfast_…` (spec §4.5). Longer is not ours. */
const MAX_CREDENTIAL_LENGTH = 256;
const MAX_JSON_LENGTH = 1024;

export function readServiceCredential(
  headers: ScannedHeaders,
  tokens: ReadonlyMap<string, ServiceTokenRecord>,
  nowSeconds: number,
): ServiceCredential {
  const pairs = headers.clientId.length + headers.clientSecret.length;
  const json = headers.serviceTokenJson;
  if (pairs === 0 && json.length === 0) return { kind: 'none' };
  // Exactly one complete credential in exactly one form; anything else is refused, as
  // Cloudflare's strict mode refuses "duplicate, partial or mixed headers".
  let clientId: unknown;
  let secret: unknown;
  if (json.length === 0 && headers.clientId.length === 1 && headers.clientSecret.length === 1) {
    clientId = headers.clientId[0];
    secret = headers.clientSecret[0];
  } else if (pairs === 0 && json.length === 1 && json[0]!.length <= MAX_JSON_LENGTH) {
    try {
      const parsed = JSON.parse(json[0]!) as Record<string, unknown>;
      clientId = parsed?.['cf-access-client-id'];
      secret = parsed?.['cf-access-client-secret'];
    } catch {
      return { kind: 'invalid' };
    }
  } else {
    return { kind: 'invalid' };
  }
  if (
    typeof clientId !== 'string' ||
    typeof secret !== 'string' ||
    clientId.length > MAX_CREDENTIAL_LENGTH ||
    secret.length > MAX_CREDENTIAL_LENGTH
  ) {
    return { kind: 'invalid' };
  }
  const token = tokens.get(clientId.trim());
  const matches = token !== undefined && secretOpensToken(token, secret.trim(), nowSeconds * 1000);
  return matches ? { kind: 'valid', token } : { kind: 'invalid' };
}
