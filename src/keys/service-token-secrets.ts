// Service token credentials (spec §4.5): client ids `<32 hex>.access`, and secrets in
// Cloudflare's newer format `cfast_<40 alphanumerics><8-character checksum>`. The secret carries
// about 238 random bits, so it is stored as its SHA-256 (ARCHITECTURE.md decision 9), and
// checked in constant time against the current hash and, during a rotation's grace period,
// the previous one.
import { randomBytes, randomInt } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { digestsEqual, secretDigest } from './secrets.ts';

const ALPHANUMERIC = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const SECRET_PREFIX = 'cfast_';

export function generateClientId(): string {
  return `${randomBytes(16).toString('hex')}.access`;
}

/**
 * A new secret. The checksum (CRC32 of prefix and body, 8 hex digits) lets secret scanners tell
 * a real token from look-alike text without a database, as Cloudflare's format does.
 */
export function generateClientSecret(): string {
  let body = '';
  // randomInt draws without modulo bias.
  for (let i = 0; i < 40; i++) body += ALPHANUMERIC[randomInt(ALPHANUMERIC.length)];
  return `${SECRET_PREFIX}${body}${checksum(SECRET_PREFIX + body)}`;
}

function checksum(text: string): string {
  return crc32(text).toString(16).padStart(8, '0');
}

/** The fields of a stored service token that decide whether a secret is accepted. */
export interface ServiceTokenCredentials {
  enabled: boolean;
  /** ISO time; null for `duration: "forever"`. */
  expiresAt: string | null;
  secretHash: string;
  previousSecretHash: string | null;
  previousSecretExpiresAt: string | null;
}

/**
 * A token's credentials decoded once (hashes to bytes, ISO times to milliseconds), for a check
 * on every request: the proxy holds these, built when its configuration is loaded.
 */
export interface PreparedServiceTokenCredentials {
  enabled: boolean;
  /** null for `duration: "forever"`. */
  expiresAtMs: number | null;
  secretDigest: Buffer;
  previousSecretDigest: Buffer | null;
  previousSecretExpiresAtMs: number | null;
}

export function prepareServiceTokenCredentials(
  record: ServiceTokenCredentials,
): PreparedServiceTokenCredentials {
  return {
    enabled: record.enabled,
    expiresAtMs: record.expiresAt === null ? null : Date.parse(record.expiresAt),
    secretDigest: Buffer.from(record.secretHash, 'hex'),
    previousSecretDigest:
      record.previousSecretHash === null ? null : Buffer.from(record.previousSecretHash, 'hex'),
    previousSecretExpiresAtMs:
      record.previousSecretExpiresAt === null ? null : Date.parse(record.previousSecretExpiresAt),
  };
}

/** Enabled and unexpired (`enabled:false` stops both secrets and the sessions they started, spec §4.5). */
export function serviceTokenUsable(token: PreparedServiceTokenCredentials, nowMs: number): boolean {
  return token.enabled && (token.expiresAtMs === null || token.expiresAtMs > nowMs);
}

/**
 * Whether `secret` opens the token at `nowMs`: the token is usable, and the secret is the current
 * one or the previous one within its grace period. Both digests are always compared, so timing
 * does not tell which secret matched or whether a previous one exists.
 */
export function secretOpensToken(
  token: PreparedServiceTokenCredentials,
  secret: string,
  nowMs: number,
): boolean {
  const digest = secretDigest(secret);
  const current = digestsEqual(digest, token.secretDigest);
  const previous = digestsEqual(digest, token.previousSecretDigest ?? token.secretDigest);
  if (!serviceTokenUsable(token, nowMs)) return false;
  const previousValid =
    token.previousSecretDigest !== null &&
    token.previousSecretExpiresAtMs !== null &&
    token.previousSecretExpiresAtMs > nowMs;
  return current || (previousValid && previous);
}

/** secretOpensToken for a token as stored (tests of what the API wrote check it this way). */
export function verifyServiceTokenSecret(
  record: ServiceTokenCredentials,
  secret: string,
  now: Date,
): boolean {
  return secretOpensToken(prepareServiceTokenCredentials(record), secret, now.getTime());
}
