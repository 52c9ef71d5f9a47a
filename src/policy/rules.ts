// Walking the rules of a policy or group, following `group` rules into the groups they name.
// Used by the cross-object checks; evaluation uses the compiled form instead.
import type { Rule, SelectorName } from './schema.ts';
import type { GroupDefinition, RuleBody } from './types.ts';

export const SECTIONS = ['include', 'require', 'exclude'] as const;
export type Section = (typeof SECTIONS)[number];

/** The selector of a one-key rule object such as `{ "email": { "email": "a@b.c" } }`. */
export function selectorOf(rule: Rule): SelectorName {
  for (const key in rule) return key as SelectorName;
  throw new TypeError('a rule must have one selector key');
}

export interface VisitedRule {
  readonly rule: Rule;
  readonly selector: SelectorName;
  /** Where the admin can fix it: the rule in the body that was walked, even when found in a group. */
  readonly path: string;
  /** Names of the groups passed through to reach the rule, outermost first. */
  readonly via: readonly string[];
}

/**
 * Every rule of `body` in document order; after each `group` rule naming a known group, that
 * group's rules. Unknown groups (referenceProblems) and cycles (groupGraphProblems) are skipped.
 */
export function* walkRules(
  body: RuleBody,
  path: string,
  groups: ReadonlyMap<string, GroupDefinition> | undefined,
  via: readonly string[] = [],
  seen: ReadonlySet<string> = new Set(),
): Generator<VisitedRule> {
  for (const section of SECTIONS) {
    const rules = body[section] ?? [];
    for (let index = 0; index < rules.length; index++) {
      const rule = rules[index]!;
      const selector = selectorOf(rule);
      const rulePath = via.length === 0 ? `${path}/${section}/${index}` : path;
      yield { rule, selector, path: rulePath, via };
      if (!('group' in rule) || groups === undefined) continue;
      const group = groups.get(rule.group.id);
      if (group === undefined || seen.has(group.id)) continue;
      yield* walkRules(group, rulePath, groups, [...via, group.name], new Set([...seen, group.id]));
    }
  }
}

/** "email" or "email (via group Engineering > Admins)", for problem messages. */
export function describeVisit(visit: VisitedRule): string {
  return visit.via.length === 0
    ? `"${visit.selector}"`
    : `"${visit.selector}" (via group ${visit.via.join(' > ')})`;
}
