// compilePolicies: validate an app's policies with the groups and lists they name, refuse anything
// that cannot be evaluated safely (PolicyCompileError), and build the evaluator once so each
// request only runs prepared matchers.
import type { CompiledBody, Matcher } from './body.ts';
import { decisionProblems, referenceProblems } from './checks.ts';
import { parseGoDuration } from './duration.ts';
import { groupGraphProblems } from './group-graph.ts';
import { IpRangeSet, parseCidr } from './ip.ts';
import { MAX_POLICIES_PER_APP } from './limits.ts';
import { compileRule, type MatcherEnv } from './matchers.ts';
import { PolicyCompileError, type PolicyProblem } from './problems.ts';
import { walkRules } from './rules.ts';
import {
  groupDefinitionSchema,
  listDefinitionSchema,
  policyDefinitionSchema,
  precedenceProblems,
  problemsFromZod,
} from './schema.ts';
import type {
  Decision,
  GroupDefinition,
  ListDefinition,
  Phase,
  PolicyDecision,
  PolicyDefinition,
  PolicyInfo,
  RuleBody,
} from './types.ts';

export interface CompileOptions {
  /** The account's Access groups; only those the policies reach are checked and compiled. */
  readonly groups?: Iterable<GroupDefinition>;
  /** The account's email and IP lists; only those the rules name are checked and compiled. */
  readonly lists?: Iterable<ListDefinition>;
}

/** An external evaluation endpoint some rule of the app uses; fetch its verdict before evaluating. */
export interface ExternalEvaluationTarget {
  readonly evaluateUrl: string;
  readonly keysUrl: string;
}

export interface CompiledPolicy {
  readonly info: PolicyInfo;
  readonly body: CompiledBody;
  /** The untraced decision for this policy, built once so the hot path allocates no result. */
  readonly decided: Decision;
}

/** An app's policies, ready to evaluate. Read `policies` and `externalEvaluations`; the rest is the engine's. */
export interface CompiledApp {
  /** Every policy in evaluation order: Bypass and Service Auth by precedence, then Allow and Block. */
  readonly policies: readonly PolicyInfo[];
  readonly externalEvaluations: readonly ExternalEvaluationTarget[];
  readonly phases: Readonly<Record<Phase, readonly CompiledPolicy[]>>;
}

/** Bypass and Service Auth run before Allow and Block, whatever their precedence [spec §3.3]. */
const PHASE_OF: Readonly<Record<PolicyDecision, Phase>> = {
  bypass: 'non_identity',
  non_identity: 'non_identity',
  allow: 'identity',
  deny: 'identity',
};

function byId<T extends { readonly id: string }>(items: Iterable<T> | undefined): Map<string, T> {
  const map = new Map<string, T>();
  for (const item of items ?? []) map.set(item.id, item);
  return map;
}

/** Parses what the policies reach: groups (following nested groups) and lists. */
class Reachable {
  readonly groups = new Map<string, GroupDefinition>();
  readonly lists = new Map<string, ListDefinition>();
  private readonly visited = new Set<string>();

  constructor(
    private readonly allGroups: ReadonlyMap<string, GroupDefinition>,
    private readonly allLists: ReadonlyMap<string, ListDefinition>,
    private readonly problems: PolicyProblem[],
  ) {}

  add(body: RuleBody): void {
    for (const { rule } of walkRules(body, '', undefined)) {
      if ('group' in rule) this.addGroup(rule.group.id);
      if ('email_list' in rule) this.addList(rule.email_list.id);
      if ('ip_list' in rule) this.addList(rule.ip_list.id);
    }
  }

  private addGroup(id: string): void {
    const raw = this.allGroups.get(id);
    if (raw === undefined || this.visited.has(id)) return;
    this.visited.add(id);
    const parsed = groupDefinitionSchema.safeParse(raw);
    if (!parsed.success) {
      this.problems.push(...problemsFromZod(parsed.error, `/groups/${id}`));
      return;
    }
    this.groups.set(id, parsed.data);
    this.add(parsed.data);
  }

  private addList(id: string): void {
    const raw = this.allLists.get(id);
    if (raw === undefined || this.visited.has(id)) return;
    this.visited.add(id);
    const parsed = listDefinitionSchema.safeParse(raw);
    if (parsed.success) this.lists.set(id, parsed.data);
    else this.problems.push(...problemsFromZod(parsed.error, `/lists/${id}`));
  }
}

/** Builds compiled groups and lists on first use, so each is compiled once however often it is named. */
function matcherEnv(reachable: Reachable): MatcherEnv {
  const groups = new Map<string, { name: string; body: CompiledBody }>();
  const emailLists = new Map<string, { name: string; emails: ReadonlySet<string> }>();
  const ipLists = new Map<string, { name: string; ranges: IpRangeSet }>();
  const env: MatcherEnv = {
    group(id) {
      let compiled = groups.get(id);
      if (compiled === undefined) {
        const group = reachable.groups.get(id)!;
        compiled = { name: group.name, body: compileBody(group, env) };
        groups.set(id, compiled);
      }
      return compiled;
    },
    emailList(id) {
      let compiled = emailLists.get(id);
      if (compiled === undefined) {
        const list = reachable.lists.get(id)!;
        compiled = { name: list.name ?? id, emails: new Set(list.items.map((item) => item.toLowerCase())) };
        emailLists.set(id, compiled);
      }
      return compiled;
    },
    ipList(id) {
      let compiled = ipLists.get(id);
      if (compiled === undefined) {
        const list = reachable.lists.get(id)!;
        compiled = {
          name: list.name ?? id,
          ranges: new IpRangeSet(list.items.map((item) => parseCidr(item)!)),
        };
        ipLists.set(id, compiled);
      }
      return compiled;
    },
  };
  return env;
}

