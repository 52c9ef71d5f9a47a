// Management API tokens: a 40-character secret shown once, stored only as its SHA-256
// (ARCHITECTURE.md decision 9). Lookup is by hash through a unique index, so the secret is
// never compared byte by byte against stored values.
import { createHash, randomBytes } from 'node:crypto';
import type { ApiToken, ApiTokenRepository } from '../store/repositories/api-tokens.ts';
import { isPermissionGroup, PERMISSION_GROUPS } from './permissions.ts';

export class PermissionError extends Error {}

export function hashApiTokenSecret(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

/** Checks permission names, or throws naming the unknown ones and listing the valid ones. */
export function checkPermissionNames(names: readonly string[]): void {
  const unknown = names.filter((name) => !isPermissionGroup(name));
  if (names.length === 0)
    throw new PermissionError(`give at least one --permission; valid: ${listPermissions()}`);
  if (unknown.length > 0) {
    throw new PermissionError(
      `unknown permission ${unknown.map((n) => JSON.stringify(n)).join(', ')}; valid permissions: ${listPermissions()}`,
    );
  }
}

function listPermissions(): string {
  return PERMISSION_GROUPS.map((name) => JSON.stringify(name)).join(', ');
}

export async function createApiToken(
  tokens: ApiTokenRepository,
  input: { accountId: string; name: string; permissions: string[]; expiresOn?: string | null },
): Promise<{ token: ApiToken; secret: string }> {
  checkPermissionNames(input.permissions);
  // 30 random bytes → 40 base64url characters, the length of a Cloudflare API token.
  const secret = randomBytes(30).toString('base64url');
  const token = await tokens.create({
    id: randomBytes(16).toString('hex'),
    accountId: input.accountId,
    name: input.name,
    secretHash: hashApiTokenSecret(secret),
    permissions: [...new Set(input.permissions)],
    expiresOn: input.expiresOn ?? null,
  });
  return { token, secret };
}
