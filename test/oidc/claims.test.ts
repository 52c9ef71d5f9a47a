// The claims a SaaS app receives from a login's identity: scopes, groups filtered by
// group_filter_regex, custom claims per IdP, required claims, reserved names never overridden.
import { describe, expect, it } from 'vitest';
import type { LoginIdentity } from '../../src/identity/types.ts';
import { claimsByScope, missingRequiredClaim, userClaims } from '../../src/oidc/claims.ts';
import type { OidcSaasAppConfig } from '../../src/store/repositories/apps.ts';

const GOOGLE = '11111111-1111-4111-8111-111111111111';
const OKTA = '22222222-2222-4222-8222-222222222222';

function saas(extra: Partial<OidcSaasAppConfig> = {}): OidcSaasAppConfig {
  return {
    auth_type: 'oidc',
    redirect_uris: [],
    grant_types: ['authorization_code'],
    scopes: ['openid', 'email', 'profile', 'groups'],
    allow_pkce_without_client_secret: false,
    access_token_lifetime: '5m',
    refresh_token_options: { lifetime: '90d' },
    custom_claims: [],
    ...extra,
  };
}

const identity = (idp: string, oidcClaims: Record<string, unknown>): LoginIdentity => ({
  email: 'alice@example.com',
  name: 'Alice',
  idp: { id: idp, type: 'oidc' },
  oidcClaims,
});

describe('claims', () => {
  it('releases email, name and groups, filtering groups with group_filter_regex', () => {
    const claims = userClaims(saas({ group_filter_regex: '^eng-' }), {
      userId: 'u1',
      email: 'alice@example.com',
      identity: identity(GOOGLE, { groups: ['eng-core', 'sales', 'eng-infra', 7] }),
    });
    expect(claims).toEqual({
      sub: 'u1',
      email: 'alice@example.com',
      email_verified: true,
      name: 'Alice',
      groups: ['eng-core', 'eng-infra'],
    });
  });

  it('maps custom claims per IdP into their scope, never over reserved claims', () => {
    const config = saas({
      custom_claims: [
        {
          name: 'department',
          required: false,
          scope: 'profile',
          source: { name: 'dept', name_by_idp: { [OKTA]: 'division' } },
        },
        { name: 'employee_id', required: true, scope: 'email', source: { name: 'eid' } },
        { name: 'sub', required: false, scope: 'openid', source: { name: 'other' } },
      ],
    });
    expect(claimsByScope(config)).toMatchObject({
      profile: ['name', 'department'],
      email: ['email', 'email_verified', 'employee_id'],
      openid: ['sub'],
    });
    const fromGoogle = userClaims(config, {
      userId: 'u1',
      email: 'a@example.com',
      identity: identity(GOOGLE, { dept: 'R&D', eid: 'E1', other: 'x' }),
    });
    expect(fromGoogle).toMatchObject({ sub: 'u1', department: 'R&D', employee_id: 'E1' });
    const fromOkta = userClaims(config, {
      userId: 'u1',
      email: 'a@example.com',
      identity: identity(OKTA, { dept: 'no', division: 'Ops', eid: 'E2' }),
    });
    expect(fromOkta.department).toBe('Ops');
    expect(missingRequiredClaim(config, identity(GOOGLE, { dept: 'R&D' }))).toBe('employee_id');
    expect(missingRequiredClaim(config, identity(GOOGLE, { eid: 'E1' }))).toBeNull();
    // A one-time PIN login has no IdP claims at all.
    expect(
      missingRequiredClaim(config, { email: 'a@example.com', idp: { id: GOOGLE, type: 'onetimepin' } }),
    ).toBe('employee_id');
  });
});
