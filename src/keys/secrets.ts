// Generated client secrets (OIDC SaaS apps now; service tokens later) are stored only as their
// SHA-256 (ARCHITECTURE.md decision 9). They carry 256 random bits, so a fast hash is enough,
// and the comparison is constant-time so response timing reveals nothing about the stored hash.
import { createHash, hash, randomBytes, timingSafeEqual } from 'node:crypto';

/** `bytes` random bytes as lower-case hex. */
export function randomHex(bytes: number): string {
  return randomBytes(bytes).toString('hex');
}

export function sha256Hex(value: string): string {
  return createHash('sha256').update(value).digest('hex');
}

/** Whether `secret` hashes to `storedHash` (hex SHA-256), in constant time. */
export function secretMatchesHash(secret: string, storedHash: string): boolean {
  return digestsEqual(secretDigest(secret), Buffer.from(storedHash, 'hex'));
}

/** The SHA-256 of a secret, to compare with several stored hashes while hashing once (one-shot, no Hash object). */
export function secretDigest(secret: string): Buffer {
  // Through a binary (latin1) string: Node 20's one-shot hash with 'buffer' output costs 690 ns
  // against 250 + 180 ns this way, and the proxy checks a service token's secret per request.
  return Buffer.from(hash('sha256', secret, 'binary'), 'binary');
}

/** Whether two digests are the same, in constant time (lengths are not secret). */
export function digestsEqual(digest: Buffer, expected: Buffer): boolean {
  return expected.length === digest.length && timingSafeEqual(expected, digest);
}
