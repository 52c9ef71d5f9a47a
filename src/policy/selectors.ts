// What Gatehouse knows about each rule selector: whether it reads the login identity, which
// policy decisions may use it, and, for the selectors Cloudflare has but Gatehouse cannot honour,
// why. Source: the selector table of [D: access-controls/policies/index.mdx] ("Identity-based
// selector?" column and "Requires the Service Auth action") and [TS: AccessRule].

import type { SelectorName } from './schema.ts';
import type { PolicyDecision } from './types.ts';

/**
 * `identity` selectors read facts captured at login (email, IdP, claims); `request` selectors read
 * facts of the HTTP request (client IP, country, certificate, service token, linked token).
 * `group` has no kind of its own: the checks in checks.ts look through a group at its rules.
 */
export type SelectorKind = 'identity' | 'request';

export const SELECTOR_KINDS: Readonly<Record<Exclude<SelectorName, 'group'>, SelectorKind>> = {
  email: 'identity',
  email_domain: 'identity',
  email_list: 'identity',
  login_method: 'identity',
  auth_method: 'identity',
  oidc: 'identity',
  'github-organization': 'identity',
  external_evaluation: 'identity',
  everyone: 'request',
  ip: 'request',
  ip_list: 'request',
  geo: 'request',
  certificate: 'request',
  common_name: 'request',
  service_token: 'request',
  any_valid_service_token: 'request',
  linked_app_token: 'request',
};

/** Decisions allowed to hold identity selectors: Bypass "does not support identity-based rule
 * types", and Service Auth is authentication "that does not require an IdP login", so an
 * identity rule there could only ever fail. */
export const IDENTITY_DECISIONS: readonly PolicyDecision[] = ['allow', 'deny'];

/** Selectors restricted to some decisions, with Cloudflare's wording of the restriction. */
export const DECISION_RESTRICTED_SELECTORS: Readonly<
  Partial<Record<SelectorName, { decisions: readonly PolicyDecision[]; why: string }>>
> = {
  service_token: {
    decisions: ['non_identity'],
    why: 'service token rules require the Service Auth (non_identity) action',
  },
  any_valid_service_token: {
    decisions: ['non_identity'],
    why: 'service token rules require the Service Auth (non_identity) action',
  },
  linked_app_token: {
    decisions: ['non_identity', 'bypass'],
    why: 'linked_app_token is only compatible with non_identity and bypass decisions',
  },
};

/**
 * Cloudflare selectors Gatehouse refuses, and why. Accepting them would give rules that silently
 * never match (or, in an exclude, silently always let the user through).
 */
export const UNSUPPORTED_SELECTORS: Readonly<Record<string, string>> = {
  device_posture:
    'device posture needs signals from the Cloudflare One (WARP) client or a posture provider, which Gatehouse does not have',
  azureAD:
    'Microsoft Entra ID groups need an Azure AD identity provider, which Gatehouse does not offer; use an OIDC identity provider and the oidc selector on its groups claim',
  okta: 'Okta groups need an Okta identity provider, which Gatehouse does not offer; connect Okta as a generic OIDC identity provider and use the oidc selector',
  gsuite:
    'Google Workspace groups need a Google Workspace identity provider with directory access, which Gatehouse does not offer',
  saml: 'SAML attributes need a SAML identity provider, which Gatehouse does not offer; use an OIDC identity provider and the oidc selector',
  auth_context:
    'Azure authentication contexts need an Azure AD identity provider, which Gatehouse does not offer',
  user_risk_score:
    'user risk scores come from Cloudflare Zero Trust risk scoring, which Gatehouse does not have',
  cloudflare_account_member:
    'Cloudflare account membership can only be checked by Cloudflare; Gatehouse has no Cloudflare account to ask',
};
