// The account's whole Access configuration read at once: apps, policies (with each app's list
// in precedence order) and groups. The configuration snapshot is built from it, and the
// management API checks it inside each write's transaction before committing, so cross-object
// rules (linked apps, group references, attachment rules) hold after every write.
import type { Kysely } from 'kysely';
import type { Repositories } from '../gateway.ts';
import type { GroupDefinition, ListDefinition, PolicyDefinition } from '../policy/types.ts';
import type { StoredApp } from './repositories/apps.ts';
import type { AttachedPolicy, StoredPolicy } from './repositories/policies.ts';
import type { Database } from './schema.ts';

export interface AccessConfig {
  apps: StoredApp[];
  /** Every policy, reusable and app-scoped, by id. */
  policies: Map<string, StoredPolicy>;
  /** Each app's policies, ascending precedence, by app id. */
  appPolicies: Map<string, AttachedPolicy[]>;
  /** The engine's view of the groups, by id. */
  groups: Map<string, GroupDefinition>;
  /** Zero Trust email and IP lists (`/gateway/lists`), which `email_list`/`ip_list` rules name. */
  lists: Map<string, ListDefinition>;
}

export async function loadAccessConfig(
  repos: Pick<Repositories, 'apps' | 'policies' | 'groups' | 'lists'>,
  accountId: string,
  db: Kysely<Database>,
): Promise<AccessConfig> {
  const [apps, policies, links, groups, lists] = await Promise.all([
    repos.apps.listAll(accountId, db),
    repos.policies.listAll(accountId, db),
    repos.policies.listLinks(accountId, db),
    repos.groups.listAll(accountId, db),
    repos.lists.listAllWithValues(accountId, db),
  ]);
  const byId = new Map(policies.map((policy) => [policy.id, policy]));
  const appPolicies = new Map<string, AttachedPolicy[]>(apps.map((app) => [app.id, []]));
  // listLinks is ordered by app and precedence, so each list comes out in precedence order.
  for (const link of links) {
    const policy = byId.get(link.policyId);
    if (policy) appPolicies.get(link.appId)?.push({ ...policy, precedence: link.precedence });
  }
  return {
    apps,
    policies: byId,
    appPolicies,
    groups: new Map(
      groups.map((group) => [
        group.id,
        {
          id: group.id,
          name: group.name,
          include: group.include,
          exclude: group.exclude,
          require: group.require,
        },
      ]),
    ),
    lists: new Map(lists.map((list) => [list.id, list])),
  };
}

/** A policy as the policy engine takes it. */
export function toPolicyDefinition(policy: AttachedPolicy): PolicyDefinition {
  return {
    id: policy.id,
    name: policy.name,
    decision: policy.decision,
    precedence: policy.precedence,
    include: policy.include,
    exclude: policy.exclude,
    require: policy.require,
    session_duration: policy.sessionDuration,
  };
}