function compileBody(body: RuleBody, env: MatcherEnv): CompiledBody {
  const compile = (rules: RuleBody['include'] | undefined): Matcher[] =>
    (rules ?? []).map((rule) => compileRule(rule, env));
  return { include: compile(body.include), require: compile(body.require), exclude: compile(body.exclude) };
}

/** evaluate_url keys the verdicts, so one URL must always mean the same keys_url. */
function externalTargets(
  policies: readonly { readonly policy: PolicyDefinition; readonly path: string }[],
  groups: ReadonlyMap<string, GroupDefinition>,
  problems: PolicyProblem[],
): ExternalEvaluationTarget[] {
  const keysByUrl = new Map<string, string>();
  for (const { policy, path } of policies) {
    for (const visit of walkRules(policy, path, groups)) {
      if (!('external_evaluation' in visit.rule)) continue;
      const { evaluate_url, keys_url } = visit.rule.external_evaluation;
      const known = keysByUrl.get(evaluate_url);
      if (known === undefined) keysByUrl.set(evaluate_url, keys_url);
      else if (known !== keys_url) {
        problems.push({
          path: visit.path,
          message: `external evaluation ${evaluate_url} is used with two keys_url values (${known} and ${keys_url})`,
        });
      }
    }
  }
  return [...keysByUrl].map(([evaluateUrl, keysUrl]) => ({ evaluateUrl, keysUrl }));
}

function policyInfo(policy: PolicyDefinition): PolicyInfo {
  const sessionDuration = policy.session_duration ?? null;
  return Object.freeze({
    id: policy.id,
    name: policy.name,
    decision: policy.decision,
    precedence: policy.precedence,
    phase: PHASE_OF[policy.decision],
    sessionDuration,
    sessionDurationMs: sessionDuration === null ? null : parseGoDuration(sessionDuration),
  });
}

/**
 * Compiles one app's policies. Throws PolicyCompileError listing every problem: invalid or
 * unsupported rules, unknown groups or lists, group cycles or nesting deeper than
 * MAX_GROUP_DEPTH, rules the policy's decision cannot use (also inside groups), duplicate
 * precedences, more than MAX_POLICIES_PER_APP policies.
 */
export function compilePolicies(
  policies: readonly PolicyDefinition[],
  options: CompileOptions = {},
): CompiledApp {
  const problems: PolicyProblem[] = [];
  if (policies.length > MAX_POLICIES_PER_APP) {
    problems.push({ path: '/policies', message: `at most ${MAX_POLICIES_PER_APP} policies per application` });
  }
  const allGroups = byId(options.groups);
  const allLists = byId(options.lists);
  const reachable = new Reachable(allGroups, allLists, problems);
  const valid: { policy: PolicyDefinition; path: string }[] = [];
  policies.forEach((input, index) => {
    const path = `/policies/${index}`;
    const parsed = policyDefinitionSchema.safeParse(input);
    if (!parsed.success) {
      problems.push(...problemsFromZod(parsed.error, path));
      return;
    }
    const policy = parsed.data;
    valid.push({ policy, path });
    reachable.add(policy);
    problems.push(
      ...referenceProblems(policy, { groups: allGroups, lists: allLists }, path),
      // The schema checked the policy's own rules; this adds the rules of the groups it names.
      ...decisionProblems(policy, reachable.groups, path),
    );
  });
  for (const group of reachable.groups.values()) {
    problems.push(...referenceProblems(group, { groups: allGroups, lists: allLists }, `/groups/${group.id}`));
  }
  problems.push(...groupGraphProblems(reachable.groups), ...precedenceProblems(policies, '/policies'));
  const externalEvaluations = externalTargets(valid, reachable.groups, problems);
  if (problems.length > 0) throw new PolicyCompileError(problems);

  const env = matcherEnv(reachable);
  const compiled = valid
    .map(({ policy }) => policy)
    .sort((a, b) => a.precedence - b.precedence)
    .map((policy): CompiledPolicy => {
      const info = policyInfo(policy);
      return {
        info,
        body: compileBody(policy, env),
        decided: Object.freeze({ decision: info.decision, policy: info, trace: null }),
      };
    });
  const phases = {
    non_identity: compiled.filter((policy) => policy.info.phase === 'non_identity'),
    identity: compiled.filter((policy) => policy.info.phase === 'identity'),
  };
  return Object.freeze({
    policies: [...phases.non_identity, ...phases.identity].map((policy) => policy.info),
    externalEvaluations,
    phases,
  });
}
