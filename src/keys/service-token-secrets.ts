// Service token credentials (spec §4.5): client ids `<32 hex>.access`, and secrets in
// Cloudflare's newer format `cfast_<40 alphanumerics><8-character checksum>`. The secret carries
// about 238 random bits, so it is stored as its SHA-256 (ARCHITECTURE.md decision 9), and
// checked in constant time against the current hash and, during a rotation's grace period,
// the previous one.
import { randomBytes, randomInt } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { digestMatchesHash, secretDigest } from './secrets.ts';

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
 * Whether `secret` opens the token at `now`: the token is enabled (`enabled:false` stops both
 * secrets, spec §4.5) and unexpired, and the secret is the current one or the previous one
 * within its grace period. Both hashes are always compared, so timing does not tell which
 * secret matched or whether a previous one exists.
 */
export function verifyServiceTokenSecret(
  record: ServiceTokenCredentials,
  secret: string,
  now: Date,
): boolean {
  const digest = secretDigest(secret);
  const current = digestMatchesHash(digest, record.secretHash);
  const previous = digestMatchesHash(digest, record.previousSecretHash ?? record.secretHash);
  const time = now.getTime();
  if (!record.enabled) return false;
  if (record.expiresAt !== null && Date.parse(record.expiresAt) <= time) return false;
  const previousValid =
    record.previousSecretHash !== null &&
    record.previousSecretExpiresAt !== null &&
    Date.parse(record.previousSecretExpiresAt) > time;
  return current || (previousValid && previous);
}
