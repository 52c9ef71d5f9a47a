// Checks that need more than one rule at a time: a rule against its policy's decision, a policy
// against the app it is attached to, a rule against the groups, lists and apps it names. Each
// returns every problem found (empty when fine), with paths relative to `path`.
import { MAX_POLICIES_PER_APP } from './limits.ts';
import type { PolicyProblem } from './problems.ts';
import { describeVisit, walkRules } from './rules.ts';
import { DECISION_RESTRICTED_SELECTORS, IDENTITY_DECISIONS, SELECTOR_KINDS } from './selectors.ts';
import type { GroupDefinition, ListDefinition, PolicyDecision, RuleBody } from './types.ts';

const LIST_SELECTOR_TYPES = { email_list: 'EMAIL', ip_list: 'IP' } as const;

/** `everyone` in an exclude makes a policy or group that can never match. */
export function bodyProblems(body: RuleBody, path = ''): PolicyProblem[] {
  const problems: PolicyProblem[] = [];
  (body.exclude ?? []).forEach((rule, index) => {
    if ('everyone' in rule) {
      problems.push({
        path: `${path}/exclude/${index}`,
        message: 'excluding "everyone" means this can never match; remove it or delete the policy',
      });
    }
  });
  return problems;
}

/**
 * Rules the policy's decision cannot use, looking through the groups it names when `groups` is
 * given: identity selectors in Bypass or Service Auth policies, service token rules outside
 * Service Auth, linked_app_token outside Service Auth and Bypass [TS: AccessLinkedAppTokenRule].
 */
export function decisionProblems(
  policy: RuleBody & { readonly decision: PolicyDecision },
  groups?: ReadonlyMap<string, GroupDefinition>,
  path = '',
): PolicyProblem[] {
  const problems: PolicyProblem[] = [];
  const identityAllowed = IDENTITY_DECISIONS.includes(policy.decision);
  for (const visit of walkRules(policy, path, groups)) {
    if (visit.selector !== 'group' && !identityAllowed && SELECTOR_KINDS[visit.selector] === 'identity') {
      problems.push({
        path: visit.path,
        message: `${policy.decision} policies cannot use the identity selector ${describeVisit(visit)}: ${
          policy.decision === 'bypass'
            ? 'Bypass does not support identity-based selectors'
            : 'Service Auth authenticates without an IdP login, so the rule could never match'
        }`,
      });
    }
    const restriction = DECISION_RESTRICTED_SELECTORS[visit.selector];
    if (restriction !== undefined && !restriction.decisions.includes(policy.decision)) {
      problems.push({
        path: visit.path,
        message: `${describeVisit(visit)} cannot be used in ${policy.decision} policies: ${restriction.why}`,
      });
    }
  }
  return problems;
}

/** Cloudflare error 12130, "policy precedences must be unique", per app. */
export function precedenceProblems(
  policies: readonly { readonly precedence?: number | null | undefined }[],
  path = '',
): PolicyProblem[] {
  const problems: PolicyProblem[] = [];
  const firstIndex = new Map<number, number>();
  policies.forEach((policy, index) => {
    if (policy.precedence === undefined || policy.precedence === null) return;
    const earlier = firstIndex.get(policy.precedence);
    if (earlier === undefined) {
      firstIndex.set(policy.precedence, index);
    } else {
      problems.push({
        path: `${path}/${index}/precedence`,
        message: `precedence ${policy.precedence} is already used by the policy at ${path}/${earlier}; policy precedences must be unique`,
      });
    }
  });
  return problems;
}

/**
 * Problems with attaching `policies` to an app of type `appType`: too many policies, duplicate
 * precedences, and linked_app_token policies on anything but a self_hosted app ("SaaS and other
 * application types are not currently supported" [D: linked-app-token.mdx]). Paths are
 * `${path}/<index>/…`.
 */
export function attachmentProblems(
  appType: string,
  policies: readonly (RuleBody & { readonly precedence?: number | null | undefined })[],
  groups?: ReadonlyMap<string, GroupDefinition>,
  path = '',
): PolicyProblem[] {
  const problems: PolicyProblem[] = [];
  if (policies.length > MAX_POLICIES_PER_APP) {
    problems.push({
      path,
      message: `an application can have at most ${MAX_POLICIES_PER_APP} policies, got ${policies.length}`,
    });
  }
  if (appType !== 'self_hosted') {
    policies.forEach((policy, index) => {
      for (const visit of walkRules(policy, `${path}/${index}`, groups)) {
        if (visit.selector === 'linked_app_token') {
          problems.push({
            path: visit.path,
            message: `policies with ${describeVisit(visit)} can only be attached to self_hosted applications, not ${appType}`,
          });
        }
      }
    });
  }
  problems.push(...precedenceProblems(policies, path));
  return problems;
}

/**
 * linked_app_token rules whose `app_uid` names no app that can issue linked tokens.
 * `linkableAppUids` holds the uids of the account's self_hosted apps and saas apps using OIDC.
 */
export function linkedAppProblems(
  body: RuleBody,
  linkableAppUids: ReadonlySet<string>,
  groups?: ReadonlyMap<string, GroupDefinition>,
  path = '',
): PolicyProblem[] {
  const problems: PolicyProblem[] = [];
  for (const visit of walkRules(body, path, groups)) {
    if ('linked_app_token' in visit.rule && !linkableAppUids.has(visit.rule.linked_app_token.app_uid)) {
      problems.push({
        path: visit.path,
        message: `${describeVisit(visit)} names app ${visit.rule.linked_app_token.app_uid}, which is not a self_hosted or OIDC saas application of this account`,
      });
    }
  }
  return problems;
}

/** Groups and lists named directly by `body` that do not exist, or lists of the wrong type. */
export function referenceProblems(
  body: RuleBody,
  known: {
    readonly groups: ReadonlyMap<string, GroupDefinition>;
    readonly lists: ReadonlyMap<string, ListDefinition>;
  },
  path = '',
): PolicyProblem[] {
  const problems: PolicyProblem[] = [];
  for (const visit of walkRules(body, path, undefined)) {
    const { rule } = visit;
    if ('group' in rule && !known.groups.has(rule.group.id)) {
      problems.push({ path: visit.path, message: `group ${rule.group.id} does not exist` });
    }
    const listId = 'email_list' in rule ? rule.email_list.id : 'ip_list' in rule ? rule.ip_list.id : null;
    if (listId === null) continue;
    const expected = LIST_SELECTOR_TYPES[visit.selector as keyof typeof LIST_SELECTOR_TYPES];
    const list = known.lists.get(listId);
    if (list === undefined) {
      problems.push({ path: visit.path, message: `list ${listId} does not exist` });
    } else if (list.type !== expected) {
      problems.push({
        path: visit.path,
        message: `"${visit.selector}" needs a list of type ${expected}, but list ${listId} has type ${list.type}`,
      });
    }
  }
  return problems;
}
