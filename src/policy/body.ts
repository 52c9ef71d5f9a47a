// Matching one rule body (a policy's or a group's include / require / exclude). The same code
// serves the hot path (no trace: stops at the first deciding rule) and explanations (trace: runs
// every rule and records why each matched or not), so the two cannot disagree.
import type { Facts } from './facts.ts';
import type { SelectorName } from './schema.ts';
import type { BodyTrace, RuleTrace } from './types.ts';

/** A compiled rule. `explain` is only called when tracing, so `test` never builds strings. */
export interface Matcher {
  readonly selector: SelectorName;
  test(facts: Facts): boolean;
  explain(facts: Facts, matched: boolean): string;
  /** The group's own compiled rules, for `group` rules (traced recursively). */
  readonly group: CompiledBody | undefined;
}

export interface CompiledBody {
  readonly include: readonly Matcher[];
  readonly require: readonly Matcher[];
  readonly exclude: readonly Matcher[];
}

export function emptyBodyTrace(): BodyTrace {
  return { include: [], require: [], exclude: [] };
}

function traceRule(matcher: Matcher, facts: Facts): RuleTrace {
  if (matcher.group === undefined) {
    const matched = matcher.test(facts);
    return { rule: matcher.selector, matched, reason: matcher.explain(facts, matched) };
  }
  const group = emptyBodyTrace();
  const matched = matchBody(matcher.group, facts, group);
  return { rule: matcher.selector, matched, reason: matcher.explain(facts, matched), group };
}

/** Whether some matcher's result is `wanted`. With `out`, every matcher runs and is recorded. */
function someResultIs(
  matchers: readonly Matcher[],
  facts: Facts,
  wanted: boolean,
  out: RuleTrace[] | null,
): boolean {
  let found = false;
  for (const matcher of matchers) {
    if (out === null) {
      if (matcher.test(facts) === wanted) return true;
    } else {
      const traced = traceRule(matcher, facts);
      out.push(traced);
      if (traced.matched === wanted) found = true;
    }
  }
  return found;
}

/**
 * Include = OR, require = AND, exclude = NOT [D: access-controls/policies/index.mdx]: the body
 * matches when some include rule matches, every require rule matches and no exclude rule does.
 */
export function matchBody(body: CompiledBody, facts: Facts, trace: BodyTrace | null): boolean {
  const included = someResultIs(body.include, facts, true, trace?.include ?? null);
  if (!included && trace === null) return false;
  const requirementFailed = someResultIs(body.require, facts, false, trace?.require ?? null);
  if (requirementFailed && trace === null) return false;
  const excluded = someResultIs(body.exclude, facts, true, trace?.exclude ?? null);
  return included && !requirementFailed && !excluded;
}
