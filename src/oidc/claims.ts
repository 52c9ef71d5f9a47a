// The claims a SaaS app receives, scope by scope (spec §2.2): `openid` the user's id, `email`
// the email, `profile` the name plus custom IdP claims, `groups` the IdP groups filtered by the
// app's `group_filter_regex`. Custom claims are copied from the login's IdP claims under the
// name the app chose, in the scope it chose; a `required` one the IdP did not supply fails the
// login (Cloudflare shows an error page).
import type { LoginIdentity } from '../identity/types.ts';
import type { CustomClaim, OidcSaasAppConfig } from '../store/repositories/apps.ts';

export const STANDARD_SCOPES = ['openid', 'email', 'profile', 'groups'] as const;

/** Claims the token machinery owns; a custom claim never overrides them. */
const RESERVED = new Set([
  'sub',
  'email',
  'email_verified',
  'name',
  'groups',
  'iss',
  'aud',
  'exp',
  'iat',
  'nbf',
  'jti',
  'nonce',
  'azp',
  'at_hash',
  'c_hash',
  'sid',
  'auth_time',
  'acr',
  'amr',
  'client_id',
  'scope',
]);

/** What claims are computed from: the user row and the identity of their last login here. */
export interface ClaimSource {
  userId: string;
  email: string;
  identity: LoginIdentity | null;
}

export class MissingClaimError extends Error {}

/** oidc-provider's `claims` configuration: which claim names each scope releases. */
export function claimsByScope(saas: OidcSaasAppConfig): Record<string, string[]> {
  const byScope: Record<string, string[]> = {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
    groups: ['groups'],
  };
  for (const claim of usableCustomClaims(saas.custom_claims)) byScope[claim.scope]!.push(claim.name);
  return byScope;
}

/** Every claim the user may receive; oidc-provider then releases those of the granted scopes. */
export function userClaims(saas: OidcSaasAppConfig, source: ClaimSource): Record<string, unknown> {
  const claims: Record<string, unknown> = {
    sub: source.userId,
    email: source.email,
    // Access only signs users in with an email an IdP vouched for.
    email_verified: true,
  };
  const identity = source.identity;
  if (identity?.name) claims.name = identity.name;
  const groups = groupsOf(identity, saas.group_filter_regex);
  if (groups) claims.groups = groups;
  for (const claim of usableCustomClaims(saas.custom_claims)) {
    const value = customClaimValue(claim, identity);
    if (value !== undefined) claims[claim.name] = value;
  }
  return claims;
}

/** The first `required` custom claim the login's IdP did not supply, or null. */
export function missingRequiredClaim(saas: OidcSaasAppConfig, identity: LoginIdentity): string | null {
  for (const claim of usableCustomClaims(saas.custom_claims)) {
    if (claim.required && customClaimValue(claim, identity) === undefined) return claim.name;
  }
  return null;
}

function usableCustomClaims(claims: readonly CustomClaim[]): CustomClaim[] {
  return claims.filter((claim) => !RESERVED.has(claim.name));
}

function customClaimValue(claim: CustomClaim, identity: LoginIdentity | null): unknown {
  if (!identity?.oidcClaims) return undefined;
  // `name_by_idp` names the claim per IdP; `name` is used for every other IdP.
  const name = claim.source.name_by_idp?.[identity.idp.id] ?? claim.source.name;
  const value = identity.oidcClaims[name];
  return value === null ? undefined : value;
}

function groupsOf(identity: LoginIdentity | null, filter: string | undefined): string[] | undefined {
  const raw = identity?.oidcClaims?.groups;
  const github = identity?.github?.orgs.flatMap((org) => [org.name, ...org.teams]);
  const groups = Array.isArray(raw) ? raw.filter((group) => typeof group === 'string') : github;
  if (!groups) return undefined;
  if (filter === undefined) return groups;
  const pattern = new RegExp(filter);
  return groups.filter((group) => pattern.test(group));
}
