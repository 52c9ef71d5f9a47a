// Stored objects → Cloudflare's JSON shapes (spec §2, §3.1). Optional fields that are not set
// are left out rather than sent as null, so a client that PUTs back what it read sends nothing
// Gatehouse would have to interpret.
import type { StoredApp } from '../store/repositories/apps.ts';
import type { StoredGroup } from '../store/repositories/groups.ts';
import type { AttachedPolicy, StoredPolicy } from '../store/repositories/policies.ts';

export function policyJson(policy: StoredPolicy, extra: { precedence?: number; appCount?: number } = {}) {
  return {
    id: policy.id,
    name: policy.name,
    decision: policy.decision,
    include: policy.include,
    exclude: policy.exclude,
    require: policy.require,
    session_duration: policy.sessionDuration,
    ...(extra.precedence !== undefined && { precedence: extra.precedence }),
    reusable: policy.appId === null,
    ...(extra.appCount !== undefined && { app_count: extra.appCount }),
    created_at: policy.createdAt,
    updated_at: policy.updatedAt,
  };
}

export function attachedPolicyJson(policy: AttachedPolicy) {
  return policyJson(policy, { precedence: policy.precedence });
}

/** The app object; `clientSecret` only in the create response (spec §2.2). */
export function appJson(app: StoredApp, policies: readonly AttachedPolicy[], clientSecret?: string) {
  const common = {
    id: app.id,
    uid: app.id,
    type: app.type,
    name: app.name,
    aud: app.aud,
  };
  const timestamps = { created_at: app.createdAt, updated_at: app.updatedAt };
  const attached = policies.map(attachedPolicyJson);
  if (app.type === 'saas') {
    const { saas_app, ...config } = app.config;
    return {
      ...common,
      ...config,
      saas_app: {
        ...saas_app,
        client_id: app.clientId,
        ...(clientSecret !== undefined && { client_secret: clientSecret }),
        ...timestamps,
      },
      policies: attached,
      ...timestamps,
    };
  }
  const { destinations, ...config } = app.config;
  return {
    ...common,
    domain: app.domain,
    destinations: destinations.map((uri) => ({ type: 'public', uri })),
    self_hosted_domains: destinations,
    ...config,
    policies: attached,
    ...timestamps,
  };
}

export function groupJson(group: StoredGroup) {
  return {
    id: group.id,
    name: group.name,
    include: group.include,
    exclude: group.exclude,
    require: group.require,
    is_default: group.isDefault,
    created_at: group.createdAt,
    updated_at: group.updatedAt,
  };
}
